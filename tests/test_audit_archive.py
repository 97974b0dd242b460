"""The daily audit archive lands in S3 (a moto server over HTTP) and verifies offline."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from accessrequests import audit, chain
from accessrequests.aws.client import client
from accessrequests.models import AuditEvent
from accessrequests.services import audit_archive

pytestmark = [pytest.mark.django_db, pytest.mark.moto]


def test_a_day_is_archived_as_one_verifiable_object(aws, settings):
    settings.GATEHOUSE_AUDIT_BUCKET = "gatehouse-audit-archive"
    client("s3").create_bucket(Bucket="gatehouse-audit-archive")
    for n in range(5):
        audit.record(action="test.archived", object_type="thing", object_id=n)
    today = timezone.now().date()
    key = audit_archive.archive_day(today)
    assert key == f"gatehouse-audit/{today:%Y/%m/%d}.jsonl"
    body = client("s3").get_object(Bucket="gatehouse-audit-archive", Key=key)["Body"].read().decode()
    rows = [json.loads(line) for line in body.splitlines()]
    assert [r["object_id"] for r in rows] == ["0", "1", "2", "3", "4"]
    verdict = chain.verify_rows(rows, from_genesis=True)
    assert verdict.ok and verdict.links == 4
    archived = AuditEvent.objects.get(action="audit.archived")
    assert archived.aws_request_ids  # the S3 request id is in the trail


def test_archiving_twice_writes_the_same_bytes(aws, settings):
    settings.GATEHOUSE_AUDIT_BUCKET = "gatehouse-audit-archive"
    client("s3").create_bucket(Bucket="gatehouse-audit-archive")
    audit.record(action="test.archived", object_type="thing", object_id=1)
    day = timezone.now().date()
    key = audit_archive.archive_day(day)
    first = client("s3").get_object(Bucket="gatehouse-audit-archive", Key=key)["Body"].read()
    audit_archive.archive_day(day)
    second = client("s3").get_object(Bucket="gatehouse-audit-archive", Key=key)["Body"].read()
    # the second run also sees the first run's "audit.archived" event of today; the events before it are identical
    assert second.startswith(first)


def test_missing_days_are_filled_and_existing_ones_left_alone(aws, settings):
    settings.GATEHOUSE_AUDIT_BUCKET = "gatehouse-audit-archive"
    s3 = client("s3")
    s3.create_bucket(Bucket="gatehouse-audit-archive")
    today = datetime(2026, 11, 20, tzinfo=UTC).date()
    existing = audit_archive.day_key(today - timedelta(days=1))
    s3.put_object(Bucket="gatehouse-audit-archive", Key=existing, Body=b"kept")
    written = audit_archive.archive_missing_days(today)
    assert len(written) == audit_archive.LOOKBACK_DAYS - 1
    assert existing not in written
    assert s3.get_object(Bucket="gatehouse-audit-archive", Key=existing)["Body"].read() == b"kept"
    assert audit_archive.archive_missing_days(today) == []


def test_nothing_is_archived_without_a_bucket(settings):
    settings.GATEHOUSE_AUDIT_BUCKET = ""
    assert audit_archive.archive_day(timezone.now().date()) is None
    assert audit_archive.archive_missing_days() == []
