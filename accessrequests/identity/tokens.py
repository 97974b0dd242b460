"""Personal API tokens: issue (scopes and lifetime checked by the rules) and revoke, each audited."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.models import ApiToken

LIFETIME_DAYS = (7, 30, 90, 365)


def token_issue(
    *, user, name: str, scopes: Iterable[str], days: int, http_request=None
) -> tuple[ApiToken, str]:
    """Make a token; returns it and its only plain copy. Raises NotAllowed, or IntegrityError for a duplicate
    live name."""
    wanted = set(scopes)
    permissions.check(permissions.token_scopes_problem(user, wanted))
    if days not in LIFETIME_DAYS:
        raise permissions.NotAllowed(f"A token lives {', '.join(map(str, LIFETIME_DAYS))} days at most.")
    with transaction.atomic():
        token, secret = ApiToken.issue(user=user, name=name, scopes=wanted, lifetime=timedelta(days=days))
        audit.record(
            action="token.created", object_type="api_token", object_id=token.pk, actor=user,
            after={"name": token.name, "scopes": token.scopes, "expires_at": token.expires_at},
            http_request=http_request,
        )  # fmt: skip
    return token, secret


def token_revoke(*, user, token_id: int, http_request=None) -> ApiToken | None:
    """Revoke one of the user's own live tokens; None when there is no such token of theirs."""
    with transaction.atomic():
        token = (
            ApiToken.objects.select_for_update()
            .filter(pk=token_id, user=user, revoked_at__isnull=True)
            .first()
        )
        if token is None:
            return None
        ApiToken.objects.filter(pk=token.pk).update(revoked_at=timezone.now())
        audit.record(
            action="token.revoked", object_type="api_token", object_id=token.pk, actor=user,
            before={"name": token.name}, http_request=http_request,
        )  # fmt: skip
    return token
