"""Checks of the audit trail's safekeeping: the locked bucket, and the chain's head against the newest checkpoint."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.utils import timezone

from accessrequests.audit import checkpoints
from accessrequests.audit import trail as audit
from accessrequests.aws.client import client, error_details, is_access_denied
from accessrequests.aws.config import quick_reads
from accessrequests.core.wording import counted
from accessrequests.ledger import chain
from accessrequests.models import AuditEvent, AuditIntegrity

from .aws import GUIDE, describe_error
from .registry import Context, Result, check, fail, ok, since, warn

# Verified from the newest checkpoint to the head; without a checkpoint (or far behind one), the newest events.
HEAD_WINDOW = 10_000
# Beat writes a checkpoint every 5 minutes when the chain grew: three missed means checkpoints stopped.
CHECKPOINT_LATE = timedelta(minutes=15)
# A new installation's first checkpoint comes with beat's first run.
FIRST_CHECKPOINT_WITHIN = timedelta(minutes=10)
BUCKET_TEMPLATE = "deploy/cloudformation/audit-bucket.yaml"


def _lock_rule(bucket: str) -> tuple[bool, dict[str, Any]]:
    """(Object Lock enabled, its default retention rule) of the bucket."""
    try:
        answer = client("s3").get_object_lock_configuration(Bucket=bucket)
    except ClientError as exc:
        if error_details(exc)[0] == "ObjectLockConfigurationNotFoundError":
            return False, {}
        raise
    config = answer.get("ObjectLockConfiguration", {})
    return config.get("ObjectLockEnabled") == "Enabled", dict(
        config.get("Rule", {}).get("DefaultRetention", {})
    )


def _days(retention: dict[str, Any]) -> int | None:
    # AWS answers one of the two; moto answers both, the other as 0.
    if retention.get("Days"):
        return int(retention["Days"])
    if retention.get("Years"):
        return int(retention["Years"]) * 365
    return None


@check(
    "audit.bucket",
    "the audit bucket has Object Lock in compliance mode, versioning, and the retention Gatehouse writes with",
    needs=("aws.identity",),
)
def bucket(ctx: Context) -> Result:
    name = settings.GATEHOUSE_AUDIT_BUCKET
    setting_days = settings.GATEHOUSE_AUDIT_RETENTION_DAYS
    if not name:
        return warn(
            "GATEHOUSE_AUDIT_BUCKET is not set: checkpoints and daily archives stay on this machine, within reach "
            "of whoever can rewrite the database",
            fix=f"deploy {BUCKET_TEMPLATE} and set GATEHOUSE_AUDIT_BUCKET to it ({GUIDE}, steps 3 and 7)",
        )
    lock_fix = (
        f"keep the audit in a bucket made from {BUCKET_TEMPLATE} (Object Lock in compliance mode with a default "
        "retention, and versioning) and point GATEHOUSE_AUDIT_BUCKET at it"
    )
    try:
        with quick_reads():
            enabled, retention = _lock_rule(name)
            versioning = client("s3").get_bucket_versioning(Bucket=name).get("Status", "never enabled")
    except (BotoCoreError, ClientError) as exc:
        if isinstance(exc, ClientError) and error_details(exc)[0] == "NoSuchBucket":
            return fail(f"s3://{name} does not exist", fix=lock_fix)
        if isinstance(exc, ClientError) and is_access_denied(exc):
            return fail(
                f"the hub may not read s3://{name}'s Object Lock and versioning: {describe_error(exc)}",
                fix="update the hub stack to the current hub.yaml (its ReadAuditBucketSettings statement), with "
                "AuditBucketName equal to GATEHOUSE_AUDIT_BUCKET",
            )
        return fail(f"s3://{name} could not be read: {describe_error(exc)}", fix=lock_fix)
    mode, days = retention.get("Mode"), _days(retention)
    problems = []
    if not enabled:
        problems.append("Object Lock is off: anyone with delete rights can remove the archive")
    elif mode == "GOVERNANCE":
        problems.append(
            "its default retention is in governance mode, which s3:BypassGovernanceRetention lifts"
        )
    elif mode is None and setting_days <= 0:
        problems.append(
            "it has no default retention and GATEHOUSE_AUDIT_RETENTION_DAYS is 0: nothing is locked"
        )
    if versioning != "Enabled":
        problems.append(f"versioning is {versioning.lower()}")
    facts = {"object_lock": enabled, "mode": mode, "days": days, "versioning": versioning}
    if problems:
        return fail(f"s3://{name}: {'; '.join(problems)}", fix=lock_fix, **facts)
    if mode is None:
        return warn(
            f"s3://{name} has Object Lock but no default retention: only what Gatehouse writes is locked",
            fix=f"give the bucket a default retention in compliance mode of {setting_days} days ({BUCKET_TEMPLATE})",
            **facts,
        )
    if days != setting_days:
        return warn(
            f"s3://{name} locks objects for {counted(days or 0, 'day')} by default; Gatehouse writes them with "
            f"{counted(setting_days, 'day')} (GATEHOUSE_AUDIT_RETENTION_DAYS)",
            fix="keep GATEHOUSE_AUDIT_RETENTION_DAYS equal to the bucket's default retention (the template's "
            "RetentionDays)",
            **facts,
        )
    return ok(
        f"s3://{name}: Object Lock in compliance mode, {counted(days or 0, 'day')} of retention, versioning on",
        **facts,
    )


INCIDENT = (
    "treat it as a security incident: python manage.py verify_audit names the first broken event, and the "
    "README's Audit trail section says what to do next"
)
CHECKPOINT_FIX = (
    "beat writes a checkpoint every 5 minutes once the trail grew: run beat, give the worker "
    "GATEHOUSE_AUDIT_CHECKPOINT_KEY (or _FILE), and share GATEHOUSE_AUDIT_CHECKPOINT_DIR between the worker and "
    "the process running the doctor"
)


@check(
    "audit.chain",
    "the audit trail's newest events link up, from the newest signed checkpoint to the head",
    needs=("database.migrations",),
)
def chain_head(ctx: Context) -> Result:
    state = AuditIntegrity.current()
    if state is not None and not state.ok:
        began = f" since {state.failing_since:%Y-%m-%d %H:%M %Z}" if state.failing_since else ""
        return fail(
            f"the periodic verification finds the audit trail broken at seq {state.broken_seq}{began}: {state.reason}",
            fix=INCIDENT,
        )
    tail = AuditEvent.objects.order_by("-seq").values("seq", "hash").first()
    if tail is None:
        return ok("no audit event yet")
    head = int(tail["seq"])
    key = settings.GATEHOUSE_AUDIT_CHECKPOINT_KEY
    stored = checkpoints.list_local()
    newest = stored[-1] if stored else None
    data: dict[str, Any] | None = None
    if newest is not None:
        try:
            data = newest.load()
        except checkpoints.CheckpointError as exc:
            return fail(str(exc), fix=INCIDENT)
        if key and not chain.signature_ok(data, key.encode()):
            return fail(
                f"the newest checkpoint {newest.name} has a bad signature (forged, altered, or signed with "
                f"another key: key id {data.get('key_id')})",
                fix=f"if GATEHOUSE_AUDIT_CHECKPOINT_KEY was changed on purpose, give this process the worker's "
                f"key; otherwise {INCIDENT}",
            )
        anchored = int(data["seq"])
        if anchored > head:
            return fail(
                f"the newest checkpoint records seq {anchored}, but the database ends at seq {head}: the newest "
                "events were deleted",
                fix=INCIDENT,
            )
        recorded = AuditEvent.objects.filter(seq=anchored).values_list("hash", flat=True).first()
        if anchored and recorded != data["hash"]:
            return fail(
                f"event seq {anchored} no longer has the hash checkpoint {newest.name} recorded: the trail was "
                "rewritten",
                fix=INCIDENT,
            )
    start = max(1, int(data["seq"]) if data else 1, head - HEAD_WINDOW + 1)
    rows = audit.iter_chain(AuditEvent.objects.filter(seq__gte=start))
    verdict = chain.verify_rows(rows, start_seq=start, sorted_by_seq=True)
    if not verdict.ok:
        return fail(f"the audit trail is broken at {verdict.describe_break()}", fix=INCIDENT)
    checked = f"{counted(verdict.rows, 'event')} verified up to the head, seq {head}"
    if not key:
        return warn(
            f"{checked}; GATEHOUSE_AUDIT_CHECKPOINT_KEY is not set here, so checkpoints can be neither written "
            "nor checked by this process",
            fix="set GATEHOUSE_AUDIT_CHECKPOINT_KEY_FILE for the worker (it writes the checkpoints) and where the "
            "doctor and verify_audit run",
        )
    now = timezone.now()
    if data is None:
        oldest = AuditEvent.objects.order_by("seq").values_list("created_at", flat=True).first()
        if oldest is not None and now - oldest > FIRST_CHECKPOINT_WITHIN:
            return warn(
                f"{checked}; no checkpoint was ever written, though the trail began {since(oldest)} ago",
                fix=CHECKPOINT_FIX,
            )
        return ok(f"{checked}; the first checkpoint comes with beat's first run")
    written = datetime.fromisoformat(str(data["created_at"]))
    if head > int(data["seq"]) and now - written > CHECKPOINT_LATE:
        return warn(
            f"{checked}; the newest checkpoint (seq {data['seq']}) was written {since(written)} ago and "
            f"{counted(head - int(data['seq']), 'event')} came since",
            fix=CHECKPOINT_FIX,
        )
    return ok(f"{checked}, from the signed checkpoint of seq {data['seq']} written {since(written)} ago")
