"""The daily audit archive: each UTC day's events as one JSON Lines object in S3 (when a bucket is configured).

Each object is written under Object Lock (compliance mode, ``GATEHOUSE_AUDIT_RETENTION_DAYS``) and carries in its
metadata the day's sequence range, count, first and last hash, and the signed checkpoint that covers the day
(written just before, so it covers every event of the day). The checkpoint itself is stored beside it, locked too.

Idempotent: a day's object is written whole, so writing it again gives the same events (as a new version; the
locked one stays); the periodic task only writes days whose object is missing, looking back a few days so an
outage of the worker loses nothing. Today is not archived until it ends; until then the checkpoints written every
5 minutes carry its hashes.
"""

from __future__ import annotations

import hashlib
import tempfile
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.utils import timezone

from accessrequests.audit import checkpoints, exports
from accessrequests.audit import trail as audit
from accessrequests.authz import selectors
from accessrequests.aws import s3

LOOKBACK_DAYS = 7


def day_key(day: date) -> str:
    prefix = settings.GATEHOUSE_AUDIT_PREFIX.strip("/")
    return f"{prefix}/{day:%Y/%m/%d}.jsonl" if prefix else f"{day:%Y/%m/%d}.jsonl"


def _metadata(summary: dict, checkpoint: dict | None) -> dict[str, str]:
    """S3 user metadata (ASCII, 2 KB in all): enough to tie the object to its signed checkpoint."""
    meta = {f"gatehouse-{k.replace('_', '-')}": str(v) for k, v in summary.items() if v is not None}
    if checkpoint is not None:
        meta.update(
            {
                "gatehouse-checkpoint": checkpoints.name_for(checkpoint),
                "gatehouse-checkpoint-seq": str(checkpoint["seq"]),
                "gatehouse-checkpoint-hash": checkpoint["hash"],
                "gatehouse-checkpoint-time": checkpoint["created_at"],
                "gatehouse-checkpoint-key-id": checkpoint["key_id"],
                "gatehouse-checkpoint-signature": checkpoint["signature"],
            }
        )
    return meta


def archive_day(day: date) -> str | None:
    """Write one day's events to the bucket; returns the key, or None when no bucket is configured."""
    bucket = settings.GATEHOUSE_AUDIT_BUCKET
    if not bucket:
        return None
    # A checkpoint first, so the one in the metadata covers every event of the day (forced: the object must name
    # one even when the chain did not grow since the last).
    checkpoint = checkpoints.write(force=True)
    start = datetime.combine(day, time.min, tzinfo=UTC)
    events = selectors.audit_events(since=start, until=start + timedelta(days=1))
    summary = exports.summarise(events)
    digest = hashlib.sha256()
    # Spooled to disk past 8 MB: a busy day's archive never has to fit in memory.
    with tempfile.SpooledTemporaryFile(max_size=8 << 20) as body:
        for chunk in exports.stream_jsonl(events.filter(seq__lte=summary["last_seq"] or 0)):
            data = chunk.encode()
            digest.update(data)
            body.write(data)
        body.seek(0)
        request_id = s3.put_file(
            bucket,
            day_key(day),
            body,
            content_type="application/x-ndjson",
            metadata={**_metadata(summary, checkpoint), "gatehouse-sha256": digest.hexdigest()},
            retain_until=checkpoints.retain_until(),
        )
    audit.record(
        action="audit.archived",
        object_type="audit_archive",
        object_id=day.isoformat(),
        after={"bucket": bucket, "key": day_key(day), **summary, "sha256": digest.hexdigest()},
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
