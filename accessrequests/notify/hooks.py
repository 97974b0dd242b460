"""Hooks the services call when people should hear about something; each enqueues one notify task after commit
(one for all the grants a reconcile applied or failed).

A notification must never cost a request: if the broker is down when the transaction commits, the failure is
logged and the notification is dropped — the request, decision or grant itself is already saved, and the web
pages show it. A new request's announcement is the one sent late instead: beat's ``redrive-announcements`` finds
a pending request nobody was told of (``notify/send.py: unannounced_requests``). The hooks themselves never raise.
"""

from __future__ import annotations

from collections.abc import Sequence

from django.db import transaction

from accessrequests.core import enqueue
from accessrequests.models import AccessRequest, AuditEvent, CatalogSyncRun, Grant
from accessrequests.notify import slack_api

# The Slack app's tasks by the name the services know them by.
SLACK_TASKS = {
    "slack_post_request": "accessrequests.tasks.notify_slack_request_created",
    "slack_update_message": "accessrequests.tasks.notify_slack_update",
    "slack_dm_requester": "accessrequests.tasks.notify_slack_requester",
}


def _enqueue_after_commit(task_name: str, *args: object, reference: str) -> None:
    enqueue.after_commit(
        f"accessrequests.tasks.{task_name}", *args, reference=reference, if_lost="the notification is dropped"
    )


def _slack(task_name: str, request_id: int, reference: str, *extra: object) -> None:
    """The Slack app's tasks, enqueued only where a bot token is configured."""
    if not slack_api.enabled():
        return
    enqueue.after_commit(
        SLACK_TASKS[task_name], request_id, *extra, reference=reference, if_lost="the notification is dropped"
    )


def on_request_created(req: AccessRequest) -> None:
    _enqueue_after_commit("notify_request_created", req.pk, reference=req.reference)
    if req.rule.slack_channel:
        _slack("slack_post_request", req.pk, req.reference)


def on_request_decided(req: AccessRequest) -> None:
    _enqueue_after_commit("notify_request_decided", req.pk, reference=req.reference)
    _slack("slack_update_message", req.pk, req.reference)
    _slack("slack_dm_requester", req.pk, req.reference, "decided")


def on_request_changed(request_id: int) -> None:
    """Anything the request's Slack message shows changed (an approval, a claim, a voided decision, the end)."""
    _slack("slack_update_message", request_id, f"request {request_id}")


def on_grant_applied(grant: Grant) -> None:
    on_grants_applied([grant])


def on_grants_applied(grants: Sequence[Grant]) -> None:
    """Grants one reconcile applied: one task carries them all (each requester still gets their own email)."""
    if not grants:
        return
    reference = grants[0].request.reference + (f" and {len(grants) - 1} more" if len(grants) > 1 else "")
    _enqueue_after_commit("notify_grant_applied", *[g.pk for g in grants], reference=reference)
    for grant in grants:
        _slack("slack_update_message", grant.request_id, grant.request.reference)
        _slack("slack_dm_requester", grant.request_id, grant.request.reference, "applied")


def on_grant_failed(grant: Grant) -> None:
    on_grants_failed([grant])


def on_grants_failed(grants: Sequence[Grant]) -> None:
    if not grants:
        return
    reference = grants[0].request.reference + (f" and {len(grants) - 1} more" if len(grants) > 1 else "")
    _enqueue_after_commit("notify_grant_failed", *[g.pk for g in grants], reference=reference)


def on_accounts_changed(run: CatalogSyncRun) -> None:
    """A catalog sync changed accounts' tags or environments: the admins hear it once for the whole run."""
    _enqueue_after_commit("notify_accounts_changed", run.pk, reference=f"catalog sync {run.pk}")


def _enqueue_for_event(task_name: str, event: AuditEvent) -> None:
    """An event recorded in a transaction gets its id and number as the transaction commits (the audit chain
    appends it then): both are read after the commit."""
    transaction.on_commit(
        lambda: _enqueue_after_commit(task_name, event.pk, reference=f"audit seq {event.seq}")
    )


def on_integrity_failed(event: AuditEvent) -> None:
    _enqueue_for_event("notify_integrity_failed", event)


def on_identity_changed(event: AuditEvent) -> None:
    """The identity provider changed a role or a principal link (``identity.roles_synced`` or
    ``identity.principals_synced``): admins hear of it, since no second admin approved it."""
    _enqueue_for_event("notify_identity_changed", event)


def on_break_glass(req: AccessRequest) -> None:
    """Break-glass is announced at once, to more people than a normal request (see notify_break_glass)."""
    _enqueue_after_commit("notify_break_glass", req.pk, reference=req.reference)


def on_post_review_overdue(review) -> None:
    _enqueue_after_commit("notify_post_review_overdue", review.request_id, reference=review.request.reference)
