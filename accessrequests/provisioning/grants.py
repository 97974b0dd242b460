"""Grants: created when a request is approved; provisioning is enqueued only after the transaction commits."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.core import enqueue
from accessrequests.models import AccessRequest, Grant, GrantStatus

logger = logging.getLogger(__name__)


def enqueue_reconcile(*, principal_id: int, account_id: int) -> None:
    """Ask a worker to make AWS match the desired state of one principal in one account, after commit.

    The broker being down (Redis stopped, network) must not turn a committed approval into an error page: the grant
    is in the database, and the sweeper re-drives grants left in queued/applying/revoking.
    """
    enqueue.after_commit(
        "accessrequests.tasks.reconcile_principal",
        principal_id,
        account_id,
        reference=f"principal {principal_id} in account {account_id}",
        if_lost="the sweeper will re-drive it",
    )


def grant_create(*, request: AccessRequest) -> Grant:
    """The grant of an approved request. Its clock starts now (or at the requested later start): the requested
    duration is a length, so a request approved late still runs for all of it."""
    starts_at = max(request.starts_at, timezone.now())
    expires_at = (
        None if request.duration_hours is None else starts_at + timedelta(hours=request.duration_hours)
    )
    AccessRequest.objects.filter(pk=request.pk).update(ends_at=expires_at)
    request.ends_at = expires_at
    grant = Grant.objects.create(
        request=request,
        principal=request.principal,
        account=request.account,
        delivery=request.delivery,
        statements=request.statements,
        status=GrantStatus.QUEUED,
        starts_at=starts_at,
        expires_at=expires_at,
    )
    audit.record(
        action="grant.queued",
        object_type="grant",
        object_id=grant.pk,
        request_id=request.pk,
        principal_id=request.principal_id,
        account_id=request.account.account_id,
        after={
            "status": grant.status,
            "delivery": grant.delivery,
            "starts_at": grant.starts_at,
            "expires_at": grant.expires_at,
        },
    )
    enqueue_reconcile(principal_id=grant.principal_id, account_id=grant.account_id)
    return grant
