"""Grants: created when a request is approved; provisioning is enqueued only after the transaction commits."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.core import enqueue
from accessrequests.models import AccessRequest, Grant, GrantStatus

logger = logging.getLogger(__name__)


# Several grants of one principal in one account approved in quick succession need one reconcile between them:
# it reads every grant that should be live. A message sent and not yet started is marked in the shared cache, and
# an enqueue that finds the mark after its commit sends nothing; the reconcile removes the mark *before* it reads
# the grants, so whatever committed before the mark was seen is read by it. The mark expires, so a lost message
# stops covering later ones within this time (the sweeper re-drives what it covered).
RECONCILE_MARK_SECONDS = 60


def _mark_key(principal_id: int, account_id: int) -> str:
    return f"reconcile-pending:{principal_id}:{account_id}"


def _shared_cache() -> bool:
    # A cache of one process cannot tell the sender what a worker started: then every enqueue sends.
    backend = str(settings.CACHES["default"]["BACKEND"])
    return not backend.endswith(("LocMemCache", "DummyCache"))


def _already_pending(args: tuple[object, ...]) -> bool:
    if not _shared_cache():
        return False
    try:
        return not cache.add(_mark_key(*args), 1, timeout=RECONCILE_MARK_SECONDS)  # type: ignore[arg-type]
    except Exception as exc:  # the cache down: send, as without it
        logger.warning("reconcile mark not set (%s); sending anyway", exc.__class__.__name__)
        return False


def _unmark(principal_id: int, account_id: int) -> None:
    if not _shared_cache():
        return
    try:
        cache.delete(_mark_key(principal_id, account_id))
    except Exception as exc:  # the mark expires by itself; until then the sweeper covers what it held back
        logger.warning("reconcile mark not removed (%s)", exc.__class__.__name__)


def _not_sent(args: tuple[object, ...]) -> None:
    _unmark(*args)  # type: ignore[arg-type]


def reconcile_starting(*, principal_id: int, account_id: int) -> None:
    """A reconcile of this pair starts and is about to read its grants: later enqueues must send again."""
    _unmark(principal_id, account_id)


def enqueue_reconcile(*, principal_id: int, account_id: int, always: bool = False) -> None:
    """Ask a worker to make AWS match the desired state of one principal in one account, after commit (unless a
    message for the pair is already waiting: see ``RECONCILE_MARK_SECONDS``; ``always`` for the sweeper, which
    re-drives because a message may have been lost).

    The broker being down (Redis stopped, network) must not turn a committed approval into an error page: the grant
    is in the database, and the sweeper re-drives grants left in queued/applying/revoking.
    """
    enqueue.after_commit(
        "accessrequests.tasks.reconcile_principal",
        principal_id,
        account_id,
        reference=f"principal {principal_id} in account {account_id}",
        if_lost="the sweeper will re-drive it",
        unless=None if always else _already_pending,
        not_sent=_not_sent,
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
