"""Celery tasks: thin wrappers that reload rows by id and call one service. Every task is idempotent."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="accessrequests.tasks.echo")
def echo(value: str) -> str:
    """Round-trips a value through the broker and a worker; used by the health tooling and tests."""
    return value


@shared_task(name="accessrequests.tasks.reconcile_principal")
def reconcile_principal(principal_id: int, account_id: int) -> dict:
    """Make AWS match the desired state of one principal in one account (idempotent)."""
    from accessrequests.services import provisioning

    return provisioning.reconcile_principal(principal_id=principal_id, account_id=account_id)


@shared_task(name="accessrequests.tasks.sync_catalog")
def sync_catalog() -> dict:
    """Read the AWS catalog into the database (beat, every 15 minutes; idempotent)."""
    from accessrequests.services.catalog import catalog_sync

    return catalog_sync()


@shared_task(name="accessrequests.tasks.expire_unreviewed_requests")
def expire_unreviewed_requests() -> int:
    """Close requests nobody decided within GATEHOUSE_PENDING_EXPIRY_HOURS (beat, hourly; idempotent)."""
    from datetime import timedelta

    from django.conf import settings

    from accessrequests.services.requests import requests_expire_unreviewed

    return requests_expire_unreviewed(older_than=timedelta(hours=settings.GATEHOUSE_PENDING_EXPIRY_HOURS))


@shared_task(name="accessrequests.tasks.archive_audit")
def archive_audit() -> list[str]:
    """Write finished days of the audit trail to S3 when a bucket is configured (beat, hourly; idempotent)."""
    from accessrequests.services.audit_archive import archive_missing_days

    return archive_missing_days()
