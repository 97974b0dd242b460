"""Notifications: who is emailed about what, that a task run twice sends once, and that Slack posts reach a real
HTTP server — while nothing a mail relay, a webhook or the broker does can fail a request."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accessrequests.authz import permissions
from accessrequests.models import (
    AccessRequest,
    Grant,
    GrantStatus,
    Notification,
    NotificationStatus,
    RequestStatus,
)
from accessrequests.notify.send import (
    EMAIL_BATCH,
    MAX_ATTEMPTS,
    approvers_to_notify,
    notify_expiring_grants,
    notify_grant_applied,
    notify_grant_failed,
    notify_request_created,
    notify_request_decided,
)
from accessrequests.workflow.requests import request_approve, request_deny
from portal.celery import app
from tests.conftest import make_user
from tests.factories import World, force_update, fresh_factor, make_account, make_rule
from tests.smtp_support import SmtpServer

pytestmark = pytest.mark.django_db

SITE = "https://gatehouse.example.com"
WEBHOOK_SECRET = "T0000/B0000/XXXXsecretXXXX"
DEAD_BROKER = "redis://127.0.0.1:9/0"  # nothing listens on the discard port


class WebhookReceiver:
    """A real HTTP server on 127.0.0.1 that records what Slack would have received."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.posts.append(
                    {
                        "path": self.path,
                        "content_type": self.headers["Content-Type"],
                        "json": json.loads(body),
                    }
                )
                self.send_response(receiver.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/services/{WEBHOOK_SECRET}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def texts(self) -> list[str]:
        return [post["json"]["text"] for post in self.posts]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def world(settings):
    settings.SITE_URL = SITE
    world = World()
    approvers = Group.objects.get(name="approvers")
    # An approver who is named on the rule directly rather than through a group.
    world.owner = make_user("pipeline-owner")
    world.rule.approver_users.add(world.owner)
    # An approver by group who is linked to the principal, and a requester who happens to be an approver too.
    world.teammate = make_user("teammate", "approvers")
    world.principal.users.add(world.teammate)
    world.requester.groups.add(approvers)
    # An approver under another rule only.
    make_rule("Production", accounts=[make_account("210987654321", "prod")], group="release-managers")
    return world


@pytest.fixture
def smtp(settings) -> Iterator[SmtpServer]:
    """Mail goes by SMTP to a real server of the test's own on 127.0.0.1 (Django's SMTP backend, no TLS)."""
    server = SmtpServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", server.port, 10
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    yield server
    server.close()


@pytest.fixture
def eager_tasks(settings) -> None:
    """Enqueued tasks run at once, in this process, retries included (Celery's eager mode; the app reads its
    configuration from the Django settings on every lookup)."""
    settings.CELERY_TASK_ALWAYS_EAGER = True


def _drop_cached_broker_connections() -> None:
    # Celery keeps its broker connection and producer pools after the first publish; forgetting them (as
    # Celery itself does after a fork) makes the next publish connect to the broker URL configured now.
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def unreachable_broker(settings, monkeypatch) -> Iterator[None]:
    settings.CELERY_BROKER_URL = DEAD_BROKER
    monkeypatch.setenv("CELERY_BROKER_URL", DEAD_BROKER)  # Celery prefers the environment to the settings
    _drop_cached_broker_connections()
    yield
    _drop_cached_broker_connections()  # the next publish reconnects once the settings fixture restored the URL


def recipients() -> list[str]:
    return sorted(address for message in mail.outbox for address in message.to)


def approve(world, req, comment="Fine for the incident"):
    return request_approve(
        request_id=req.pk,
        reviewer=world.approver,
        second_factor=fresh_factor(world.approver),
        comment=comment,
    )


def activate(req, *, applied_ago=timedelta(minutes=1), expires_in=timedelta(hours=4)) -> Grant:
    """Stand in for the provisioning worker: mark the request's grant live in AWS."""
    now = timezone.now()
    force_update(
        Grant.objects.filter(request=req),
        status=GrantStatus.ACTIVE,
        applied_at=now - applied_ago,
        expires_at=now + expires_in,
    )
    return Grant.objects.get(request=req)


# --- a new request ---------------------------------------------------------------------------------------


def test_every_approver_who_may_decide_gets_the_new_request_email_with_the_review_link(world):
    req = world.submit()

    notify_request_created.apply(args=[req.pk])

    assert recipients() == [
        "approver2@example.com",
        "approver@example.com",
        "pipeline-owner@example.com",
    ]
    message = mail.outbox[0]
    assert req.reference in message.subject
    assert f"{SITE}/review/{req.pk}/" in message.body
    assert "mateojackson" in message.body
    assert "Debugging a failed deploy" in message.body


def test_the_requester_linked_users_and_approvers_of_other_rules_get_no_new_request_email(world):
    req = world.submit()

    notify_request_created.apply(args=[req.pk])

    sent_to = recipients()
    for user in (world.requester, world.teammate, world.outsider_approver, world.other_requester):
        assert user.email not in sent_to


def test_running_the_new_request_task_twice_emails_each_approver_once(world):
    req = world.submit()

    notify_request_created.apply(args=[req.pk])
    notify_request_created.apply(args=[req.pk])

    assert len(mail.outbox) == 3
    assert set(Notification.objects.values_list("status", flat=True)) == {NotificationStatus.SENT}


def test_an_announcement_interrupted_and_run_again_after_the_decision_closes_what_it_left_unsent(world):
    """A worker killed half-way through the approvers: its message comes back after the request was decided. Nobody
    is asked any more, and no row is left waiting for a send that will never come; what was sent stays sent."""
    req = world.submit()
    notify_request_created.apply(args=[req.pk])
    sent = list(Notification.objects.filter(event_key=f"request.created:{req.pk}"))
    assert len(sent) == 3
    # As the killed worker left them: one claimed and never finished (its lease over), one never claimed.
    long_ago = timezone.now() - timedelta(hours=1)
    force_update(
        Notification.objects.filter(pk=sent[0].pk), status=NotificationStatus.SENDING, claimed_at=long_ago
    )
    force_update(Notification.objects.filter(pk=sent[1].pk), status=NotificationStatus.PENDING, sent_at=None)
    request_deny(
        request_id=req.pk,
        reviewer=world.approver,
        second_factor=fresh_factor(world.approver),
        comment="not now",
    )
    mail.outbox.clear()

    assert notify_request_created.apply(args=[req.pk]).get() == 0

    statuses = dict(
        Notification.objects.filter(event_key=f"request.created:{req.pk}").values_list("pk", "status")
    )
    assert statuses == {
        sent[0].pk: NotificationStatus.NOT_NEEDED,
        sent[1].pk: NotificationStatus.NOT_NEEDED,
        sent[2].pk: NotificationStatus.SENT,
    }
    assert mail.outbox == []


def _announce_counting_queries(req) -> int:
    with CaptureQueriesContext(connection) as queries:
        notify_request_created.apply(args=[req.pk])
    return len(queries)


def test_an_announcement_to_40_approvers_runs_as_many_queries_as_one_to_5(world):
    """Who may decide, the rows and the claims cost the same at 5 and at 40 approvers but for one query per email
    (its mark as sent, right after it goes) and, per batch of EMAIL_BATCH, the batch's insert and claim."""
    for i in range(2):
        make_user(f"few-{i}", "approvers")
    few = _announce_counting_queries(world.submit())
    assert len(mail.outbox) == 5
    mail.outbox.clear()
    for i in range(35):
        make_user(f"many-{i}", "approvers")

    req = world.submit()

    many = _announce_counting_queries(req)

    assert len(mail.outbox) == 40
    per_batch = 5  # the rows' insert; the claim's savepoint, select for update, update and release
    assert EMAIL_BATCH == 10
    assert many - few == (40 - 5) + (4 - 1) * per_batch
    assert sorted(tuple(m.to) for m in mail.outbox) == sorted((u.email,) for u in approvers_to_notify(req))


def test_the_approvers_to_notify_are_exactly_those_decide_problem_allows(world):
    """The announcement asks the same rule as the review page, read once for everyone: an auditor who approves, a
    deactivated approver, one who decided already, the requester and a recipient are left out."""
    world.rule.approvals_required = 2
    world.rule.save()
    make_user("auditing-approver", "approvers", "auditors")
    make_user("gone", "approvers", is_active=False)
    req = world.submit()
    approve(world, req)
    req.refresh_from_db()
    assert req.status == RequestStatus.PENDING

    chosen = approvers_to_notify(req)

    everyone = User.objects.exclude(email="").order_by("pk")
    assert chosen == [user for user in everyone if permissions.decide_problem(user, req) is None]
    assert [user.username for user in chosen] == ["approver2", "pipeline-owner"]


def test_a_run_after_a_worker_died_half_way_sends_only_what_was_not_sent(world):
    """The worker died inside an announcement: one row it had claimed (its lease now over), one row another run is
    sending right now, one it never reached; the rest went out. A run again sends the first and the third."""
    for i in range(2):
        make_user(f"more-{i}", "approvers")
    req = world.submit()
    notify_request_created.apply(args=[req.pk])
    rows = list(Notification.objects.filter(event_key=f"request.created:{req.pk}").order_by("pk"))
    assert len(rows) == 5
    dead, busy, unreached = rows[0], rows[1], rows[2]
    force_update(
        Notification.objects.filter(pk=dead.pk),
        status=NotificationStatus.SENDING,
        claimed_at=timezone.now() - timedelta(hours=1),
        sent_at=None,
    )
    force_update(
        Notification.objects.filter(pk=busy.pk),
        status=NotificationStatus.SENDING,
        claimed_at=timezone.now(),
        sent_at=None,
    )
    force_update(
        Notification.objects.filter(pk=unreached.pk),
        status=NotificationStatus.PENDING,
        attempts=0,
        sent_at=None,
    )
    mail.outbox.clear()

    assert notify_request_created.apply(args=[req.pk]).get() == 2

    assert recipients() == sorted([dead.recipient, unreached.recipient])
    after = {
        row.pk: (row.status, row.attempts)
        for row in Notification.objects.filter(event_key=f"request.created:{req.pk}")
    }
    assert after == {
        dead.pk: (NotificationStatus.SENT, 2),
        busy.pk: (NotificationStatus.SENDING, 1),
        unreached.pk: (NotificationStatus.SENT, 1),
        rows[3].pk: (NotificationStatus.SENT, 1),
        rows[4].pk: (NotificationStatus.SENT, 1),
    }


def test_an_address_the_mail_server_refuses_fails_alone_and_is_retried_while_the_others_go_once(
    world, smtp, eager_tasks, django_capture_on_commit_callbacks
):
    smtp.refuse = {world.approver2.email}

    with django_capture_on_commit_callbacks(execute=True):
        req = world.submit()

    assert AccessRequest.objects.get(pk=req.pk).status == RequestStatus.PENDING
    assert smtp.delivered() == [world.approver.email, world.owner.email]  # once each, over six runs
    messages = [message for session in smtp.sessions for message in session.messages]
    assert all(rcpts == [to] for rcpts, to in messages)  # each recipient their own message
    rows = {row.recipient: row for row in Notification.objects.filter(event_key=f"request.created:{req.pk}")}
    assert {to: (row.status, row.attempts) for to, row in rows.items()} == {
        world.approver.email: (NotificationStatus.SENT, 1),
        world.owner.email: (NotificationStatus.SENT, 1),
        world.approver2.email: (NotificationStatus.FAILED, MAX_ATTEMPTS),
    }
    assert "550" in rows[world.approver2.email].last_error
    assert "no such mailbox" in rows[world.approver2.email].last_error
    # One connection a run, and a fresh one after the refusal for the message after it: 1 + 1 + 5 retries.
    assert len(smtp.sessions) == MAX_ATTEMPTS + 1


def _announce_in_a_thread(req) -> tuple[threading.Thread, list[int]]:
    """The announcement task run as a worker runs it, in a thread of its own; what it returns lands in the list."""
    results: list[int] = []

    def run() -> None:
        try:
            results.append(notify_request_created.apply(args=[req.pk]).get())
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, results


@pytest.mark.django_db(transaction=True)
def test_a_second_run_while_the_first_is_still_sending_sends_nothing(settings, smtp):
    """Two workers got the same announcement (a redelivered message): the one that claimed the rows sends them;
    the other, running while the first waits for the mail server, finds every row taken and sends nothing."""
    settings.SITE_URL = SITE
    world = World()
    req = world.submit()
    smtp.hold = True
    first, results = _announce_in_a_thread(req)
    try:
        assert smtp.holding.wait(timeout=60), "the first run never reached the mail server"
        assert notify_request_created.apply(args=[req.pk]).get() == 0
        assert len(smtp.sessions) == 1  # the second run did not even connect
    finally:
        smtp.release()
        first.join(timeout=60)

    assert results == [2]
    assert smtp.delivered() == [world.approver2.email, world.approver.email]
    assert set(Notification.objects.values_list("status", "attempts")) == {(NotificationStatus.SENT, 1)}


@pytest.mark.django_db(transaction=True)
def test_each_email_is_marked_sent_as_soon_as_it_is_so_a_worker_dying_mid_batch_leaves_one_in_doubt(
    settings, smtp
):
    """While the second message of an announcement waits at the mail server (where a worker killed now would stop),
    the first is already recorded as sent: a later run sends again at most the message that was in flight."""
    settings.SITE_URL = SITE
    world = World()
    req = world.submit()
    smtp.hold, smtp.hold_after = True, 1
    worker, results = _announce_in_a_thread(req)
    try:
        assert smtp.holding.wait(timeout=60), "the second message never reached the mail server"
        statuses = sorted(Notification.objects.values_list("status", flat=True))
        assert statuses == sorted([NotificationStatus.SENT, NotificationStatus.SENDING])
    finally:
        smtp.release()
        worker.join(timeout=60)
    assert results == [2]
    assert set(Notification.objects.values_list("status", "attempts")) == {(NotificationStatus.SENT, 1)}


def test_an_auto_approved_request_asks_no_approver_for_a_review(world):
    world.rule.auto_approve_low_risk = True
    world.rule.save()
    req = world.submit()
    assert req.status == RequestStatus.APPROVED

    notify_request_created.apply(args=[req.pk])

    assert mail.outbox == []


# --- decisions -------------------------------------------------------------------------------------------


def test_the_requester_is_emailed_the_approval_with_the_comment(world):
    req = approve(world, world.submit())

    notify_request_decided.apply(args=[req.pk])

    [message] = mail.outbox
    assert message.to == ["requester@example.com"]
    assert "approved" in message.subject
    assert "approver: Fine for the incident" in message.body
    assert f"{SITE}/requests/{req.pk}/" in message.body


def test_the_requester_is_emailed_the_denial_with_the_reason(world):
    req = request_deny(
        request_id=world.submit().pk,
        reviewer=world.approver,
        second_factor=fresh_factor(world.approver),
        comment="Use the staging pipeline",
    )

    notify_request_decided.apply(args=[req.pk])
    notify_request_decided.apply(args=[req.pk])

    [message] = mail.outbox
    assert message.to == ["requester@example.com"]
    assert "denied" in message.subject
    assert "Use the staging pipeline" in message.body


def test_a_request_still_pending_sends_no_decision_email(world):
    req = world.submit()

    notify_request_decided.apply(args=[req.pk])

    assert mail.outbox == []


# --- grants ----------------------------------------------------------------------------------------------


def test_the_requester_is_emailed_when_the_grant_is_live_with_its_end(world):
    grant = activate(approve(world, world.submit()))

    notify_grant_applied.apply(args=[grant.pk])
    notify_grant_applied.apply(args=[grant.pk])

    [message] = mail.outbox
    assert message.to == ["requester@example.com"]
    assert "is live" in message.subject
    assert grant.expires_at.strftime("%Y-%m-%d %H:%M UTC") in message.body


def test_one_task_for_the_grants_of_a_reconcile_emails_each_live_one_once(world):
    # A reconcile applies every queued grant of a principal and sends one task carrying all their ids.
    first = activate(approve(world, world.submit()))
    second = activate(approve(world, world.submit()))
    queued = approve(world, world.submit())  # not live: nothing to announce for it

    ids = [first.pk, Grant.objects.get(request=queued).pk, second.pk]
    assert notify_grant_applied.apply(args=ids).get() == 2
    assert notify_grant_applied.apply(args=ids).get() == 0  # redelivered: nothing goes out twice

    live = sorted(m.subject.split(" is live")[0] for m in mail.outbox)
    assert live == sorted(f"[Gatehouse] {g.request.reference}" for g in (first, second))


def test_the_requester_is_emailed_the_reason_a_grant_failed(world):
    req = approve(world, world.submit())
    grant = Grant.objects.get(request=req)
    force_update(
        Grant.objects.filter(pk=grant.pk),
        status=GrantStatus.FAILED,
        last_error="LimitExceeded: the inline policy would exceed 2048 characters",
    )

    notify_grant_failed.apply(args=[grant.pk])

    [message] = mail.outbox
    assert message.to == ["requester@example.com"]
    assert "could not be applied" in message.subject
    assert "the inline policy would exceed 2048 characters" in message.body


def test_a_failure_that_a_retry_already_repaired_is_not_announced(world):
    grant = activate(approve(world, world.submit()))

    notify_grant_failed.apply(args=[grant.pk])

    assert mail.outbox == []


def test_requesters_are_warned_once_a_day_before_their_access_ends(world):
    grant = activate(
        approve(world, world.submit()), applied_ago=timedelta(days=6), expires_in=timedelta(hours=5)
    )

    assert notify_expiring_grants.apply().get() == 1
    assert notify_expiring_grants.apply().get() == 0

    [message] = mail.outbox
    assert message.to == ["requester@example.com"]
    assert grant.request.reference in message.subject
    assert "less than 24 hours" in message.body
    assert f"/requests/new/?extends={grant.pk}" in message.body  # one click to the prefilled extension


def test_grants_ending_later_or_granted_for_less_than_a_day_get_no_expiry_warning(world):
    activate(approve(world, world.submit()), applied_ago=timedelta(days=2), expires_in=timedelta(hours=30))
    activate(approve(world, world.submit(justification="A short one")), expires_in=timedelta(hours=3))

    assert notify_expiring_grants.apply().get() == 0
    assert mail.outbox == []


# --- Slack -----------------------------------------------------------------------------------------------


def test_a_new_request_and_its_decision_are_posted_to_the_rules_slack_webhook(world, webhook):
    world.rule.slack_webhook_url = webhook.url
    world.rule.save()
    req = world.submit(justification="Deploy is stuck <!channel> & nobody knows why")

    notify_request_created.apply(args=[req.pk])
    approve(world, req)
    notify_request_decided.apply(args=[req.pk])

    assert [post["path"] for post in webhook.posts] == [f"/services/{WEBHOOK_SECRET}"] * 2
    assert {post["content_type"] for post in webhook.posts} == {"application/json"}
    created, decided = webhook.texts()
    assert req.reference in created
    assert f"<{SITE}/review/{req.pk}/|Review it in Gatehouse>" in created
    assert "&lt;!channel&gt; &amp; nobody" in created  # user text cannot ping the whole channel
    assert f"*{req.reference}* was approved" in decided


def test_a_webhook_answering_500_is_retried_a_bounded_number_of_times_and_the_submit_succeeds(
    world, webhook, eager_tasks, django_capture_on_commit_callbacks, caplog
):
    webhook.status = 500
    world.rule.slack_webhook_url = webhook.url
    world.rule.save()

    with caplog.at_level(logging.INFO), django_capture_on_commit_callbacks(execute=True):
        req = world.submit()

    assert AccessRequest.objects.get(pk=req.pk).status == RequestStatus.PENDING
    assert len(webhook.posts) == MAX_ATTEMPTS
    slack = Notification.objects.get(channel="slack")
    assert (slack.status, slack.attempts) == (NotificationStatus.FAILED, MAX_ATTEMPTS)
    assert slack.last_error == "slack: the webhook answered HTTP 500"
    assert len(mail.outbox) == 3  # the approvers' emails went out once, despite six runs of the task
    assert WEBHOOK_SECRET not in caplog.text
    assert WEBHOOK_SECRET not in slack.recipient + slack.last_error


def test_an_unreachable_webhook_does_not_fail_the_submit(
    world, eager_tasks, django_capture_on_commit_callbacks, caplog
):
    world.rule.slack_webhook_url = f"http://127.0.0.1:{closed_port()}/services/{WEBHOOK_SECRET}"
    world.rule.save()

    with caplog.at_level(logging.INFO), django_capture_on_commit_callbacks(execute=True):
        req = world.submit()

    assert AccessRequest.objects.get(pk=req.pk).status == RequestStatus.PENDING
    slack = Notification.objects.get(channel="slack")
    assert slack.status == NotificationStatus.FAILED
    assert slack.last_error == "slack: the webhook is unreachable (ConnectionRefusedError)"
    assert WEBHOOK_SECRET not in caplog.text


# --- the broker ------------------------------------------------------------------------------------------


def test_submitting_succeeds_when_the_broker_is_down_and_the_lost_notification_is_logged(
    world, unreachable_broker, django_capture_on_commit_callbacks, caplog
):
    with caplog.at_level(logging.WARNING), django_capture_on_commit_callbacks(execute=True) as callbacks:
        req = world.submit()

    assert len(callbacks) == 1
    assert AccessRequest.objects.get(pk=req.pk).status == RequestStatus.PENDING
    [record] = [r for r in caplog.records if r.name == "accessrequests.core.enqueue"]
    assert record.levelno == logging.WARNING
    assert "notify_request_created" in record.getMessage()
    assert "the notification is dropped" in record.getMessage()
    assert req.reference in record.getMessage()
    assert mail.outbox == []
