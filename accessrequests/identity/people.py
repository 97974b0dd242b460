"""People and groups from the identity provider: roles from its groups (OIDC claims and SCIM groups), linked
principals from SCIM groups, and what a deactivation takes away at once.

Roles are Django groups (``accessrequests.core.roles``). What the identity provider says is applied at once, with no
second admin (it owns these facts), and each change of a role or a link is audited and announced to admins. The identity provider only ever gives or takes the roles
that GATEHOUSE_OIDC_GROUP_ROLES names: a role an admin gave by hand that the mapping does not name is left alone,
and nobody becomes an admin from a claim unless the mapping says so in as many words.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db import transaction
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.models import AccessRequest, Decision, RequestStatus
from accessrequests.notify import hooks as notify
from accessrequests.provisioning import sessions as sessions_service

MAX_GROUPS_AUDITED = 100


def managed_roles() -> set[str]:
    """The roles the identity provider decides (the right-hand sides of GATEHOUSE_OIDC_GROUP_ROLES)."""
    return (
        set().union(*settings.GATEHOUSE_OIDC_GROUP_ROLES.values())
        if settings.GATEHOUSE_OIDC_GROUP_ROLES
        else set()
    )


def roles_for_groups(idp_groups: Iterable[str]) -> set[str]:
    mapping = settings.GATEHOUSE_OIDC_GROUP_ROLES
    return {role for group in idp_groups for role in mapping.get(group, ())}


def user_roles_sync(*, user, idp_groups: Iterable[str], source: str, http_request=None) -> tuple[set, set]:
    """Give ``user`` exactly the managed roles their identity provider groups map to; returns (added, removed).
    Audited when anything changed."""
    groups = sorted({str(g) for g in idp_groups if isinstance(g, str | int)})
    managed = managed_roles()
    wanted = roles_for_groups(groups)
    with transaction.atomic():
        current = set(user.groups.filter(name__in=managed).values_list("name", flat=True))
        added, removed = wanted - current, current - wanted
        if added:
            user.groups.add(*[Group.objects.get_or_create(name=name)[0] for name in sorted(added)])
        if removed:
            user.groups.remove(*Group.objects.filter(name__in=removed))
        if added or removed:
            event = audit.record(
                action="identity.roles_synced",
                object_type="user",
                object_id=user.pk,
                actor_label=f"{source} (identity provider)",
                before={"roles": sorted(current)},
                after={
                    "user": user.get_username(),
                    "roles": sorted(wanted),
                    "added": sorted(added),
                    "removed": sorted(removed),
                    "idp_groups": groups[:MAX_GROUPS_AUDITED],
                },
                http_request=http_request,
            )
            # The identity provider owns roles: applied as it says, and every admin hears of it.
            notify.on_identity_changed(event)
    user._gatehouse_groups = None  # roles.in_group's per-request cache
    return added, removed


def _delete_sessions(user) -> int:
    """Every server-side session of ``user`` (the database session store keeps no index by user, so decode)."""
    doomed = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator(chunk_size=500):
        try:
            data = session.get_decoded()
        except Exception:  # noqa: S112 - a session Django cannot decode belongs to nobody
            continue
        if str(data.get("_auth_user_id")) == str(user.pk):
            doomed.append(session.session_key)
    return Session.objects.filter(session_key__in=doomed).delete()[0]


def user_offboard(
    *, user, reason: str, actor=None, actor_label: str | None = None, http_request=None
) -> dict[str, int]:
    """What a deactivation takes away at once, beside the API tokens (revoked by the signal that calls this):
    every session, and the weight of every decision on a request still pending. Notifications stop by
    themselves: they go only to active users. Audited as one event."""
    now = timezone.now()
    with transaction.atomic():
        sessions = _delete_sessions(user)
        pending = AccessRequest.objects.filter(status=RequestStatus.PENDING)
        voided = list(
            Decision.objects.filter(reviewer=user, request__in=pending, voided_at__isnull=True).values_list(
                "pk", "request_id", "outcome"
            )
        )
        Decision.objects.filter(pk__in=[pk for pk, _, _ in voided]).update(
            voided_at=now, void_reason=reason[:200]
        )
        for _, request_id, outcome in voided:
            req = AccessRequest.objects.select_related("account").get(pk=request_id)
            audit.record(
                action="request.decision_voided",
                object_type="access_request",
                object_id=req.pk,
                actor=actor,
                actor_label=actor_label,
                request_id=req.pk,
                principal_id=req.principal_id,
                account_id=req.account.account_id,
                before={"reviewer": user.get_username(), "outcome": outcome},
                after={"reviewer": user.get_username(), "outcome": outcome, "void": reason[:200]},
                http_request=http_request,
            )
        # Their AWS access goes too: every live grant that is theirs ends, with the sessions issued before.
        grants_ended = sessions_service.person_grants_end(
            user=user, reason=f"{user.get_username()} was deactivated ({reason[:200]})",
            actor_label=actor_label or (actor.get_username() if actor is not None else "system"),
        )  # fmt: skip
        facts = {"sessions_deleted": sessions, "decisions_voided": len(voided), "grants_ended": grants_ended}
        audit.record(
            action="identity.user_offboarded",
            object_type="user",
            object_id=user.pk,
            actor=actor,
            actor_label=actor_label,
            after={"user": user.get_username(), "reason": reason[:200], **facts},
            http_request=http_request,
        )
    if voided:
        for request_id in {request_id for _, request_id, _ in voided}:
            notify.on_request_changed(request_id)
    return facts
