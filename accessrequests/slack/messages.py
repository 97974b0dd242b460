"""The Slack app's messages, sent by Celery tasks (queue ``notifications``): a request's channel message with
buttons (posted once, then updated in place), reminders in its thread with backoff, and direct messages to the
requester.

Every task is idempotent. The channel message is a ``SlackMessage`` row claimed with a conditional update before
it is posted (a lease, so a worker killed mid-post does not block it forever); updates render the request as it
is when they run, and render again if it changed meanwhile, so a late or repeated update never shows an old
state; DMs are ``Notification`` rows like emails. Nothing here fails a request: a Slack error is retried with
backoff and then dropped, and never quotes the bot token.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from accessrequests.authz.permissions import pending_window
from accessrequests.models import AccessRequest, NotificationChannel, RequestStatus, SlackMessage
from accessrequests.notify import slack_api
from accessrequests.notify.send import RETRY_OPTIONS, NotificationError, deliver, deliver_all
from accessrequests.slack import text as slack_text

logger = logging.getLogger(__name__)

POST_LEASE = timedelta(minutes=5)
MAX_REMINDER_GAP = timedelta(hours=24)
MAX_RENDERS = 3


def _load(request_id: int) -> AccessRequest:
    return AccessRequest.objects.select_related(
        "requester", "principal", "account", "rule", "permission_set", "slack_message__claimed_by"
    ).get(pk=request_id)


def _state(req: AccessRequest) -> tuple:
    """What the message shows, to notice a change that happened while an update was on its way."""
    grant = getattr(req, "grant", None)
    message = getattr(req, "slack_message", None)
    return (
        req.status,
        tuple(req.decisions.counting().values_list("pk", flat=True)),
        grant.status if grant is not None else "",
        message.claimed_by_id if message is not None else None,
    )


def _send(call) -> None:
    try:
        call()
    except slack_api.SlackError as exc:
        raise NotificationError(str(exc)) from None


def first_reminder_at(now=None):
    return (now or timezone.now()) + timedelta(minutes=settings.GATEHOUSE_SLACK_REMINDER_MINUTES)


@shared_task(name="accessrequests.tasks.notify_slack_request_created", **RETRY_OPTIONS)
def slack_post_request(request_id: int) -> int:
    """Post a pending request to its rule's channel, once."""
    req = _load(request_id)
    channel = req.rule.slack_channel
    if not slack_api.enabled() or not channel or req.status != RequestStatus.PENDING:
        return 0
    message, _ = SlackMessage.objects.get_or_create(request=req, defaults={"channel": channel})
    now = timezone.now()
    claimed = SlackMessage.objects.filter(
        Q(posted_at__isnull=True) | Q(posted_at__lt=now - POST_LEASE), pk=message.pk, ts=""
    ).update(posted_at=now)
    if claimed != 1:
        return 0
    seen = _state(req)
    text, blocks = slack_text.request_message(req)
    try:
        ts = slack_api.post_message(channel=message.channel, text=text, blocks=blocks)
    except slack_api.SlackError as exc:
        SlackMessage.objects.filter(pk=message.pk, ts="").update(posted_at=None)
        raise NotificationError(str(exc)) from None
    SlackMessage.objects.filter(pk=message.pk).update(ts=ts, next_reminder_at=first_reminder_at(now))
    logger.info(
        "%s posted to Slack channel %s", req.reference, message.channel, extra={"request_ref": req.reference}
    )
    if _state(_load(request_id)) != seen:
        # Decided (or claimed) while the post was on its way: its update found no message yet, so do it now.
        slack_update_message(request_id)
    return 1


@shared_task(name="accessrequests.tasks.notify_slack_update", **RETRY_OPTIONS)
def slack_update_message(request_id: int) -> int:
    """Show the request's state in its channel message ("approved by X · 1 of 2", "denied", "applied", ...)."""
    if not slack_api.enabled():
        return 0
    updates = 0
    for _ in range(MAX_RENDERS):
        req = _load(request_id)
        message = getattr(req, "slack_message", None)
        if message is None or not message.ts:
            return updates
        seen = _state(req)
        text, blocks = slack_text.request_message(req)
        try:
            slack_api.update_message(channel=message.channel, ts=message.ts, text=text, blocks=blocks)
        except slack_api.SlackError as exc:
            raise NotificationError(str(exc)) from None
        updates += 1
        if _state(_load(request_id)) == seen:
            break
    return updates


def _dm_requester(req: AccessRequest, event: str) -> int:
    requester = req.requester
    if not slack_api.enabled() or not requester.is_active or not requester.email:
        return 0

    def send() -> None:
        slack_user = slack_api.user_id_by_email(requester.email)
        if slack_user is None:
            logger.info(
                "%s: the requester has no Slack account", req.reference, extra={"request_ref": req.reference}
            )
            return
        slack_api.post_message(channel=slack_user, text=slack_text.requester_dm(req, event))

    return deliver_all(
        [
            lambda: deliver(
                event_key=f"slack.{event}:{req.pk}",
                channel=NotificationChannel.SLACK_DM,
                recipient=requester.email,
                send=lambda: _send(send),
                request=req,
            )
        ]
    )


@shared_task(name="accessrequests.tasks.notify_slack_requester", **RETRY_OPTIONS)
def slack_dm_requester(request_id: int, event: str) -> int:
    """Tell the requester in a direct message that their request was decided, or that the access is live."""
    req = _load(request_id)
    if event == "decided" and req.status not in (RequestStatus.APPROVED, RequestStatus.DENIED):
        return 0
    if event == "applied" and not (getattr(req, "grant", None) and req.grant.status == "active"):
        return 0
    return _dm_requester(req, event)


@shared_task(name="accessrequests.tasks.notify_slack_reminders")
def slack_remind_pending() -> int:
    """Announce requests still waiting for review again in their message's thread (beat, every 5 minutes):
    after GATEHOUSE_SLACK_REMINDER_MINUTES, then twice as long each time, until decided or expired. Each reminder
    is claimed with a conditional update, so two beat runs never send it twice."""
    if not slack_api.enabled():
        return 0
    now = timezone.now()
    due = SlackMessage.objects.filter(
        request__status=RequestStatus.PENDING,
        request__created_at__gt=now - pending_window(),
        next_reminder_at__lte=now,
    ).exclude(ts="")
    sent = 0
    for message in due.select_related("request")[:200]:
        gap = timedelta(minutes=settings.GATEHOUSE_SLACK_REMINDER_MINUTES) * (
            2 ** (message.reminders_sent + 1)
        )
        claimed = SlackMessage.objects.filter(
            pk=message.pk, reminders_sent=message.reminders_sent, next_reminder_at=message.next_reminder_at
        ).update(reminders_sent=F("reminders_sent") + 1, next_reminder_at=now + min(gap, MAX_REMINDER_GAP))
        if claimed != 1:
            continue
        req = _load(message.request_id)
        waited = int((now - req.created_at).total_seconds() // 3600)
        try:
            slack_api.post_message(
                channel=message.channel, text=slack_text.reminder(req, waited), thread_ts=message.ts
            )
        except (
            slack_api.SlackError
        ) as exc:  # the next one comes after the backoff; nothing else depends on it
            logger.warning(
                "%s reminder not sent: %s", req.reference, exc, extra={"request_ref": req.reference}
            )
            continue
        sent += 1
    return sent
