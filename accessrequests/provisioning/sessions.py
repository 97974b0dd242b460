"""Access ends when Gatehouse says it ends: older sessions cut, the end confirmed in AWS, the deny removed.

When a grant's removal has been written (revoke, expiry, an access review's revoke, the end of break-glass, a
deactivated person), ``access_end_reconcile`` runs for it (``AccessEnd``):

1. **Plan** what ends sessions issued before the end, by delivery. AWS evaluates a session's permissions at
   each call, so where the removal takes the permissions away from the role or user the session belongs to,
   nothing more is needed: an IAM user (its keys and sessions), an IAM group, a portal-owned cross-account role
   (deleted; a new grant gets a role of another name, which no older session can reach). Where the session's
   role outlives the grant, a deny is written (``session_fences``) and kept until the longest session issued
   before the end has expired (the role's maximum session duration, the permission set's session duration):
   an IAM role principal (the revoked actions, for sessions issued before), the role of a shared permission
   set (everything, for that person's sessions in that account), a portal-owned permission set (the revoked
   actions).
2. **Write** the deny (its own inline policy on a role; Gatehouse's own statements in a permission set's
   inline policy, then provisioned to the account) and read it back.
3. **Confirm**: read back every policy that applies to the principal (or the permission set), evaluate them
   for a session issued just before the end with a condition-aware evaluator (``aws.evaluate``), and record
   ``confirmed_at`` when every action the grant gave is refused. What something else still allows (a policy
   or an assignment Gatehouse did not make) is recorded as such; what Gatehouse's own policy still allows
   (IAM not yet showing the removal) is checked again later.

``access_ends_sweep`` (beat, each minute) runs the checks that are due, removes each deny once the sessions it
covers have expired, and every 15 minutes reads each live deny back and puts it back if someone removed it.
Everything here is idempotent: a deny is computed from the database and written whole.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.aws import errors as aws_errors
from accessrequests.aws import identity_center as ic
from accessrequests.aws import identity_policies as idp
from accessrequests.aws.client import is_access_denied
from accessrequests.aws.iam import Target, canonical
from accessrequests.models import (
    LIVE_GRANT_STATUSES,
    AccessEnd,
    Delivery,
    EndState,
    FenceKind,
    Grant,
    GrantStatus,
    ManagedAssignment,
    Principal,
    PrincipalKind,
    RequestKind,
)
from accessrequests.policy import documents as policy
from accessrequests.policy import evaluate
from accessrequests.provisioning import delivery
from accessrequests.provisioning import engine as provisioning
from accessrequests.provisioning import session_fences as fences
from accessrequests.provisioning.grants import enqueue_reconcile

logger = logging.getLogger(__name__)

RECHECK_FIRST = timedelta(seconds=15)
RECHECK_MAX = timedelta(minutes=10)
MAX_CHECKS = 40
FENCE_CHECK_EVERY = timedelta(minutes=15)
SWEEP_BATCH = 200
ROLE_INLINE_LIMIT = 10_240


def _audit(end: AccessEnd, action: str, **fields: Any) -> None:
    grant = end.grant
    audit.record(
        action=action,
        object_type="grant",
        object_id=grant.pk,
        request_id=grant.request_id,
        principal_id=grant.principal_id,
        account_id=grant.account.account_id,
        **fields,
    )


def _load(access_end_id: int) -> AccessEnd:
    return AccessEnd.objects.select_related(
        "grant__request__permission_set",
        "grant__principal__identity_center",
        "grant__account",
    ).get(pk=access_end_id)


def _instance(principal: Principal) -> ic.Instance:
    center = principal.identity_center
    assert center is not None  # Identity Center principals have one (the database's has_home constraint)
    return ic.Instance(instance_arn=center.instance_arn, region=center.region)


_ISO_DURATION = re.compile(r"^PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?$")


def _duration(iso: str) -> timedelta:
    """A permission set's session duration (``PT1H``, ``PT8H30M``); the longest possible when unreadable."""
    match = _ISO_DURATION.match(iso.strip().upper())
    if match is None or not any(match.groups()):
        return timedelta(hours=12)
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


# --- 1. plan ------------------------------------------------------------------------------------------


def _people(principal: Principal) -> list[Principal]:
    """The Identity Center users whose sessions a grant to ``principal`` gave (a group's members)."""
    if principal.kind == PrincipalKind.IC_USER:
        return [principal]
    return list(principal.members.filter(kind=PrincipalKind.IC_USER).order_by("name"))


def _still_holding(principal: Principal, account_id: str, permission_set_arn: str) -> set[int]:
    """Ids of the people among the grant's who still hold the permission set in the account another way
    (assigned directly, or through a group): their sessions are theirs to keep."""
    holders = ic.list_assignments(
        _instance(principal), account_id=account_id, permission_set_arn=permission_set_arn
    )
    users = {h["PrincipalId"] for h in holders if h["PrincipalType"] == "USER"}
    groups = {h["PrincipalId"] for h in holders if h["PrincipalType"] == "GROUP"}
    held: set[int] = set()
    for person in _people(principal):
        if (
            person.external_id in users
            or person.member_of.filter(kind=PrincipalKind.IC_GROUP, external_id__in=groups).exists()
        ):
            held.add(person.pk)
    return held


def _remaining_statements(grant: Grant) -> list[dict[str, Any]]:
    """What the principal's other live grants in the account still give through the same delivery."""
    return [
        statement
        for other in Grant.objects.filter(
            principal_id=grant.principal_id,
            account_id=grant.account_id,
            delivery=grant.delivery,
            status__in=LIVE_GRANT_STATUSES,
        ).exclude(pk=grant.pk)
        for statement in other.statements
    ]


def _plan(end: AccessEnd) -> None:
    grant, principal, account = end.grant, end.grant.principal, end.grant.account
    kind, target, statements, lifetime, residual = FenceKind.NONE, "", [], None, ""
    if grant.delivery == Delivery.IAM_POLICY and principal.kind == PrincipalKind.IAM_ROLE:
        role = delivery.iam_target(principal, account)
        documents = idp.identity_documents(role)
        if documents is not None:
            remaining = [
                d.document
                for d in documents
                if d.document is not None and not d.name.endswith(f" {idp.FENCE_POLICY_NAME}")
            ]
            statements = fences.pairs_fence(
                grant_id=grant.pk, statements=grant.statements, remaining=remaining, ended_at=end.ended_at
            )
            kind, target = FenceKind.IAM_ROLE, role.name
            lifetime = timedelta(seconds=idp.role_max_session_seconds(role))
            residual = _role_room(role, documents, statements, end)
    elif grant.delivery == Delivery.IDENTITY_CENTER and grant.request.kind == RequestKind.PERMISSION_SET:
        permission_set = grant.request.permission_set
        if permission_set is not None and not grant.details.get("already_held"):
            held = _still_holding(principal, account.account_id, permission_set.arn)
            names = [p.name for p in _people(principal) if p.pk not in held]
            statements = fences.person_fence(
                grant_id=grant.pk, user_names=names, account_id=account.account_id, ended_at=end.ended_at
            )
            kind, target = FenceKind.PERMISSION_SET, permission_set.arn
            lifetime = _duration(ic.session_duration(_instance(principal), permission_set.arn))
            if statements and not settings.GATEHOUSE_END_SHARED_SET_SESSIONS:
                residual = (
                    "Gatehouse does not change permission sets it did not create (GATEHOUSE_END_SHARED_SET_SESSIONS "
                    "is off), and AWS offers no other way to end a session of the set's role before it expires"
                )
            else:
                residual = _permission_set_room(principal, permission_set.arn, statements, end)
    elif grant.delivery == Delivery.IDENTITY_CENTER and grant.details.get("permission_set_arn"):
        arn = str(grant.details["permission_set_arn"])
        still = _remaining_statements(grant)
        approved = [policy.permission_set_document(still)] if still else []
        statements = fences.pairs_fence(
            grant_id=grant.pk, statements=grant.statements, remaining=approved, ended_at=end.ended_at
        )
        kind, target = FenceKind.PORTAL_PERMISSION_SET, arn
        lifetime = _duration(ic.session_duration(_instance(principal), arn))
    if not statements or residual:
        kind, target = FenceKind.NONE, ""
    end.fence_kind, end.fence_target, end.fence = kind, target, statements if kind != FenceKind.NONE else []
    end.fence_account_id = account.account_id if kind != FenceKind.NONE else ""
    end.residual = residual
    # However the deny fares, sessions issued before the end cannot outlive this.
    end.sessions_until = end.ended_at + lifetime if lifetime is not None else None
    AccessEnd.objects.filter(pk=end.pk).update(
        fence_kind=end.fence_kind,
        fence_target=end.fence_target,
        fence=end.fence,
        fence_account_id=end.fence_account_id,
        residual=end.residual,
        sessions_until=end.sessions_until,
    )


def _role_room(role: Target, documents: Sequence[idp.NamedDocument], statements: list, end: AccessEnd) -> str:
    others = sum(
        policy.policy_size(d.document)
        for d in documents
        if d.document is not None
        and " inline policy " in d.name
        and not d.name.endswith(idp.FENCE_POLICY_NAME)
    )
    live = fences.live_fences(kind=FenceKind.IAM_ROLE, account_id=role.account_id, target=role.name)
    document = fences.render([*fences.statements_of(e for e in live if e.pk != end.pk), *statements])
    if document is not None and others + policy.policy_size(document) > ROLE_INLINE_LIMIT:
        return (
            f"the role's inline policies leave no room for the deny ({ROLE_INLINE_LIMIT:,} characters in all), "
            "so a session issued before the end keeps what another grant gives it back until it expires"
        )
    return ""


def _permission_set_room(principal: Principal, arn: str, statements: list, end: AccessEnd) -> str:
    live = fences.live_fences(kind=FenceKind.PERMISSION_SET, account_id=None, target=arn)
    current = ic.inline_policy(_instance(principal), arn)
    wanted = fences.merged(current, [*fences.statements_of(e for e in live if e.pk != end.pk), *statements])
    if wanted is not None and policy.policy_size(wanted) > policy.PERMISSION_SET_INLINE_LIMIT:
        return (
            "the permission set's inline policy has no room for the deny "
            f"({policy.PERMISSION_SET_INLINE_LIMIT:,} characters), and AWS offers no other way to end a session "
            "of its role before it expires"
        )
    return ""


# --- 2. write -----------------------------------------------------------------------------------------


def _live_active(principal_id: int, account_id: int, now: datetime) -> list[Grant] | None:
    """The grants that should be live for a principal in an account, or None while some grant's work is in
    flight (its own reconcile then writes the portal permission set, fences included)."""
    grants = list(
        Grant.objects.filter(
            principal_id=principal_id,
            account_id=account_id,
            status__in=[*LIVE_GRANT_STATUSES, GrantStatus.REVOKING],
        ).select_related("request", "request__permission_set", "account")
    )
    if any(
        g.starts_at <= now
        and (g.status != GrantStatus.ACTIVE or (g.expires_at is not None and g.expires_at <= now))
        for g in grants
    ):
        return None
    return sorted((g for g in grants if g.starts_at <= now), key=lambda g: g.pk)


def _role(end: AccessEnd) -> Target:
    account = end.grant.account
    return Target(
        kind="role",
        name=end.fence_target,
        account_id=end.fence_account_id,
        role_arn=account.provisioning_role_arn or None,
    )


def _fence_sids(document: str | None) -> set[str]:
    return {str(s.get("Sid")) for s in _statements(document) if fences.is_fence(s)}


def _statements(document: str | None) -> list[dict[str, Any]]:
    return [dict(s) for s in evaluate.statements(document)] if document else []


def _accounts_of(sids: set[str]) -> set[str]:
    grant_ids = set()
    for value in sids:
        digits = value.removeprefix(fences.SID_PREFIX).split("N", 1)[0]
        if digits.isdigit():
            grant_ids.add(int(digits))
    return set(
        AccessEnd.objects.filter(grant_id__in=grant_ids)
        .exclude(fence_account_id="")
        .values_list("fence_account_id", flat=True)
    )


def _write_target(end: AccessEnd) -> tuple[list[str], bool]:
    """Make the target of ``end``'s fence hold exactly the fences that should live on it now (this one and the
    others); returns (request ids, whether AWS differed)."""
    grant = end.grant
    if end.fence_kind == FenceKind.IAM_ROLE:
        role = _role(end)
        with provisioning.principal_lock(grant.principal_id, grant.account_id):
            live = fences.live_fences(kind=end.fence_kind, account_id=role.account_id, target=role.name)
            wanted = fences.render(fences.statements_of(live))
            if idp.read_fence(role) == canonical(wanted):
                return [], False
            return idp.write_fence(role, wanted), True
    if end.fence_kind == FenceKind.PERMISSION_SET:
        instance = _instance(grant.principal)
        with provisioning.named_lock(f"fence:{end.fence_target}"):
            live = fences.live_fences(kind=end.fence_kind, account_id=None, target=end.fence_target)
            current = ic.inline_policy(instance, end.fence_target)
            wanted = canonical(fences.merged(current, fences.statements_of(live)))
            if current == wanted:
                return [], False
            # The inline policy is the permission set's in every account; each account whose fences changed
            # gets it provisioned (the others at their next provisioning, to the same effect).
            changed = _fence_sids(current) ^ _fence_sids(wanted)
            ids = ic.put_inline_policy(instance, end.fence_target, wanted)
            for account_id in sorted(_accounts_of(changed) | {end.fence_account_id}):
                ids += ic.provision(
                    instance, end.fence_target, account_id=account_id, what="the permission set"
                )
            return ids, True
    if end.fence_kind == FenceKind.PORTAL_PERMISSION_SET:
        with provisioning.principal_lock(grant.principal_id, grant.account_id):
            grants = _live_active(grant.principal_id, grant.account_id, timezone.now())
            if grants is None:
                enqueue_reconcile(principal_id=grant.principal_id, account_id=grant.account_id)
                return [], False
            result = delivery.converge(grant.principal, grant.account, grants, write=True)
            return [i for i in result.request_ids if i], bool(result.differences)
    return [], False


# --- 3. confirm ---------------------------------------------------------------------------------------


def _verdict(
    documents: Sequence[idp.NamedDocument],
    pairs: Sequence[tuple[str, str, dict[str, list[str]]]],
    contexts: Sequence[dict[str, list[str]]],
) -> tuple[str, str]:
    """(state, outcome in words) of evaluating the documents for each pair in each session context."""
    readable = [(d, d.document) for d in documents if d.document is not None]
    texts = [text for _, text in readable]
    unreadable = [d.name for d in documents if d.document is None]
    for context in contexts:
        for action, resource, extra in pairs:
            request_context = {**extra, **context}
            if not fences.allowed_by(texts, action, resource, request_context):
                denied = not fences.allowed_by([*texts, _ALLOW_ALL], action, resource, request_context)
                if unreadable and not denied:
                    return EndState.CHECKING, (
                        f"{action} on {resource}: not allowed by what Gatehouse could read, but "
                        f"{', '.join(unreadable)} could not be read"
                    )
                continue
            allowing = [
                d for d, text in readable if fences.allowed_by([text], action, resource, request_context)
            ]
            if any(d.owned for d in allowing):
                names = ", ".join(d.name for d in allowing if d.owned)
                return EndState.CHECKING, f"AWS still shows {names} allowing {action} on {resource}"
            names = ", ".join(d.name for d in allowing)
            return EndState.HELD_ELSEWHERE, (
                f"{action} on {resource} is still allowed by {names}, which Gatehouse did not create"
            )
    return EndState.CONFIRMED, (
        f"the policies AWS holds refuse all {len(pairs)} of the grant's actions "
        "to a session issued before the end"
    )


_ALLOW_ALL = '{"Statement":[{"Action":"*","Effect":"Allow","Resource":"*"}],"Version":"2012-10-17"}'


def _confirm(end: AccessEnd) -> tuple[str, str]:
    grant, principal, account = end.grant, end.grant.principal, end.grant.account
    context = fences.session_context(ended_at=end.ended_at, account_id=account.account_id)
    if grant.delivery == Delivery.CROSS_ACCOUNT_ROLE:
        name = delivery.role_name(grant)
        role = Target(
            kind="role",
            name=name,
            account_id=account.account_id,
            role_arn=account.provisioning_role_arn or None,
        )
        documents = idp.identity_documents(role)
        if documents is None:
            return (
                EndState.CONFIRMED,
                f"the role {name} no longer exists, so no session of it is allowed anything",
            )
        return _verdict(documents, fences.revoked_pairs(grant.statements), [context])
    if grant.delivery == Delivery.IAM_POLICY:
        documents = idp.identity_documents(delivery.iam_target(principal, account))
        if documents is None:
            return EndState.CONFIRMED, f"{principal} no longer exists"
        return _verdict(documents, fences.revoked_pairs(grant.statements), [context])
    instance = _instance(principal)
    if grant.request.kind == RequestKind.PERMISSION_SET:
        permission_set = grant.request.permission_set
        if permission_set is None:
            return EndState.CONFIRMED, "the permission set no longer exists"
        where = {
            "account_id": account.account_id,
            "principal_type": ic.PRINCIPAL_TYPES[principal.kind],
            "principal_id": principal.external_id,
        }
        if permission_set.arn in ic.assigned_permission_sets(instance, **where):
            ours = ManagedAssignment.objects.filter(
                principal=principal, account_id=account.account_id, permission_set_arn=permission_set.arn
            ).exists()
            if ours:
                return EndState.CHECKING, f"Identity Center still shows {permission_set.name} assigned"
            return EndState.HELD_ELSEWHERE, (
                f"{permission_set.name} is still assigned to {principal} in {account.account_id} by someone "
                "other than Gatehouse"
            )
        inline = ic.inline_policy(instance, permission_set.arn)
        documents = [
            idp.NamedDocument(f"permission set {permission_set.name} inline policy", inline, False),
            *idp.global_documents(
                ic.managed_policy_arns(instance, permission_set.arn),
                account_id=account.account_id,
                role_arn=account.provisioning_role_arn or None,
            ),
        ]
        own_sids = {s.get("Sid") for s in end.fence}
        if end.fence and not own_sids <= _fence_sids(inline):
            return EndState.CHECKING, f"the deny is not in {permission_set.name} yet"
        pairs = fences.revoked_pairs([s for s in _statements(inline) if not fences.is_fence(s)]) or [
            ("codepipeline:ListPipelines", "*", {})
        ]
        people = [p.name for p in _people(principal)] or ["nobody"]
        contexts = [
            fences.session_context(ended_at=end.ended_at, account_id=account.account_id, session_name=name)
            for name in people
        ]
        if end.residual:
            return EndState.CONFIRMED, (
                f"Identity Center no longer assigns {permission_set.name} to {principal} in {account.account_id}; "
                f"a session issued before may last until it expires: {end.residual}"
            )
        return _verdict(documents, pairs, contexts)
    arn = grant.details.get("permission_set_arn")
    if not arn:
        return EndState.CONFIRMED, "nothing of this grant reached Identity Center"
    inline = ic.inline_policy(instance, str(arn))
    documents = [idp.NamedDocument("the portal-owned permission set's inline policy", inline, True)]
    return _verdict(documents, fences.revoked_pairs(grant.statements), [context])


def _recheck_at(checks: int, now: datetime) -> datetime | None:
    if checks >= MAX_CHECKS:
        return None
    seconds = min(RECHECK_FIRST.total_seconds() * 2 ** max(checks - 1, 0), RECHECK_MAX.total_seconds())
    return now + timedelta(seconds=seconds)


# --- the one operation ----------------------------------------------------------------------------------


def access_end_reconcile(*, access_end_id: int) -> dict[str, Any]:
    """Plan, write and confirm the end of one grant (idempotent: a confirmed end with its deny in place is
    left as it is). An AWS failure is recorded on the end, which is checked again later."""
    end = _load(access_end_id)
    if end.state != EndState.CHECKING:
        return {"access_end": end.pk, "state": end.state, "request_ids": []}
    try:
        return _reconcile(end)
    except Exception as exc:
        if not aws_errors.is_aws_error(exc):
            raise
        reason = aws_errors.describe(exc)
        checks = end.checks + 1
        AccessEnd.objects.filter(pk=end.pk, state=EndState.CHECKING).update(
            outcome=f"AWS could not be checked: {reason}"[:2000],
            checks=checks,
            next_check_at=_recheck_at(checks, timezone.now()),
        )
        logger.warning("the end of grant %s could not be checked: %s", end.grant_id, reason)
        return {"access_end": end.pk, "state": EndState.CHECKING, "request_ids": [], "outcome": reason}


def _reconcile(end: AccessEnd) -> dict[str, Any]:
    outcome: dict[str, Any] = {"access_end": end.pk, "state": end.state, "request_ids": []}
    if end.checks == 0:
        _plan(end)
        if end.fence_kind != FenceKind.NONE or end.residual:
            _audit(
                end,
                "grant.sessions_deny_planned",
                after={
                    "fence": end.fence_kind,
                    "target": end.fence_target,
                    "statements": end.fence,
                    "sessions_until": end.sessions_until,
                    "residual": end.residual,
                },
            )
    now = timezone.now()
    if end.fence_live and end.sessions_until is not None and end.sessions_until > now:
        try:
            ids, written = _write_target(end)
        except ClientError as exc:
            if not is_access_denied(exc) or end.fence_kind != FenceKind.PERMISSION_SET:
                raise
            # Changing a permission set Gatehouse did not create is outside what it may do unless the
            # deployment allows it (deploy/cloudformation/identity-center-role.yaml): say what remains.
            end.residual = (
                "Gatehouse may not add the deny to this permission set, which it did not create "
                f"({aws_errors.describe(exc)})"
            )
            AccessEnd.objects.filter(pk=end.pk).update(
                fence_kind=FenceKind.NONE,
                fence_target="",
                fence=[],
                fence_account_id="",
                residual=end.residual,
            )
            end.fence_kind, end.fence = FenceKind.NONE, []
            ids, written = [], False
        outcome["request_ids"] = ids
        if written or end.fence_written_at is None:
            AccessEnd.objects.filter(pk=end.pk).update(fence_written_at=now, fence_checked_at=now)
            if written:
                _audit(
                    end,
                    "grant.sessions_deny_written",
                    after={"target": end.fence_target},
                    aws_request_ids=ids,
                )
    state, words = _confirm(end)
    checks = end.checks + 1
    now = timezone.now()
    with transaction.atomic():
        updated = AccessEnd.objects.filter(pk=end.pk, state=EndState.CHECKING).update(
            state=state,
            outcome=words[:2000],
            checks=checks,
            confirmed_at=now if state == EndState.CONFIRMED else None,
            next_check_at=_recheck_at(checks, now) if state == EndState.CHECKING else None,
        )
        if updated and state != EndState.CHECKING:
            _audit(
                end,
                "grant.end_confirmed" if state == EndState.CONFIRMED else "grant.end_held_elsewhere",
                after={
                    "ended_at": end.ended_at,
                    "confirmed_at": now if state == EndState.CONFIRMED else None,
                    "outcome": words,
                    "sessions_until": end.sessions_until,
                    "checks": checks,
                },
            )
    outcome["state"] = state
    outcome["outcome"] = words
    return outcome


# --- the sweeper ----------------------------------------------------------------------------------------


def access_ends_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Beat, each minute: run the end checks that are due, remove each deny whose sessions have all expired,
    and put back a deny someone removed (each read back every 15 minutes). Idempotent."""
    now = now or timezone.now()
    counts = {"checked": 0, "denies_removed": 0, "denies_repaired": 0, "errors": 0}
    due = AccessEnd.objects.filter(state=EndState.CHECKING, next_check_at__lte=now).order_by("next_check_at")
    for end_id in list(due.values_list("pk", flat=True)[:SWEEP_BATCH]):
        counts["checked"] += _safely(lambda end_id=end_id: access_end_reconcile(access_end_id=end_id), counts)
    expired = (
        AccessEnd.objects.exclude(fence_kind=FenceKind.NONE)
        .filter(fence_removed_at__isnull=True, sessions_until__lte=now)
        .order_by("sessions_until")
    )
    for end_id in list(expired.values_list("pk", flat=True)[:SWEEP_BATCH]):
        counts["denies_removed"] += _safely(lambda end_id=end_id: _remove(end_id, now), counts)
    stale = (
        AccessEnd.objects.exclude(fence_kind=FenceKind.NONE)
        .filter(fence_removed_at__isnull=True, sessions_until__gt=now)
        .filter(Q(fence_checked_at__isnull=True) | Q(fence_checked_at__lte=now - FENCE_CHECK_EVERY))
    )
    for end_id in list(stale.values_list("pk", flat=True)[:SWEEP_BATCH]):
        counts["denies_repaired"] += _safely(lambda end_id=end_id: _repair(end_id, now), counts)
    return counts


def _safely(work: Any, counts: dict[str, int]) -> int:
    try:
        return 1 if work() else 0
    except Exception as exc:
        counts["errors"] += 1
        logger.warning("session end sweep: %s", aws_errors.describe(exc))
        return 0


def _remove(end_id: int, now: datetime) -> bool:
    """The sessions a deny covered have all expired: write its target without it, then record it removed."""
    end = _load(end_id)
    if not end.fence_live or end.sessions_until is None or end.sessions_until > now:
        return False
    ids, _ = _write_target(end)
    if end.fence_kind == FenceKind.PORTAL_PERMISSION_SET and _fence_present(end):
        return False  # a reconcile in flight writes it without the deny; the next sweep records it
    updated = AccessEnd.objects.filter(pk=end.pk, fence_removed_at__isnull=True).update(fence_removed_at=now)
    if updated:
        _audit(
            end,
            "grant.sessions_deny_removed",
            before={"statements": end.fence},
            after={"target": end.fence_target, "sessions_until": end.sessions_until},
            aws_request_ids=ids,
        )
    return bool(updated)


def _fence_present(end: AccessEnd) -> bool:
    own = {s.get("Sid") for s in end.fence}
    if end.fence_kind == FenceKind.IAM_ROLE:
        return bool(own & _fence_sids(idp.read_fence(_role(end))))
    return bool(own & _fence_sids(ic.inline_policy(_instance(end.grant.principal), end.fence_target)))


def _repair(end_id: int, now: datetime) -> bool:
    """Read a live deny back; put it back when someone removed or changed it (drift), and record that."""
    end = _load(end_id)
    if not end.fence_live:
        return False
    ids, written = _write_target(end)
    AccessEnd.objects.filter(pk=end.pk).update(fence_checked_at=now)
    if written:
        audit.record(
            action="drift.repaired",
            object_type="principal",
            object_id=end.grant.principal_id,
            principal_id=end.grant.principal_id,
            account_id=end.grant.account.account_id,
            before={
                "differences": [f"the deny of sessions issued before grant {end.grant_id} ended was missing"]
            },
            after={"target": end.fence_target},
            aws_request_ids=ids,
        )
    return written


# --- people who leave ------------------------------------------------------------------------------------


def person_grants_end(*, user: Any, reason: str, actor_label: str) -> int:
    """A person was deactivated: every live grant that is theirs ends, sessions included. Theirs: the grants
    they asked for, and the grants to a principal linked to them alone (their IAM user, their Identity Center
    user). Returns how many began to end."""
    principals = [
        p.pk
        for p in Principal.objects.filter(users=user).prefetch_related("users")
        if list(p.users.all()) == [user]
    ]
    grant_ids = list(
        Grant.objects.filter(status__in=LIVE_GRANT_STATUSES)
        .filter(Q(request__requester=user) | Q(principal_id__in=principals))
        .values_list("pk", flat=True)
    )
    return sum(
        provisioning.grant_end_departed(grant_id=pk, reason=reason, actor_label=actor_label)
        for pk in grant_ids
    )
