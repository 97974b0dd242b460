"""Celery tasks: thin wrappers that reload rows by id and call one service. Every task is idempotent."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="accessrequests.tasks.echo")
def echo(value: str) -> str:
    """Round-trips a value through the broker and a worker; used by the health tooling and tests."""
    return value


def _transient_provisioning_errors() -> tuple[type[Exception], ...]:
    # Resolved when the module is imported by the worker; the service module itself imports no Celery.
    from accessrequests.provisioning.engine import TransientProvisioningError

    return (TransientProvisioningError,)


# Throttling, 5xx and network errors (already retried by botocore's adaptive mode) are retried again here
# with a growing, jittered countdown; the failure is recorded on the grants first, and the sweeper picks
# them up after the last retry. Short countdowns only: a long ETA would be redelivered by Redis.
@shared_task(
    name="accessrequests.tasks.reconcile_principal",
    autoretry_for=_transient_provisioning_errors(),
    retry_backoff=2,
    retry_backoff_max=120,
    retry_jitter=True,
    max_retries=6,
)
def reconcile_principal(principal_id: int, account_id: int) -> dict:
    """Make AWS match the desired state of one principal in one account (idempotent)."""
    from accessrequests.provisioning import engine as provisioning

    return provisioning.reconcile_principal(principal_id=principal_id, account_id=account_id)


@shared_task(name="accessrequests.tasks.prune_used_codes")
def prune_used_codes() -> int:
    """Forget used TOTP codes whose window has passed (beat, every 10 minutes; idempotent)."""
    from accessrequests.authz.used_codes import prune

    return prune()


@shared_task(name="accessrequests.tasks.sync_catalog")
def sync_catalog() -> dict:
    """Read what changed in the AWS catalog into the database (beat, every 15 minutes; idempotent; resumes a
    crashed run)."""
    from accessrequests.catalog.sync import INCREMENTAL, catalog_sync

    return catalog_sync(mode=INCREMENTAL)


@shared_task(name="accessrequests.tasks.expire_unreviewed_requests")
def expire_unreviewed_requests() -> int:
    """Close requests nobody decided within GATEHOUSE_PENDING_EXPIRY_HOURS (beat, hourly; idempotent)."""
    from datetime import timedelta

    from django.conf import settings

    from accessrequests.workflow.requests import requests_expire_unreviewed

    return requests_expire_unreviewed(older_than=timedelta(hours=settings.GATEHOUSE_PENDING_EXPIRY_HOURS))


@shared_task(name="accessrequests.tasks.archive_audit")
def archive_audit() -> list[str]:
    """Write finished days of the audit trail to S3 when a bucket is configured (beat, hourly; idempotent)."""
    from accessrequests.audit.archive import archive_missing_days

    return archive_missing_days()


@shared_task(name="accessrequests.tasks.write_audit_checkpoint")
def write_audit_checkpoint(day_end: bool = False) -> dict | None:
    """Sign and ship a checkpoint of the audit chain (beat: every 5 minutes when it grew, and at each day's end
    whatever happened; idempotent: a second run finds nothing new). Returns it without its hash list."""
    from accessrequests.audit import checkpoints

    written = checkpoints.write(force=day_end)
    return checkpoints.public_view(written) if written else None


@shared_task(name="accessrequests.tasks.verify_audit_trail")
def verify_audit_trail() -> dict:
    """Verify the audit trail against its checkpoints; a break turns the pages red and tells admins and auditors
    (beat, every 15 minutes; idempotent: a failure already reported is not reported again)."""
    from accessrequests.audit.watch import audit_integrity_check

    return audit_integrity_check()


@shared_task(name="accessrequests.tasks.apply_rules_file")
def apply_rules_file() -> dict:
    """Apply GATEHOUSE_RULES_FILE (beat, every GATEHOUSE_RULES_FILE_MINUTES, and at worker start; idempotent: a
    file that matches the database changes and records nothing; an invalid one changes nothing)."""
    from accessrequests.governance.rule_changes import rules_apply_configured_file

    return rules_apply_configured_file()


@shared_task(name="accessrequests.tasks.expire_grants")
def expire_grants() -> int:
    """Start removing grants past their expiry (beat, each minute; idempotent)."""
    from accessrequests.provisioning.engine import grants_expire_due

    return grants_expire_due()


@shared_task(name="accessrequests.tasks.redrive_grants")
def redrive_grants() -> int:
    """Re-queue reconciles that were lost, interrupted or are due again (beat, each minute; idempotent)."""
    from accessrequests.provisioning.engine import grants_redrive_stuck

    return grants_redrive_stuck()


@shared_task(name="accessrequests.tasks.reconcile_access_end")
def reconcile_access_end(access_end_id: int) -> dict:
    """End the sessions issued before a grant ended and confirm the end in AWS (idempotent)."""
    from accessrequests.provisioning.sessions import access_end_reconcile

    return access_end_reconcile(access_end_id=access_end_id)


@shared_task(name="accessrequests.tasks.sweep_access_ends")
def sweep_access_ends() -> dict:
    """Run due end checks, remove denies whose sessions have expired, put back removed ones (beat, each
    minute; idempotent)."""
    from accessrequests.provisioning.sessions import access_ends_sweep

    return access_ends_sweep()


@shared_task(name="accessrequests.tasks.check_drift")
def check_drift() -> dict:
    """Compare AWS with the desired state, record drift and repair it (beat, every 15 minutes; idempotent)."""
    from accessrequests.provisioning.engine import drift_check

    return drift_check()


class EvidenceNotReady(Exception):
    """IAM is still preparing a last-accessed report; the task asks again shortly."""


# IAM prepares a report in seconds to minutes: ask again after 5, 10, 20, 40, 60, 60 ... seconds (short
# countdowns only; the hourly tick asks again for anything still missing after the last retry).
@shared_task(
    name="accessrequests.tasks.gather_review_evidence",
    autoretry_for=(EvidenceNotReady,),
    retry_backoff=5,
    retry_backoff_max=60,
    retry_jitter=False,
    max_retries=12,
)
def gather_review_evidence(item_id: int) -> str:
    """Read when a review item's access was last used, from IAM (idempotent: a started job is only asked again)."""
    from accessrequests.reviews.evidence import review_item_gather_evidence

    status = review_item_gather_evidence(item_id=item_id)
    if status == "in_progress":
        raise EvidenceNotReady(f"review item {item_id}: IAM's report is in progress")
    return status


@shared_task(name="accessrequests.tasks.review_campaigns_tick")
def review_campaigns_tick() -> dict:
    """Start scheduled access reviews, remind, and apply deadlines (beat, hourly; idempotent)."""
    from accessrequests.reviews.campaigns import campaigns_tick

    return campaigns_tick()


@shared_task(name="accessrequests.tasks.break_glass_overdue")
def break_glass_overdue() -> int:
    """Record and announce break-glass post-reviews past their time (beat, every 15 minutes; idempotent)."""
    from accessrequests.workflow.break_glass import post_reviews_overdue

    return post_reviews_overdue()


# Registers the notify_* tasks, which live beside what they send.
from accessrequests.notify import send  # noqa: F401, E402
from accessrequests.slack import messages  # noqa: F401, E402
