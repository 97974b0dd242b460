"""The audit archive and checkpoints land in S3 (a moto server over HTTP) under Object Lock, and verify_audit
compares the database with them."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accessrequests.audit import archive as audit_archive
from accessrequests.audit import checkpoints, integrity
from accessrequests.audit import trail as audit
from accessrequests.aws.client import client
from accessrequests.ledger import chain
from accessrequests.models import AuditEvent
from tests.test_audit import _recompute_from, tampering

pytestmark = [pytest.mark.django_db, pytest.mark.moto]

BUCKET = "gatehouse-audit-archive"


@pytest.fixture
def bucket(aws, settings):
    settings.GATEHOUSE_AUDIT_BUCKET = BUCKET
    settings.GATEHOUSE_AUDIT_RETENTION_DAYS = 30
    # Object Lock can only be turned on when a bucket is created (it also turns on versioning).
    client("s3").create_bucket(Bucket=BUCKET, ObjectLockEnabledForBucket=True)
    return client("s3")


def _events(n: int) -> None:
    for i in range(n):
        audit.record(action="test.archived", object_type="thing", object_id=i)


def _assert_locked(s3, key: str, days: int = 30) -> dict:
    head = s3.head_object(Bucket=BUCKET, Key=key)
    # head_object, not get_object_retention: moto 5.1 answers the latter with a 500.
    assert head["ObjectLockMode"] == "COMPLIANCE"
    until = head["ObjectLockRetainUntilDate"]
    assert timedelta(days=days - 1) < until - timezone.now() <= timedelta(days=days)
    return head


def test_a_day_is_archived_as_one_locked_verifiable_object_with_its_checkpoint(bucket):
    _events(5)
    today = timezone.now().date()
    key = audit_archive.archive_day(today)
    assert key == f"gatehouse-audit/{today:%Y/%m/%d}.jsonl"
    body = bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()
    rows = [json.loads(line) for line in body.splitlines()]
    assert [r["object_id"] for r in rows] == ["0", "1", "2", "3", "4"]
    verdict = chain.verify_rows(rows, start_seq=1)
    assert verdict.ok and verdict.links == 4
    meta = _assert_locked(bucket, key)["Metadata"]
    assert meta["gatehouse-count"] == "5"
    assert (meta["gatehouse-first-seq"], meta["gatehouse-last-seq"]) == ("1", "5")
    assert meta["gatehouse-last-hash"] == rows[-1]["hash"]
    # The checkpoint named in the metadata covers the day and is in the bucket beside it.
    assert int(meta["gatehouse-checkpoint-seq"]) >= 5
    stored = json.loads(
        bucket.get_object(Bucket=BUCKET, Key=f"gatehouse-audit/{meta['gatehouse-checkpoint']}")["Body"].read()
    )
    assert stored["signature"] == meta["gatehouse-checkpoint-signature"]
    archived = AuditEvent.objects.get(action="audit.archived")
    assert archived.aws_request_ids  # the S3 request id is in the trail
    assert archived.after["last_seq"] == 5


def test_archiving_twice_keeps_the_locked_first_version(bucket):
    _events(1)
    day = timezone.now().date()
    key = audit_archive.archive_day(day)
    first = bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    audit_archive.archive_day(day)
    second = bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    # the second run also sees the first run's "audit.archived" event of today; the events before it are identical
    assert second.startswith(first)
    versions = bucket.list_object_versions(Bucket=BUCKET, Prefix=key)["Versions"]
    assert len(versions) == 2


def test_missing_days_are_filled_and_existing_ones_left_alone(bucket):
    today = datetime(2026, 11, 20, tzinfo=UTC).date()
    existing = audit_archive.day_key(today - timedelta(days=1))
    bucket.put_object(Bucket=BUCKET, Key=existing, Body=b"kept")
    written = audit_archive.archive_missing_days(today)
    assert len(written) == audit_archive.LOOKBACK_DAYS - 1
    assert existing not in written
    assert bucket.get_object(Bucket=BUCKET, Key=existing)["Body"].read() == b"kept"
    assert audit_archive.archive_missing_days(today) == []


def test_nothing_is_archived_without_a_bucket(settings):
    settings.GATEHOUSE_AUDIT_BUCKET = ""
    assert audit_archive.archive_day(timezone.now().date()) is None
    assert audit_archive.archive_missing_days() == []


def test_checkpoints_land_in_s3_under_compliance_lock_and_cannot_be_deleted(bucket):
    _events(3)
    written = checkpoints.write()
    assert written is not None
    key = f"gatehouse-audit/{checkpoints.name_for(written)}"
    head = _assert_locked(bucket, key)
    assert head["Metadata"] == {"gatehouse-seq": "3", "gatehouse-hash": written["hash"]}
    assert json.loads(bucket.get_object(Bucket=BUCKET, Key=key)["Body"].read()) == written
    with pytest.raises(ClientError) as refused:
        bucket.delete_object(Bucket=BUCKET, Key=key, VersionId=head["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert (
        bucket.head_object(Bucket=BUCKET, Key=key, VersionId=head["VersionId"])["ObjectLockMode"]
        == "COMPLIANCE"
    )


def test_a_recomputed_chain_is_reported_against_the_s3_checkpoints_alone(bucket):
    """The tamperer also wiped the local checkpoint folder; the locked copies in S3 still tell."""
    _events(4)
    checkpoints.write()
    _events(4)
    checkpoints.write()
    with tampering() as cursor:
        cursor.execute("UPDATE accessrequests_auditevent SET actor_label = 'mallory' WHERE seq = 6")
        _recompute_from(cursor, 6)
    shutil.rmtree(checkpoints.local_dir())
    call_command("verify_audit", "--no-s3")  # without S3 nothing is left to tell: it passes (with a note)
    with pytest.raises(CommandError, match=r"broken at seq 6: differs from the checkpoint.*\(s3, written"):
        call_command("verify_audit")


def test_the_archive_in_s3_names_an_archived_event_that_was_rewritten(bucket):
    _events(3)
    audit_archive.archive_day(timezone.now().date())
    with tampering() as cursor:
        cursor.execute("UPDATE accessrequests_auditevent SET actor_label = 'mallory' WHERE seq = 2")
        _recompute_from(cursor, 2)
    report = integrity.verify_trail(include_s3=True)
    archived = [f for f in report.findings if f.where.startswith("s3://") and f.where.endswith(".jsonl")]
    assert [(f.seq, f.reason) for f in archived] == [(2, "differs from the archived copy")]
    assert report.first is not None and report.first.seq == 2
