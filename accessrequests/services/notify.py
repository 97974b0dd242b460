"""Hooks the services call when people should hear about something; each enqueues one notify task after commit.

A notification must never cost a request: if the broker is down when the transaction commits, the failure is
logged and the notification is dropped — the request, decision or grant itself is already saved, and the web
pages show it. The hooks themselves never raise.
"""

from __future__ import annotations

import logging

from celery import Task
from django.db import transaction

from accessrequests import notifications, slack_api
from accessrequests.models import AccessRequest, AuditEvent, CatalogSyncRun, Grant

logger = logging.getLogger(__name__)

# Give up on the broker quickly: a notification is not worth holding a reviewer's page for Celery's default
# publish retries (which, against a broker that drops packets, add up to tens of seconds).
_PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def _enqueue_after_commit(task: Task, object_id: int, reference: str, *extra: object) -> None:
    def enqueue() -> None:
        try:
            task.apply_async(args=(object_id, *extra), retry=True, retry_policy=_PUBLISH_RETRY)
        except Exception as exc:  # any broker failure; the commit already happened
            logger.warning(
                "%s for %s not enqueued, the notification is dropped (%s: %s)",
                task.name,
                reference,
                exc.__class__.__name__,
                str(exc)[:200],
                extra={"request_ref": reference},
            )

    transaction.on_commit(enqueue)


def _slack(task_name: str, request_id: int, reference: str, *extra: object) -> None:
    """The Slack app's tasks, enqueued only where a bot token is configured."""
    if not slack_api.enabled():
        return
    from accessrequests import slack_notifications

    _enqueue_after_commit(getattr(slack_notifications, task_name), request_id, reference, *extra)


def on_request_created(req: AccessRequest) -> None:
    _enqueue_after_commit(notifications.notify_request_created, req.pk, req.reference)
    if req.rule.slack_channel:
        _slack("slack_post_request", req.pk, req.reference)


def on_request_decided(req: AccessRequest) -> None:
    _enqueue_after_commit(notifications.notify_request_decided, req.pk, req.reference)
    _slack("slack_update_message", req.pk, req.reference)
    _slack("slack_dm_requester", req.pk, req.reference, "decided")


def on_request_changed(request_id: int) -> None:
    """Anything the request's Slack message shows changed (an approval, a claim, a voided decision, the end)."""
    _slack("slack_update_message", request_id, f"request {request_id}")


def on_grant_applied(grant: Grant) -> None:
    _enqueue_after_commit(notifications.notify_grant_applied, grant.pk, grant.request.reference)
    _slack("slack_update_message", grant.request_id, grant.request.reference)
    _slack("slack_dm_requester", grant.request_id, grant.request.reference, "applied")


def on_grant_failed(grant: Grant) -> None:
    _enqueue_after_commit(notifications.notify_grant_failed, grant.pk, grant.request.reference)


def on_accounts_changed(run: CatalogSyncRun) -> None:
    """A catalog sync changed accounts' tags or environments: the admins hear it once for the whole run."""
    _enqueue_after_commit(notifications.notify_accounts_changed, run.pk, f"catalog sync {run.pk}")


def on_integrity_failed(event: AuditEvent) -> None:
    _enqueue_after_commit(notifications.notify_integrity_failed, event.pk, f"audit seq {event.seq}")


def on_identity_changed(event: AuditEvent) -> None:
    """The identity provider changed a role or a principal link (``identity.roles_synced`` or
    ``identity.principals_synced``): admins hear of it, since no second admin approved it."""
    _enqueue_after_commit(notifications.notify_identity_changed, event.pk, f"audit seq {event.seq}")


def on_break_glass(req: AccessRequest) -> None:
    """Break-glass is announced at once, to more people than a normal request (see notify_break_glass)."""
    _enqueue_after_commit(notifications.notify_break_glass, req.pk, req.reference)


def on_post_review_overdue(review) -> None:
    _enqueue_after_commit(
        notifications.notify_post_review_overdue, review.request_id, review.request.reference
    )
