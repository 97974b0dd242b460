"""Notifications: email to approvers and requesters, and a Slack post per approval rule, sent by Celery tasks.

Every task is idempotent. Each message is a ``Notification`` row, unique per (event, channel, recipient): the
task claims the row with a conditional update, sends, and marks it sent, so a redelivered or retried task skips
what already went out. A failed send leaves the row retryable; the task retries with backoff a bounded number of
times and then gives up. Nothing here can fail a request: the services only enqueue after commit
(``notify/hooks.py``), and a notification that cannot be sent is logged and dropped.

A task's emails go out together (``send_emails``): their rows are created in one insert, claimed in one update,
sent over one mail connection (one message per recipient, so a refused address fails only its own row) and
marked in one update, so an announcement to 40 approvers costs a few queries, not a few per approver.

The Slack webhook URL is a secret (anyone holding it can post to the channel): it is never stored, logged or
put into an error message.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import operator
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypedDict

from celery import shared_task
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.db import OperationalError, transaction
from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet
from django.utils import timezone

from accessrequests.authz import permissions
from accessrequests.core import enqueue
from accessrequests.models import (
    AccessRequest,
    Decision,
    Grant,
    GrantStatus,
    Notification,
    NotificationChannel,
    NotificationStatus,
    RequestStatus,
)
from accessrequests.notify import text

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

MAX_RETRIES = 5
MAX_ATTEMPTS = MAX_RETRIES + 1
# A row left "sending" longer than this belongs to a run that died mid-send, so another run may take it over. It
# is under the broker's 5-minute visibility timeout, so the message of a killed worker, back after that timeout,
# finds what the dead run held free to take; and it is longer than any live run holds a row: rows are claimed
# EMAIL_BATCH at a time and each message is marked sent as soon as it is, and a message takes at most
# EMAIL_TIMEOUT (settings) to connect and as much to send, so a claimed batch is done well within the lease.
CLAIM_LEASE = timedelta(minutes=4)
# Emails are claimed this many at a time; each is marked sent right after it is, so a worker killed mid-batch
# leaves one row, the message in flight, "sending" (it may have gone out: a later run sends it again).
EMAIL_BATCH = 10
WEBHOOK_TIMEOUT_SECONDS = 5
EXPIRY_WARNING = timedelta(hours=24)
EXPIRING_PREFIX = "grant.expiring:"


class NotificationError(Exception):
    """A message could not be sent; the text is safe to log and store (never a webhook URL)."""


# Backoff of 30 s doubling to at most 4 minutes (about 11 minutes over five retries): long enough to ride out
# a mail relay restart, and every countdown stays under Redis's 5-minute visibility timeout, which would
# otherwise hand a waiting retry to a second worker.
class _RetryOptions(TypedDict):
    autoretry_for: tuple[type[BaseException], ...]
    retry_backoff: int
    retry_backoff_max: int
    retry_jitter: bool
    max_retries: int


RETRY_OPTIONS = _RetryOptions(
    autoretry_for=(NotificationError, OperationalError),
    retry_backoff=30,
    retry_backoff_max=240,
    retry_jitter=True,
    max_retries=MAX_RETRIES,
)


# --- delivery -------------------------------------------------------------------------------------------


def _unsent(now: datetime) -> Q:
    """Rows not sent and nobody sending: never claimed, failed, or left "sending" by a worker that died (its
    lease is over)."""
    return Q(status__in=[NotificationStatus.PENDING, NotificationStatus.FAILED]) | Q(
        status=NotificationStatus.SENDING, claimed_at__lt=now - CLAIM_LEASE
    )


def _claimable(now: datetime) -> Q:
    """Rows a run may take: unsent and not yet tried MAX_ATTEMPTS times."""
    return _unsent(now) & Q(attempts__lt=MAX_ATTEMPTS)


def deliver(
    *,
    event_key: str,
    channel: str,
    recipient: str,
    send: Callable[[], None],
    request: AccessRequest | None = None,
    grant: Grant | None = None,
) -> bool:
    """Send one message unless it was sent (or is being sent) already; True when this call sent it."""
    note, _ = Notification.objects.get_or_create(
        event_key=event_key,
        channel=channel,
        recipient=recipient,
        defaults={"request": request, "grant": grant},
    )
    now = timezone.now()
    claimed = (
        Notification.objects.filter(_claimable(now), pk=note.pk)
        .update(status=NotificationStatus.SENDING, claimed_at=now, attempts=F("attempts") + 1)
    )  # fmt: skip
    if claimed != 1:
        return False
    about = request or (grant.request if grant else None)
    log_extra = {"request_ref": about.reference if about else "-"}
    try:
        send()
    except NotificationError as exc:
        Notification.objects.filter(pk=note.pk, status=NotificationStatus.SENDING).update(
            status=NotificationStatus.FAILED, last_error=str(exc)[:500]
        )
        logger.warning("%s %s to %s not sent: %s", event_key, channel, recipient, exc, extra=log_extra)
        raise
    Notification.objects.filter(pk=note.pk).update(
        status=NotificationStatus.SENT, sent_at=timezone.now(), last_error=""
    )
    logger.info("%s %s sent to %s", event_key, channel, recipient, extra=log_extra)
    return True


@dataclass(frozen=True)
class Email:
    """One email to one address about one event; its Notification row (event_key, "email", to) sends it once."""

    event_key: str
    to: str
    subject: str
    body: str
    request: AccessRequest | None = None
    grant: Grant | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.event_key, self.to)

    def log_extra(self) -> dict[str, str]:
        about = self.request or (self.grant.request if self.grant else None)
        return {"request_ref": about.reference if about else "-"}


def send_emails(emails: Sequence[Email]) -> int:
    """Send each email unless it was sent (or is being sent) already; the number this call sent. Raises
    NotificationError, after recording every outcome, when any could not be sent (the task's retry then sends
    only those)."""
    sent, failures = _send_emails(emails)
    if failures:
        raise NotificationError("; ".join(failures))
    return sent


def _send_emails(emails: Sequence[Email]) -> tuple[int, list[str]]:
    """``send_emails`` without the raise: how many were sent, and a summary of each kind of failure."""
    unique: dict[tuple[str, str], Email] = {}
    for email in emails:
        unique.setdefault(email.key, email)  # two users sharing an address get one email
    batch = list(unique.values())
    sent, failures = 0, []
    for start in range(0, len(batch), EMAIL_BATCH):
        done, failed = _send_email_batch(batch[start : start + EMAIL_BATCH])
        sent += done
        failures += [f"{error} ({len(group)} of {len(batch)} not sent)" for error, group in failed.items()]
    return sent, failures


def _send_email_batch(emails: list[Email]) -> tuple[int, dict[str, list[Email]]]:
    # The rows: one insert; a row another run (or an earlier one) made is kept as it is.
    Notification.objects.bulk_create(
        [
            Notification(
                event_key=email.event_key,
                channel=NotificationChannel.EMAIL,
                recipient=email.to,
                request=email.request,
                grant=email.grant,
            )
            for email in emails
        ],
        ignore_conflicts=True,
    )
    claimed = _claim_emails(emails)
    mine = [email for email in emails if email.key in claimed]
    if not mine:
        return 0, {}

    def mark_sent(email: Email) -> None:
        Notification.objects.filter(pk=claimed[email.key]).update(
            status=NotificationStatus.SENT, sent_at=timezone.now(), last_error=""
        )

    sent, failed = _send_over_one_connection(mine, mark_sent)
    for error, group in failed.items():
        Notification.objects.filter(
            pk__in=[claimed[email.key] for email in group], status=NotificationStatus.SENDING
        ).update(status=NotificationStatus.FAILED, last_error=error)
        for email in group:
            logger.warning(
                "%s email to %s not sent: %s", email.event_key, email.to, error, extra=email.log_extra()
            )
    for event_key, group in _by_event(sent).items():
        logger.info("%s email sent to %d recipients", event_key, len(group), extra=group[0].log_extra())
    return len(sent), failed


def _claim_emails(emails: list[Email]) -> dict[tuple[str, str], int]:
    """Claim every claimable row of these emails in one update; the rows this run took, by (event_key, to).

    The rows are chosen and locked in one statement (``SKIP LOCKED``: a row another run is claiming right now is
    theirs) and updated by id in the same transaction, so two runs never both take a row. SQLite has no row locks;
    its transaction takes the database's write lock at its start (``transaction_mode`` IMMEDIATE in the
    settings), which serialises the two statements against any other writer just the same.
    """
    keys = functools.reduce(
        operator.or_,
        (Q(event_key=key, recipient__in=[e.to for e in group]) for key, group in _by_event(emails).items()),
    )
    now = timezone.now()
    with transaction.atomic():
        rows = list(
            Notification.objects.filter(keys, _claimable(now), channel=NotificationChannel.EMAIL)
            .select_for_update(skip_locked=True)
            .values_list("pk", "event_key", "recipient")
        )
        if rows:
            Notification.objects.filter(pk__in=[pk for pk, _, _ in rows]).update(
                status=NotificationStatus.SENDING, claimed_at=now, attempts=F("attempts") + 1
            )
    return {(key, to): pk for pk, key, to in rows}


def _send_over_one_connection(
    emails: list[Email], mark_sent: Callable[[Email], None]
) -> tuple[list[Email], dict[str, list[Email]]]:
    """Send each email as its own message over one connection of the mail backend, marking each sent as soon as
    it is; the sent ones, and the failed ones by error. After a failed message the next one starts on a fresh
    connection; a connection that cannot be opened fails every message still waiting."""
    sent: list[Email] = []
    failed: dict[str, list[Email]] = {}
    connection: Any = None
    for position, email in enumerate(emails):
        if connection is None:
            connection = get_connection(fail_silently=False)
            try:
                connection.open()
            except Exception as exc:  # SMTP, DNS, TLS: all retryable, none may escape as a request failure
                failed.setdefault(_email_error(exc), []).extend(emails[position:])
                return sent, failed
        message = EmailMessage(
            email.subject, email.body, settings.DEFAULT_FROM_EMAIL, [email.to], connection=connection
        )
        try:
            message.send()
        except Exception as exc:  # as above; this message only
            failed.setdefault(_email_error(exc), []).append(email)
            _close(connection)
            connection = None
            continue
        mark_sent(email)
        sent.append(email)
    _close(connection)
    return sent, failed


def _email_error(exc: Exception) -> str:
    return f"email: {exc.__class__.__name__}: {exc}"[:500]


def _close(connection: Any) -> None:
    if connection is not None:
        with contextlib.suppress(Exception):  # what was sent was accepted; a failing QUIT changes nothing
            connection.close()


def _by_event(emails: list[Email]) -> dict[str, list[Email]]:
    groups: dict[str, list[Email]] = {}
    for email in emails:
        groups.setdefault(email.event_key, []).append(email)
    return groups


def post_to_slack(url: str, message: str) -> None:
    """POST ``{"text": message}`` to a Slack incoming webhook; raises NotificationError without the URL."""
    if not url.lower().startswith(("https://", "http://")):
        raise NotificationError("slack: the webhook URL is not an http(s) URL")
    body = json.dumps({"text": message}).encode()
    req = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(req, timeout=WEBHOOK_TIMEOUT_SECONDS) as response:  # noqa: S310
            response.read(1024)
    except urllib.error.HTTPError as exc:
        raise NotificationError(f"slack: the webhook answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        # Only the class of the failure: some reasons quote the URL, and the URL is the secret.
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise NotificationError(f"slack: the webhook is unreachable ({reason.__class__.__name__})") from None


# A delivery: an email (sent with the task's others) or a callable that sends one message and says if it did.
Job = Email | Callable[[], bool]


def deliver_all(jobs: Sequence[Job]) -> int:
    """Run every delivery even when one fails, then fail (so the task retries) if any did; returns sent. Emails
    go out together (``send_emails``), other jobs (Slack) one by one."""
    sent, failures = 0, []
    emails = [job for job in jobs if isinstance(job, Email)]
    if emails:
        done, failed = _send_emails(emails)
        sent += done
        failures += failed
    for job in jobs:
        if isinstance(job, Email):
            continue
        try:
            sent += job()
        except NotificationError as exc:
            failures.append(str(exc))
    if failures:
        raise NotificationError("; ".join(failures))
    return sent


def _email_job(
    event_key: str,
    user: User,
    subject: str,
    body: str,
    *,
    request: AccessRequest | None = None,
    grant: Grant | None = None,
) -> Email:
    return Email(event_key, user.email, subject, body, request=request, grant=grant)


def _slack_job(event_key: str, req: AccessRequest, message: str) -> list[Callable[[], bool]]:
    url = req.rule.slack_webhook_url
    if not url:
        return []
    return [
        lambda: deliver(
            event_key=event_key,
            channel=NotificationChannel.SLACK,
            recipient=f"rule:{req.rule_id}",
            send=lambda: post_to_slack(url, message),
            request=req,
        )
    ]


# --- who ------------------------------------------------------------------------------------------------


def approvers_to_notify(req: AccessRequest) -> list[User]:
    """Everyone who may decide this request now, by the same rule the review page applies."""
    rule = req.rule
    candidates = (
        get_user_model()
        .objects.filter(Q(groups__in=rule.approver_groups.all()) | Q(approval_rules=rule), is_active=True)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )
    return permissions.who_may_decide(req, candidates)


def _load_request(request_id: int) -> AccessRequest:
    """The request with everything its texts read (its pipelines and decisions too), in three queries."""
    return (
        AccessRequest.objects.select_related(
            "requester", "principal", "account", "rule", "pass_role", "permission_set"
        )
        .prefetch_related("pipelines", Prefetch("decisions", Decision.objects.select_related("reviewer")))
        .get(pk=request_id)
    )


def _load_grants(grant_ids: Iterable[int]) -> list[Grant]:
    return list(
        Grant.objects.select_related(
            "request", "request__requester", "request__principal", "request__account", "request__rule"
        )
        .filter(pk__in=list(grant_ids))
        .order_by("pk")
    )


def _requester_email(req: AccessRequest) -> bool:
    if not req.requester.is_active:
        return False  # people who left hear nothing more from Gatehouse
    if req.requester.email:
        return True
    logger.info("%s: the requester has no email address", req.reference, extra={"request_ref": req.reference})
    return False


# --- tasks ----------------------------------------------------------------------------------------------


@shared_task(name="accessrequests.tasks.notify_request_created", **RETRY_OPTIONS)
def notify_request_created(request_id: int) -> int:
    """Email every approver who may decide the new request; post to the rule's Slack channel."""
    req = _load_request(request_id)
    key = f"request.created:{req.pk}"
    if req.status != RequestStatus.PENDING:
        # Run again after it was decided (a worker killed half-way, its message back later): nobody needs asking
        # any more; what the first run left unsent is closed, so no row waits for a send that will never come.
        Notification.objects.filter(_unsent(timezone.now()), event_key=key).update(
            status=NotificationStatus.NOT_NEEDED
        )
        return 0
    subject, body = text.new_request(req)
    jobs: list[Job] = [_email_job(key, user, subject, body, request=req) for user in approvers_to_notify(req)]
    jobs += _slack_job(key, req, text.slack_new_request(req))
    return deliver_all(jobs)


@shared_task(name="accessrequests.tasks.notify_request_decided", **RETRY_OPTIONS)
def notify_request_decided(request_id: int) -> int:
    """Tell the requester (and the rule's Slack channel) that the request was approved or denied."""
    req = _load_request(request_id)
    if req.status not in (RequestStatus.APPROVED, RequestStatus.DENIED):
        return 0
    key = f"request.decided:{req.pk}"
    jobs: list[Job] = []
    if _requester_email(req):
        subject, body = text.decided(req)
        jobs.append(_email_job(key, req.requester, subject, body, request=req))
    jobs += _slack_job(key, req, text.slack_decided(req))
    return deliver_all(jobs)


@shared_task(name="accessrequests.tasks.notify_grant_applied", **RETRY_OPTIONS)
def notify_grant_applied(*grant_ids: int) -> int:
    """Tell each requester their access is live (skipped for a grant that has ended meanwhile). One task carries
    every grant one reconcile applied; a retry sends only what did not go out (one Notification row each)."""
    jobs: list[Job] = []
    for grant in _load_grants(grant_ids):
        if grant.status != GrantStatus.ACTIVE or not _requester_email(grant.request):
            continue
        subject, body = text.applied(grant)
        jobs.append(
            _email_job(f"grant.applied:{grant.pk}", grant.request.requester, subject, body, grant=grant)
        )
    return deliver_all(jobs)


@shared_task(name="accessrequests.tasks.notify_grant_failed", **RETRY_OPTIONS)
def notify_grant_failed(*grant_ids: int) -> int:
    """Tell each requester their access could not be applied, and why (once per grant, not per retry)."""
    jobs: list[Job] = []
    for grant in _load_grants(grant_ids):
        # A retry may have succeeded while this message waited; an outdated failure would only confuse.
        if grant.status != GrantStatus.FAILED or not _requester_email(grant.request):
            continue
        subject, body = text.failed(grant)
        jobs.append(
            _email_job(f"grant.failed:{grant.pk}", grant.request.requester, subject, body, grant=grant)
        )
    return deliver_all(jobs)


def grants_to_warn_of_expiry(now: datetime | None = None) -> QuerySet[Grant]:
    """Active grants ending within 24 hours whose requester was not warned yet (nor given up on).

    A grant that lived 24 hours or less from being applied gets no warning: its "applied" email already said
    when it ends, and an "expires soon" mail minutes later would be noise.
    """
    now = now or timezone.now()
    done = Notification.objects.filter(grant=OuterRef("pk"), event_key__startswith=EXPIRING_PREFIX).filter(
        Q(status=NotificationStatus.SENT) | Q(attempts__gte=MAX_ATTEMPTS)
    )
    return (
        Grant.objects.filter(
            status=GrantStatus.ACTIVE,
            expires_at__gt=now,
            expires_at__lte=now + EXPIRY_WARNING,
            applied_at__lt=F("expires_at") - EXPIRY_WARNING,
        )
        .filter(~Exists(done))
        .select_related(
            "request", "request__requester", "request__principal", "request__account", "request__rule"
        )
        .order_by("expires_at", "pk")
    )


@shared_task(name="accessrequests.tasks.notify_expiring_grants")
def notify_expiring_grants() -> int:
    """Warn requesters a day before their access ends (beat, every 15 minutes; idempotent).

    No autoretry: the next beat run is the retry, and each message stops after MAX_ATTEMPTS failed sends.
    """
    emails = []
    for grant in grants_to_warn_of_expiry()[:500]:
        if not _requester_email(grant.request):
            continue
        subject, body = text.expiring(grant)
        emails.append(
            _email_job(f"{EXPIRING_PREFIX}{grant.pk}", grant.request.requester, subject, body, grant=grant)
        )
    sent, _ = _send_emails(emails)  # what failed is logged, and tried again on the next run
    return sent


# An announcement is looked for this long after its request is filed before it counts as lost, and re-driven for an
# hour: a request filed while the broker was down had its message dropped (notify/hooks.py), and its approvers
# would otherwise hear of it only from their review queue.
ANNOUNCE_GRACE = timedelta(minutes=2)
ANNOUNCE_REDRIVE_WINDOW = timedelta(hours=1)


def unannounced_requests(now: datetime | None = None) -> QuerySet[AccessRequest]:
    """Pending requests filed between an hour and two minutes ago whose announcement never ran: no row of its
    ``request.created`` event exists (a run that found approvers made one per approver before sending)."""
    now = now or timezone.now()
    announced = Notification.objects.filter(request=OuterRef("pk"), event_key__startswith="request.created:")
    return (
        AccessRequest.objects.filter(
            status=RequestStatus.PENDING,
            created_at__lte=now - ANNOUNCE_GRACE,
            created_at__gt=now - ANNOUNCE_REDRIVE_WINDOW,
        )
        .exclude(Exists(announced))
        .order_by("pk")
    )


@shared_task(name="accessrequests.tasks.redrive_announcements")
def redrive_announcements() -> int:
    """Announce again what was never announced (beat, each minute; idempotent: the announcement's rows are unique,
    so a run that overlaps the late original sends each email once). A request nobody may decide has no rows and is
    asked about each minute for its first hour, at one cheap query each time."""
    ids = list(unannounced_requests().values_list("pk", flat=True)[:200])
    for request_id in ids:
        notify_request_created.apply_async(args=(request_id,), retry=True, retry_policy=enqueue.PUBLISH_RETRY)
    if ids:
        logger.info("announcements re-driven for %d requests never announced", len(ids))
    return len(ids)


def _members_and_superusers(*groups: str) -> QuerySet[User]:
    """Active members of these groups, and superusers, with an email address."""
    return (
        get_user_model()
        .objects.filter(Q(groups__name__in=groups) | Q(is_superuser=True), is_active=True)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )


def integrity_recipients() -> QuerySet[User]:
    """Admins and auditors (and superusers) with an email address: the people who must hear of a broken trail."""
    from accessrequests.core import roles

    return _members_and_superusers(roles.ADMINS, roles.AUDITORS)


@shared_task(name="accessrequests.tasks.notify_integrity_failed", **RETRY_OPTIONS)
def notify_integrity_failed(event_id: int) -> int:
    """Email admins and auditors that the audit trail failed its verification (once per failure event)."""
    from accessrequests.models import AuditEvent

    event = AuditEvent.objects.get(pk=event_id)
    subject, body = text.integrity_failed(event.after or {})
    key = f"audit.integrity_failed:{event.pk}"
    return deliver_all([_email_job(key, user, subject, body) for user in integrity_recipients()])


def admin_recipients() -> QuerySet[User]:
    """Active admins (and superusers) with an email address."""
    from accessrequests.core import roles

    return _members_and_superusers(roles.ADMINS)


@shared_task(name="accessrequests.tasks.notify_identity_changed", **RETRY_OPTIONS)
def notify_identity_changed(event_id: int) -> int:
    """Email admins that the identity provider changed someone's roles or principal links (once per event)."""
    from accessrequests.models import AuditEvent

    event = AuditEvent.objects.get(pk=event_id)
    subject, body = text.identity_changed(event)
    key = f"identity.changed:{event.pk}"
    return deliver_all([_email_job(key, user, subject, body) for user in admin_recipients()])


@shared_task(name="accessrequests.tasks.notify_accounts_changed", **RETRY_OPTIONS)
def notify_accounts_changed(run_id: int) -> int:
    """Tell the admins, once per catalog sync, which accounts' tags and environments Organizations changed."""
    from accessrequests.models import CatalogSyncRun

    run = CatalogSyncRun.objects.get(pk=run_id)
    if not (run.result or {}).get("organization_changes"):
        return 0
    subject, body = text.accounts_changed(run)
    key = f"catalog.accounts_changed:{run.pk}"
    return deliver_all([_email_job(key, user, subject, body) for user in admin_recipients()])


# --- governance -----------------------------------------------------------------------------------------


def rule_approvers(rule) -> QuerySet[User]:
    return (
        get_user_model()
        .objects.filter(Q(groups__in=rule.approver_groups.all()) | Q(approval_rules=rule), is_active=True)
        .exclude(email="")
        .distinct()
        .order_by("pk")
    )


@shared_task(name="accessrequests.tasks.notify_break_glass", **RETRY_OPTIONS)
def notify_break_glass(request_id: int) -> int:
    """Announce a break-glass use at once: every approver of its rule, admins and auditors by email, and the
    rule's Slack channel."""
    req = _load_request(request_id)
    if not req.break_glass:
        return 0
    key = f"request.break_glass:{req.pk}"
    subject, body = text.break_glass(req)
    people = {user.pk: user for user in [*rule_approvers(req.rule), *integrity_recipients()]}
    people.pop(req.requester_id, None)
    jobs: list[Job] = [_email_job(key, user, subject, body, request=req) for user in people.values()]
    jobs += _slack_job(key, req, text.slack_break_glass(req))
    jobs += _slack_channel_job(key, req, text.slack_break_glass(req))
    return deliver_all(jobs)


def _slack_channel_job(event_key: str, req: AccessRequest, message: str) -> list[Callable[[], bool]]:
    """The rule's channel through the Slack app (bot token), beside its incoming webhook."""
    from accessrequests.notify import slack_api

    channel = req.rule.slack_channel
    if not (channel and slack_api.enabled()):
        return []

    def send() -> None:
        try:
            slack_api.post_message(channel=channel, text=message)
        except slack_api.SlackError as exc:
            raise NotificationError(str(exc)) from None

    return [
        lambda: deliver(
            event_key=event_key,
            channel=NotificationChannel.SLACK,
            recipient=f"channel:{channel}",
            send=send,
            request=req,
        )
    ]


@shared_task(name="accessrequests.tasks.notify_post_review_overdue", **RETRY_OPTIONS)
def notify_post_review_overdue(request_id: int) -> int:
    """Tell the rule's approvers and admins that a break-glass use was not reviewed in time."""
    req = _load_request(request_id)
    review = getattr(req, "break_glass_review", None)
    if review is None or review.reviewed_at is not None:
        return 0
    subject, body = text.post_review_overdue(req, review.due_at)
    people = {user.pk: user for user in [*rule_approvers(req.rule), *integrity_recipients()]}
    people.pop(req.requester_id, None)
    key = f"request.break_glass_overdue:{req.pk}"
    jobs: list[Job] = [_email_job(key, user, subject, body, request=req) for user in people.values()]
    jobs += _slack_job(key, req, subject)
    return deliver_all(jobs)


def _reviewers_with_open_items(campaign_id: int) -> list[tuple[User, int]]:
    from accessrequests.models import ReviewItem

    items = list(
        ReviewItem.objects.filter(campaign_id=campaign_id, decision="").select_related(
            "campaign", "rule", "grant__request", "grant__principal", "grant__account"
        )
    )
    by_rule: dict[int, list] = {}
    for item in items:
        by_rule.setdefault(item.rule_id, []).append(item)
    counts: dict[int, tuple[User, int]] = {}
    for rule_items in by_rule.values():
        for user in rule_approvers(rule_items[0].rule):
            mine = sum(1 for item in rule_items if permissions.review_item_problem(user, item) is None)
            if mine:
                counts[user.pk] = (user, counts.get(user.pk, (user, 0))[1] + mine)
    return list(counts.values())


@shared_task(name="accessrequests.tasks.notify_review_started", **RETRY_OPTIONS)
def notify_review_started(campaign_id: int) -> int:
    """Tell each reviewer how many items of a new access review are theirs."""
    from accessrequests.models import ReviewCampaign

    campaign = ReviewCampaign.objects.get(pk=campaign_id)
    key = f"review.started:{campaign.pk}"
    jobs: list[Job] = []
    for user, count in _reviewers_with_open_items(campaign_id):
        subject, body = text.review_started(campaign, count)
        jobs.append(_email_job(key, user, subject, body))
    return deliver_all(jobs)


@shared_task(name="accessrequests.tasks.notify_review_reminder", **RETRY_OPTIONS)
def notify_review_reminder(campaign_id: int, round_number: int) -> int:
    """One reminder round (once per reviewer per round): the items still waiting for each of them."""
    from accessrequests.models import CampaignStatus, ReviewCampaign

    campaign = ReviewCampaign.objects.get(pk=campaign_id)
    if campaign.status != CampaignStatus.OPEN:
        return 0
    key = f"review.reminder:{campaign.pk}:{round_number}"
    overdue = campaign.deadline <= timezone.now()
    jobs: list[Job] = []
    for user, count in _reviewers_with_open_items(campaign_id):
        subject, body = text.review_reminder(campaign, count, overdue)
        jobs.append(_email_job(key, user, subject, body))
    return deliver_all(jobs)
