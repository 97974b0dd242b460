"""The daily audit archive: each UTC day's events as one JSON Lines object in S3 (when a bucket is configured).

Idempotent: a day's object is written whole, so writing it again gives the same bytes; the periodic task only
writes days whose object is missing, looking back a few days so an outage of the worker loses nothing.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.utils import timezone

from accessrequests import audit, exports, selectors
from accessrequests.aws import s3

LOOKBACK_DAYS = 7


def day_key(day: date) -> str:
    prefix = settings.GATEHOUSE_AUDIT_PREFIX.strip("/")
    return f"{prefix}/{day:%Y/%m/%d}.jsonl" if prefix else f"{day:%Y/%m/%d}.jsonl"


def archive_day(day: date) -> str | None:
    """Write one day's events to the bucket; returns the key, or None when no bucket is configured."""
    bucket = settings.GATEHOUSE_AUDIT_BUCKET
    if not bucket:
        return None
    start = datetime.combine(day, time.min, tzinfo=UTC)
    events = selectors.audit_events(since=start, until=start + timedelta(days=1))
    # Spooled to disk past 8 MB: a busy day's archive never has to fit in memory.
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as body:
        for chunk in exports.stream_jsonl(events):
            body.write(chunk.encode())
        body.seek(0)
        request_id = s3.put_file(bucket, day_key(day), body, content_type="application/x-ndjson")
    audit.record(
        action="audit.archived",
        object_type="audit_archive",
        object_id=day.isoformat(),
        after={"bucket": bucket, "key": day_key(day)},
        aws_request_ids=[request_id] if request_id else [],
    )
    return day_key(day)


def archive_missing_days(today: date | None = None) -> list[str]:
    """Archive every finished day of the last week whose object is not in the bucket yet."""
    if not settings.GATEHOUSE_AUDIT_BUCKET:
        return []
    today = today or timezone.now().date()
    written = []
    for back in range(LOOKBACK_DAYS, 0, -1):
        day = today - timedelta(days=back)
        if not s3.object_exists(settings.GATEHOUSE_AUDIT_BUCKET, day_key(day)):
            key = archive_day(day)
            if key:
                written.append(key)
    return written
