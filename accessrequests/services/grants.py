"""Grants: created when a request is approved; provisioning is enqueued only after the transaction commits."""

from __future__ import annotations

from django.db import transaction

from accessrequests import audit
from accessrequests.models import AccessRequest, Grant, GrantStatus


def enqueue_reconcile(*, principal_id: int, account_id: int) -> None:
    """Ask a worker to make AWS match the desired state of one principal in one account, after commit.

    A lost message only delays the work: the sweeper re-drives grants left in queued/applying/revoking.
    """
    from accessrequests.tasks import reconcile_principal

    transaction.on_commit(lambda: reconcile_principal.delay(principal_id, account_id))


def grant_create(*, request: AccessRequest) -> Grant:
    grant = Grant.objects.create(
        request=request,
        principal=request.principal,
        account=request.account,
        delivery=request.delivery,
        statements=request.statements,
        status=GrantStatus.QUEUED,
        starts_at=request.starts_at,
        expires_at=request.ends_at,
    )
    audit.record(
        action="grant.queued",
        object_type="grant",
        object_id=grant.pk,
        request_id=request.pk,
        principal_id=request.principal_id,
        account_id=request.account.account_id,
        after={"status": grant.status, "delivery": grant.delivery, "expires_at": grant.expires_at},
    )
    enqueue_reconcile(principal_id=grant.principal_id, account_id=grant.account_id)
    return grant
