"""Writes the Slack app makes: a reviewer claims a request ("claimed by X" on its message)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.models import AccessRequest, SlackMessage
from accessrequests.notify import hooks as notify


class ClaimError(Exception):
    """The request is claimed by someone else already."""


def request_claim(*, request_id: int, user, http_request=None) -> SlackMessage:
    """Mark the request as being looked at by ``user``; the first claim wins, a second one by them is a no-op."""
    with transaction.atomic():
        # Only the request's row (see workflow.requests._locked: joined rows locked too deadlock under load).
        req = (
            AccessRequest.objects.select_for_update(of=("self",))
            .select_related("account", "rule")
            .get(pk=request_id)
        )
        permissions.check(permissions.claim_problem(user, req))
        message, _ = SlackMessage.objects.select_for_update().get_or_create(
            request=req, defaults={"channel": req.rule.slack_channel}
        )
        if message.claimed_by_id == user.pk:
            return message
        if message.claimed_by_id is not None:
            raise ClaimError(f"{req.reference} is claimed by {message.claimed_by.get_username()} already.")  # type: ignore[union-attr]
        if (
            SlackMessage.objects.filter(pk=message.pk, claimed_by__isnull=True).update(
                claimed_by=user, claimed_at=timezone.now()
            )
            != 1
        ):
            raise ClaimError(f"{req.reference} was claimed by someone else a moment ago.")
        audit.record(
            action="request.claimed",
            object_type="access_request",
            object_id=req.pk,
            actor=user,
            request_id=req.pk,
            principal_id=req.principal_id,
            account_id=req.account.account_id,
            after={"claimed_by": user.get_username(), "via": "slack"},
            http_request=http_request,
        )
        notify.on_request_changed(req.pk)
    message.refresh_from_db()
    return message
