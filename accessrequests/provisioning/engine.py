"""The provisioning engine: grant statuses around one idempotent reconcile per principal and account.

``reconcile_principal`` is the only thing that changes AWS. It runs under a per-(principal, account) lock, so
two approvals racing never drop a statement: whoever holds the lock reads *every* grant that should be live
and writes the whole desired state (``delivery.converge``), and whoever comes next sees the result and has
nothing left to write. Revoke, expiry, retry, abandon and drift repair only change grant statuses in the
database and then ask for the same reconcile.

The lock is not a database transaction: AWS calls take from milliseconds to minutes (Identity Center), and a
transaction held that long would stall every other writer (SQLite admits one at a time). PostgreSQL gets a
session-level advisory lock; the embedded SQLite profile, which is one machine by definition, gets a file
lock. Both are released by the operating system or the server when a worker dies, even by SIGKILL.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import random
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.aws import errors as aws_errors
from accessrequests.models import (
    IN_FLIGHT_GRANT_STATUSES,
    LIVE_GRANT_STATUSES,
    AwsAccount,
    DriftCheck,
    Grant,
    GrantEnding,
    GrantStatus,
    Principal,
)
from accessrequests.notify import hooks as notify
from accessrequests.provisioning import delivery, session_fences
from accessrequests.provisioning.grants import enqueue_reconcile, reconcile_starting

logger = logging.getLogger(__name__)

K = TypeVar("K", bound=Hashable)

FIRST_RETRY = timedelta(seconds=30)
MAX_RETRY = timedelta(hours=1)
STUCK_AFTER = timedelta(minutes=5)
SWEEP_BATCH = 500
_REQUEST_IDS_KEPT = 50


class ProvisioningError(Exception):
    """A provisioning action that cannot be done, with a message for the person who tried."""


class TransientProvisioningError(ProvisioningError):
    """AWS failed in a way that usually passes (throttling, 5xx, network): the task retries with backoff."""


# --- the per-principal lock ---------------------------------------------------------------------------


def _lock_key(name: str) -> int:
    digest = hashlib.sha256(f"gatehouse:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def principal_lock(principal_id: int, account_id: int) -> Iterator[None]:
    """Serialise all work on one principal in one account, across threads, processes and machines."""
    with named_lock(f"provision:{principal_id}:{account_id}", file_name=f"p{principal_id}-a{account_id}"):
        yield


@contextlib.contextmanager
def named_lock(name: str, *, file_name: str | None = None) -> Iterator[None]:
    """Serialise all work on one named thing (see ``principal_lock``)."""
    if connection.vendor == "postgresql":
        key = _lock_key(name)
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [key])
        try:
            yield
        finally:
            try:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT pg_advisory_unlock(%s)", [key])
            except Exception:
                # A broken connection holds the lock until it closes, so close it.
                connection.close()
                raise
        return
    database = hashlib.sha256(str(connection.settings_dict["NAME"]).encode()).hexdigest()[:12]
    directory = settings.VAR_DIR / "locks"
    directory.mkdir(parents=True, exist_ok=True)
    file_name = file_name or hashlib.sha256(name.encode()).hexdigest()[:24]
    with open(directory / f"{database}-{file_name}.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# --- helpers ------------------------------------------------------------------------------------------


def _backoff(attempts: int, now: datetime) -> datetime:
    seconds = min(FIRST_RETRY.total_seconds() * 2 ** max(attempts - 1, 0), MAX_RETRY.total_seconds())
    return now + timedelta(seconds=seconds * random.uniform(0.8, 1.2))  # noqa: S311 - jitter, not crypto


def _ending(grant: Grant) -> str:
    if grant.status == GrantStatus.REVOKING:
        return grant.ending or GrantEnding.REVOKED
    return GrantEnding.EXPIRED  # a live grant past its expiry


def _event(grant: Grant, action: str, **fields: Any) -> dict[str, Any]:
    """A grant's audit event, for ``audit.record_many``."""
    return dict(
        action=action,
        object_type="grant",
        object_id=grant.pk,
        request_id=grant.request_id,
        principal_id=grant.principal_id,
        account_id=grant.account.account_id,
        **fields,
    )


def _audit(grant: Grant, action: str, **fields: Any) -> None:
    audit.record(**_event(grant, action, **fields))


def _grouped(grants: Iterable[Grant], key: Callable[[Grant], K]) -> dict[K, list[Grant]]:
    """Grants by the fields their update will set, so each group is one conditional update."""
    groups: dict[K, list[Grant]] = {}
    for grant in grants:
        groups.setdefault(key(grant), []).append(grant)
    return groups


def _should_be_live(grant: Grant, now: datetime) -> bool:
    return (
        grant.status in LIVE_GRANT_STATUSES
        and grant.starts_at <= now
        and (grant.expires_at is None or grant.expires_at > now)
    )


def _is_leaving(grant: Grant, now: datetime) -> bool:
    return grant.status == GrantStatus.REVOKING or (
        grant.status in LIVE_GRANT_STATUSES and grant.expires_at is not None and grant.expires_at <= now
    )


def _live_order(grant: Grant) -> tuple[int, int]:
    # Active grants first: when a limit overflows, the newcomer is refused, never what is already live.
    return (0 if grant.status == GrantStatus.ACTIVE else 1, grant.pk)


# --- reconcile ----------------------------------------------------------------------------------------


def reconcile_principal(*, principal_id: int, account_id: int) -> dict[str, Any]:
    """Make AWS match every grant that should be live now for one principal in one account (idempotent).

    Returns what happened: grants ``applied``, ``removed`` and ``failed`` (id -> reason), the AWS
    ``request_ids`` of the writes made (none when AWS already matched). Raises TransientProvisioningError
    after recording the failure when AWS failed in a way worth retrying soon.
    """
    reconcile_starting(principal_id=principal_id, account_id=account_id)  # before it reads anything
    if not _has_work(principal_id, account_id, timezone.now()):
        # Most messages find their grant applied already by a reconcile for another grant of the same
        # principal (coalescing); checking first, without the lock, keeps them from queueing behind it.
        return _outcome(principal_id, account_id)
    with principal_lock(principal_id, account_id):
        return _reconcile_locked(principal_id, account_id)


def _has_work(principal_id: int, account_id: int, now: datetime) -> bool:
    return (
        Grant.objects.filter(principal_id=principal_id, account_id=account_id)
        .filter(
            Q(status__in=[GrantStatus.QUEUED, GrantStatus.APPLYING, GrantStatus.FAILED], starts_at__lte=now)
            | Q(status=GrantStatus.REVOKING)
            | Q(status__in=LIVE_GRANT_STATUSES, expires_at__lte=now)
        )
        .exists()
    )


def _outcome(principal_id: int, account_id: int) -> dict[str, Any]:
    return {
        "principal_id": principal_id,
        "account_id": account_id,
        "applied": [],
        "removed": [],
        "failed": {},
        "request_ids": [],
    }


def _claim(principal_id: int, account_id: int, now: datetime) -> tuple[list[Grant], list[Grant], list[Grant]]:
    """Under the lock, in one short transaction: mark what this run will apply or remove.

    Returns (live, pending, leaving): every grant that should be live (the desired state), the ones among
    them not yet active (now "applying"), and the ones to take away (now "revoking").
    """
    with transaction.atomic():
        rows = list(
            Grant.objects.select_for_update(of=("self",))
            .filter(
                principal_id=principal_id,
                account_id=account_id,
                status__in=[*LIVE_GRANT_STATUSES, GrantStatus.REVOKING],
            )
            .select_related("request", "request__permission_set", "account", "principal__identity_center")
        )
        live = sorted((g for g in rows if _should_be_live(g, now)), key=_live_order)
        pending = [g for g in live if g.status != GrantStatus.ACTIVE]
        leaving = [g for g in rows if _is_leaving(g, now)]
        # The rows are locked: one update per target moves them all (the status condition stays, as ever).
        Grant.objects.transition_many(
            [g.pk for g in pending],
            sources={g.status for g in pending},
            target=GrantStatus.APPLYING,
            locked=True,
            attempts=F("attempts") + 1,
            updated_at=now,
        )
        for grant in pending:
            grant.status = GrantStatus.APPLYING
            grant.attempts += 1
        for ending, group in _grouped(leaving, _ending).items():
            Grant.objects.transition_many(
                [g.pk for g in group],
                sources={g.status for g in group},
                target=GrantStatus.REVOKING,
                locked=True,
                ending=ending,
                attempts=F("attempts") + 1,
                updated_at=now,
            )
            for grant in group:
                grant.status, grant.ending = GrantStatus.REVOKING, ending
                grant.attempts += 1
    return live, pending, leaving


def _reconcile_locked(principal_id: int, account_id: int) -> dict[str, Any]:
    live, pending, leaving = _claim(principal_id, account_id, timezone.now())
    outcome = _outcome(principal_id, account_id)
    if not pending and not leaving:
        return outcome  # everything live is active and nothing is leaving: AWS already holds it
    claimed = (pending or leaving)[0]  # read with its principal and account under the lock
    principal, account = claimed.principal, claimed.account
    try:
        result = delivery.converge(principal, account, live, write=True)
    except Exception as exc:
        reason = aws_errors.describe(exc)
        transient = aws_errors.is_transient(exc)
        logger.warning("provisioning %s in %s failed: %s", principal, account, reason)
        _record_failure(pending, leaving, reason, transient=transient, now=timezone.now())
        outcome["failed"] = {g.pk: reason for g in [*pending, *leaving]}
        if transient:
            raise TransientProvisioningError(reason) from exc
        if not (aws_errors.is_aws_error(exc) or isinstance(exc, delivery.policy.PolicyError)):
            raise  # a bug or the database: recorded on the grants, and loud in the worker's log
        return outcome
    _record_success(live, pending, leaving, result, now=timezone.now())
    outcome["applied"] = [g.pk for g in pending if g.pk not in result.refused]
    outcome["removed"] = [g.pk for g in leaving]
    outcome["failed"] = dict(result.refused)
    outcome["request_ids"] = result.request_ids
    return outcome


def _record_failure(
    pending: Sequence[Grant], leaving: Sequence[Grant], reason: str, *, transient: bool, now: datetime
) -> None:
    events: list[dict[str, Any]] = []
    with transaction.atomic():
        failed: set[int] = set()
        # Grants of one reconcile share their attempt count, so this is usually one update each.
        for attempts, group in _grouped(pending, lambda g: g.attempts).items():
            failed |= Grant.objects.transition_many(
                [g.pk for g in group],
                sources=[GrantStatus.APPLYING],
                target=GrantStatus.FAILED,
                last_error=reason,
                next_attempt_at=_backoff(attempts, now),
                updated_at=now,
            )
        for grant in pending:
            if grant.pk in failed:
                events.append(
                    _event(grant, "grant.failed", after={"reason": reason, "attempts": grant.attempts})
                )
        for attempts, group in _grouped(leaving, lambda g: g.attempts).items():
            # Still to be removed: it stays "revoking" (the sweeper re-drives it) and shows why it is late.
            Grant.objects.filter(pk__in=[g.pk for g in group], status=GrantStatus.REVOKING).update(
                last_error=reason, next_attempt_at=_backoff(attempts, now), updated_at=now
            )
        for grant in leaving:
            events.append(
                _event(grant, "grant.revoke_failed", after={"reason": reason, "attempts": grant.attempts})
            )
        audit.record_many(events)
        # People hear about a failure that will not pass by itself, not about every throttled try.
        if not transient:
            notify.on_grants_failed([g for g in pending if g.pk in failed])


def _merged_ids(existing: Iterable[str], new: Iterable[str]) -> list[str]:
    return list(dict.fromkeys([*existing, *new]))[-_REQUEST_IDS_KEPT:]


def _record_success(
    live: Sequence[Grant],
    pending: Sequence[Grant],
    leaving: Sequence[Grant],
    result: delivery.Convergence,
    *,
    now: datetime,
) -> None:
    """Record what one converge did: each group of grants given the same fields is one conditional update
    (rows locked, then moved), and every grant's events are appended to the audit chain together."""
    ids = [i for i in result.request_ids if i]
    pending_ids = {g.pk for g in pending}
    refused = [g for g in live if g.pk in result.refused]
    applying = [g for g in live if g.pk not in result.refused and g.pk in pending_ids]
    details = {g.pk: {**g.details, **result.details.get(g.pk, {})} for g in live}
    events: list[dict[str, Any]] = []
    with transaction.atomic():
        failed: set[int] = set()
        for reason, attempts in {(result.refused[g.pk], g.attempts) for g in refused}:
            failed |= Grant.objects.transition_many(
                [g.pk for g in refused if (result.refused[g.pk], g.attempts) == (reason, attempts)],
                sources=[GrantStatus.APPLYING, GrantStatus.ACTIVE],
                target=GrantStatus.FAILED,
                last_error=reason,
                next_attempt_at=_backoff(attempts, now),
                updated_at=now,
            )
        for grant in live:
            still_active = grant.pk not in result.refused and grant.pk not in pending_ids
            if still_active and details[grant.pk] != grant.details:  # e.g. a cross-account role's ARN, again
                Grant.objects.filter(pk=grant.pk, status=GrantStatus.ACTIVE).update(details=details[grant.pk])
        applied: set[int] = set()

        def same_fields(grant: Grant) -> tuple[Any, ...]:
            return (
                grant.applied_at,
                tuple(grant.aws_request_ids),
                json.dumps(details[grant.pk], sort_keys=True, cls=DjangoJSONEncoder),
            )

        for group in _grouped(applying, same_fields).values():
            first = group[0]
            # A grant revoked while we worked is not moved: its own reconcile, queued behind us, takes it away.
            applied |= Grant.objects.transition_many(
                [g.pk for g in group],
                sources=[GrantStatus.APPLYING],
                target=GrantStatus.ACTIVE,
                applied_at=first.applied_at or now,
                last_error="",
                next_attempt_at=None,
                aws_request_ids=_merged_ids(first.aws_request_ids, ids),
                details=details[first.pk],
                updated_at=now,
            )
        for grant in live:
            if grant.pk in failed:
                reason = result.refused[grant.pk]
                events.append(
                    _event(grant, "grant.failed", after={"reason": reason, "attempts": grant.attempts})
                )
            elif grant.pk in applied:
                after = {"status": GrantStatus.ACTIVE, "attempts": grant.attempts, **details[grant.pk]}
                if not ids:
                    # Nothing needed writing: AWS already held it (an earlier attempt's write that was not
                    # recorded, say by a worker killed right after it). The auditor sees why no request id is
                    # named.
                    after["aws_already_matched"] = True
                events.append(_event(grant, "grant.applied", after=after, aws_request_ids=ids))
                events.append(_event(grant, "grant.verified", after={"read_back": result.summary}))
        ended: set[int] = set()
        for (ending, request_ids), group in _grouped(
            leaving, lambda g: (g.ending or GrantEnding.REVOKED, tuple(g.aws_request_ids))
        ).items():
            ended |= Grant.objects.transition_many(
                [g.pk for g in group],
                sources=[GrantStatus.REVOKING],
                target=ending,
                revoked_at=now,
                last_error="",
                next_attempt_at=None,
                aws_request_ids=_merged_ids(request_ids, ids),
                updated_at=now,
            )
        for grant in leaving:
            if grant.pk in ended:
                ending = grant.ending or GrantEnding.REVOKED
                events.append(
                    _event(
                        grant,
                        f"grant.{ending}",
                        before={"status": GrantStatus.REVOKING},
                        after={"status": ending, "read_back": result.summary},
                        aws_request_ids=ids,
                    )
                )
        audit.record_many(events)
        for grant in leaving:
            if grant.pk in ended:
                session_fences.access_end_record(grant_id=grant.pk, now=now)
        notify.on_grants_failed([g for g in live if g.pk in failed])
        notify.on_grants_applied([g for g in live if g.pk in applied])


# --- what people ask for ------------------------------------------------------------------------------


def _locked_grant(grant_id: int) -> Grant:
    try:
        return (
            Grant.objects.select_for_update(of=("self",))
            .select_related("request", "account")
            .get(pk=grant_id)
        )
    except Grant.DoesNotExist:
        raise ProvisioningError("No such grant.") from None


def _start_leaving(
    grant: Grant, *, ending: str, actor: Any, action: str, extra: dict[str, Any] | None = None
) -> None:
    before = {"status": grant.status}
    Grant.objects.transition(
        grant.pk,
        sources=[grant.status],
        target=GrantStatus.REVOKING,
        ending=ending,
        next_attempt_at=None,
        updated_at=timezone.now(),
    )
    _audit(
        grant,
        action,
        actor=actor,
        before=before,
        after={"status": GrantStatus.REVOKING, "ending": ending, **(extra or {})},
    )
    enqueue_reconcile(principal_id=grant.principal_id, account_id=grant.account_id)


def grant_revoke(
    *, grant_id: int, actor: Any, review_item: Any = None, post_review: Any = None, reason: str = ""
) -> Grant:
    """Take a grant away now; AWS follows within moments. Its requester or an admin may; so may the reviewer of
    an access review item or a break-glass post-review about it (``review_item``, ``post_review``), and the
    deadline of a campaign that revokes what nobody reviewed (no actor, ``review_item``): see
    ``permissions.revoke_problem``."""
    with transaction.atomic():
        grant = _locked_grant(grant_id)
        permissions.check(
            permissions.revoke_problem(actor, grant, review_item=review_item, post_review=post_review)
        )
        extra: dict[str, Any] = {}
        if review_item is not None:
            extra = {"review": review_item.campaign.reference, "review_item": review_item.pk}
        if post_review is not None:
            extra = {"break_glass_post_review": post_review.pk}
        if reason:
            extra["reason"] = reason[:2000]
        _start_leaving(
            grant, ending=GrantEnding.REVOKED, actor=actor, action="grant.revoke_requested", extra=extra
        )
    grant.refresh_from_db()
    return grant


def grant_end_departed(*, grant_id: int, reason: str, actor_label: str) -> bool:
    """The person a grant belongs to has left (deactivated by an admin or the identity provider): it ends now,
    as a revoke does, sessions included. Nobody asked, so no revoke permission applies; False when it was not
    live any more."""
    with transaction.atomic():
        grant = _locked_grant(grant_id)
        if grant.status not in LIVE_GRANT_STATUSES:
            return False
        Grant.objects.transition(
            grant.pk,
            sources=[grant.status],
            target=GrantStatus.REVOKING,
            ending=GrantEnding.REVOKED,
            next_attempt_at=None,
            updated_at=timezone.now(),
        )
        _audit(
            grant,
            "grant.revoke_requested",
            actor_label=actor_label,
            before={"status": grant.status},
            after={"status": GrantStatus.REVOKING, "ending": GrantEnding.REVOKED, "reason": reason[:2000]},
        )
        enqueue_reconcile(principal_id=grant.principal_id, account_id=grant.account_id)
    return True


def grant_retry_now(*, grant_id: int, actor: Any) -> Grant:
    """An admin asks for a failed (or stuck) grant to be tried again at once."""
    with transaction.atomic():
        grant = _locked_grant(grant_id)
        permissions.check(permissions.operate_problem(actor))
        if grant.status not in (GrantStatus.FAILED, *IN_FLIGHT_GRANT_STATUSES):
            raise ProvisioningError(f"This grant is {grant.get_status_display().lower()}; nothing to retry.")
        status = GrantStatus.QUEUED if grant.status == GrantStatus.FAILED else grant.status
        Grant.objects.transition(
            grant.pk, sources=[grant.status], target=status, next_attempt_at=None, updated_at=timezone.now()
        )
        _audit(
            grant,
            "grant.retry_requested",
            actor=actor,
            before={"status": grant.status},
            after={"status": status},
        )
        enqueue_reconcile(principal_id=grant.principal_id, account_id=grant.account_id)
    grant.refresh_from_db()
    return grant


def grant_abandon(*, grant_id: int, actor: Any) -> Grant:
    """An admin gives up on a grant that does not apply; whatever of it reached AWS is removed."""
    with transaction.atomic():
        grant = _locked_grant(grant_id)
        permissions.check(permissions.operate_problem(actor))
        if grant.status not in (GrantStatus.FAILED, GrantStatus.QUEUED, GrantStatus.APPLYING):
            raise ProvisioningError(
                f"This grant is {grant.get_status_display().lower()}; only a failed or stuck grant can be abandoned."
            )
        _start_leaving(grant, ending=GrantEnding.ABANDONED, actor=actor, action="grant.abandon_requested")
    grant.refresh_from_db()
    return grant


# --- periodic sweeps ----------------------------------------------------------------------------------


def _enqueue_pairs(pairs: Iterable[tuple[int, int]]) -> int:
    unique = sorted(set(pairs))
    for principal_id, account_id in unique:
        enqueue_reconcile(principal_id=principal_id, account_id=account_id, always=True)
    return len(unique)


def grants_expire_due(*, now: datetime | None = None) -> int:
    """Start removing every grant past its expiry (beat, each minute); returns how many.

    Expiry is this database query, never a Celery countdown, so a worker that was down at the expiry time
    still removes the access as soon as anything runs again.
    """
    now = now or timezone.now()
    due = list(
        Grant.objects.filter(status__in=LIVE_GRANT_STATUSES, expires_at__lte=now)
        .order_by("expires_at")
        .values_list("pk", flat=True)[:SWEEP_BATCH]
    )
    expired = 0
    with transaction.atomic():
        for pk in due:
            grant = _locked_grant(pk)
            if grant.status not in LIVE_GRANT_STATUSES:
                continue  # the loser of a race with a revoke or a reconcile does nothing
            _start_leaving(grant, ending=GrantEnding.EXPIRED, actor=None, action="grant.expiring")
            expired += 1
    return expired


def grants_redrive_stuck(*, stuck_after: timedelta = STUCK_AFTER, now: datetime | None = None) -> int:
    """Ask again for every reconcile that should have happened (beat, each minute); returns how many.

    Covers a lost message (Redis down at approval time), a killed worker (grant left "applying"), a failed
    grant whose backoff has passed, and a grant whose start time has come.
    """
    now = now or timezone.now()
    stale = now - stuck_after
    due = (
        Q(status__in=IN_FLIGHT_GRANT_STATUSES, updated_at__lte=stale)
        | Q(status=GrantStatus.QUEUED, starts_at__gte=F("updated_at"))
        | Q(status__in=[GrantStatus.FAILED, GrantStatus.REVOKING], next_attempt_at__lte=now)
    )
    pairs = (
        Grant.objects.filter(due, starts_at__lte=now)
        .values_list("principal_id", "account_id")
        .distinct()
        .order_by("principal_id", "account_id")[:SWEEP_BATCH]
    )
    with transaction.atomic():
        return _enqueue_pairs(pairs)


def drift_check(*, now: datetime | None = None) -> dict[str, Any]:
    """Compare AWS with the desired state of every principal with portal-owned state (beat, every 15 min).

    Drift is recorded in the audit trail and repaired unless the account has ``repair_drift`` off. Pairs with
    work in flight are skipped: their own reconcile is about to write the desired state anyway.
    """
    now = now or timezone.now()
    pairs = set(
        Grant.objects.filter(applied_at__isnull=False).values_list("principal_id", "account_id").distinct()
    )
    counts = {"checked": 0, "drifted": 0, "repaired": 0, "skipped": 0, "errors": 0}
    for principal_id, account_id in sorted(pairs):
        try:
            with principal_lock(principal_id, account_id):
                outcome = _check_one(principal_id, account_id, now=timezone.now())
        except Exception as exc:
            counts["errors"] += 1
            logger.warning(
                "drift check of principal %s in account %s failed: %s",
                principal_id,
                account_id,
                aws_errors.describe(exc),
            )
            continue
        counts["skipped" if outcome == "skipped" else "checked"] += 1
        counts["drifted"] += outcome in ("drifted", "repaired")
        counts["repaired"] += outcome == "repaired"
    DriftCheck.record(counts=counts)
    return counts


def _check_one(principal_id: int, account_id: int, *, now: datetime) -> str:
    grants = list(
        Grant.objects.filter(
            principal_id=principal_id,
            account_id=account_id,
            status__in=[*LIVE_GRANT_STATUSES, GrantStatus.REVOKING],
        ).select_related("request", "request__permission_set", "account")
    )
    # Work in flight (or an expiry not yet swept) means a reconcile is about to write the desired state.
    if any(g.starts_at <= now and (g.status != GrantStatus.ACTIVE or _is_leaving(g, now)) for g in grants):
        return "skipped"
    principal = Principal.objects.select_related("identity_center").get(pk=principal_id)
    account = AwsAccount.objects.get(pk=account_id)
    live = sorted((g for g in grants if _should_be_live(g, now)), key=_live_order)
    found = delivery.converge(principal, account, live, write=False)
    if not found.differences:
        return "checked"

    def record(action: str, **fields: Any) -> None:
        audit.record(
            action=action,
            object_type="principal",
            object_id=principal_id,
            principal_id=principal_id,
            account_id=account.account_id,
            before={"differences": found.differences},
            **fields,
        )

    record("drift.found", after={"desired": found.summary, "repair": account.repair_drift})
    if not account.repair_drift:
        return "drifted"
    repaired = delivery.converge(principal, account, live, write=True)
    record(
        "drift.repaired",
        after={"desired": repaired.summary},
        aws_request_ids=[i for i in repaired.request_ids if i],
    )
    if repaired.refused:
        _record_success(live, [], [], repaired, now=timezone.now())
    return "repaired"
