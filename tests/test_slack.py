"""The Slack app against a fake Slack Web API on 127.0.0.1 (a real HTTP server that records calls): new requests
posted to the rule's channel with the exact change and buttons; signed callbacks only, fresh and once; "Approve"
answers with a personal, short-lived link through the second factor; the message is updated in place; the
requester gets a DM; pending requests are announced again with backoff; unknown Slack users get a private refusal
and nothing happens."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import pytest
from allauth.account.models import EmailAddress
from django.core import signing
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accessrequests.models import (
    AccessLevel,
    AccessRequest,
    AuditEvent,
    ChatApproval,
    Decision,
    Grant,
    GrantStatus,
    RequestStatus,
    SlackMessage,
)
from accessrequests.slack.messages import (
    slack_dm_requester,
    slack_post_request,
    slack_remind_pending,
    slack_update_message,
)
from accessrequests.workflow.requests import request_approve, request_deny, requests_expire_unreviewed
from tests.conftest import WorkerProcess, make_user, sign_in_with_mfa, wait_for
from tests.factories import World, force_update, fresh_factor
from tests.slack_support import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    block_action,
    signed,
    signed_form,
    slash_command,
)

pytestmark = pytest.mark.django_db

SITE = "https://gatehouse.example.com"
CHANNEL = "C0GATEHOUSE"


@pytest.fixture
def slack():
    fake = FakeSlack()
    yield fake
    fake.close()


@pytest.fixture
def slack_settings(settings, slack):
    settings.SITE_URL = SITE
    settings.SLACK_BOT_TOKEN = BOT_TOKEN
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    settings.SLACK_API_URL = slack.url
    return settings


@pytest.fixture
def world(slack_settings, slack):
    world = World(approvals=2)
    world.rule.slack_channel = CHANNEL
    world.rule.save()
    for user, slack_id in ((world.approver, "U0APPROVER"), (world.approver2, "U0APPROVER2")):
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        slack.add_user(slack_id, user.email)
    slack.add_user("U0REQUESTER", world.requester.email)
    return world


def posted(world, slack, **overrides) -> AccessRequest:
    req = world.submit(**overrides)
    assert slack_post_request.apply(args=[req.pk]).get() == 1
    return req


def click(action: str, req, slack_user: str = "U0APPROVER", **kwargs):
    return Client().post(
        reverse("slack_interactions"), **signed(block_action(action, req.pk, slack_user=slack_user), **kwargs)
    )


def ephemerals(slack) -> list[str]:
    return [call["text"] for call in slack.made("chat.postEphemeral")]


def statuses(slack) -> list[str]:
    return [call["blocks"][-2]["elements"][0]["text"] for call in slack.made("chat.update")]


# --- posting -------------------------------------------------------------------------------------------


def test_a_new_request_is_posted_to_the_rules_channel_once_with_the_exact_change_and_buttons(world, slack):
    req = posted(world, slack, justification="Deploy stuck <!channel>")
    assert slack_post_request.apply(args=[req.pk]).get() == 0  # a redelivered task posts nothing

    [message] = slack.made("chat.postMessage")
    assert message["channel"] == CHANNEL
    blocks = json.dumps(message["blocks"])
    assert req.reference in message["text"] and req.reference in blocks
    assert "codepipeline:GetPipeline" in blocks  # the exact change
    assert f"arn:aws:codepipeline:us-east-1:{world.account.account_id}:my-pipeline" in blocks
    assert "&lt;!channel&gt;" in blocks and "<!channel>" not in blocks  # user text cannot ping the channel
    buttons = {e.get("action_id"): e for e in message["blocks"][-1]["elements"]}
    assert set(buttons) == {"gatehouse_approve", "gatehouse_deny", "gatehouse_claim", "gatehouse_open"}
    assert buttons["gatehouse_approve"]["value"] == str(req.pk)
    assert buttons["gatehouse_open"]["url"] == f"{SITE}/review/{req.pk}/"
    assert SlackMessage.objects.get(request=req).ts == "1700000000.000001"
    assert {call["auth"] for call in slack.calls} == {f"Bearer {BOT_TOKEN}"}


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_posts_the_new_request_after_commit(
    slack, slack_settings, worker_env, django_capture_on_commit_callbacks
):
    from portal.celery import app

    env = {**worker_env, "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_API_URL": slack.url, "SITE_URL": SITE}
    app.control.purge()
    worker = WorkerProcess(env, name="slack").start()
    try:
        world = World(approvals=2)
        world.rule.slack_channel = CHANNEL
        world.rule.save()
        with django_capture_on_commit_callbacks(execute=True):
            req = world.submit()
        wait_for(lambda: slack.made("chat.postMessage"), timeout=60, what="the worker to post to Slack")
        # The worker records the message's ts after Slack answered: wait for the row, not for a time.
        wait_for(
            lambda: SlackMessage.objects.filter(request=req).exclude(ts="").exists(),
            timeout=60,
            what="the worker to record the message's ts",
        )
    finally:
        worker.stop()
    assert slack.made("chat.postMessage")[0]["channel"] == CHANNEL
    assert SlackMessage.objects.get(request=req).ts


# --- callbacks -----------------------------------------------------------------------------------------


def test_approve_from_a_matched_approver_answers_with_a_personal_step_up_link_and_decides_nothing(
    world, slack, client
):
    req = posted(world, slack)

    response = click("gatehouse_approve", req)

    assert response.status_code == 200
    assert slack.made("users.info") == [{"user": "U0APPROVER"}]
    [reply] = slack.made("chat.postEphemeral")
    assert reply["user"] == "U0APPROVER" and reply["channel"] == CHANNEL
    assert "authenticator code" in reply["text"]
    link = reply["text"].split("<", 1)[1].split("|", 1)[0]
    assert link.startswith(f"{SITE}/slack/link/")
    assert not Decision.objects.exists()

    # The link asks for the second factor before the decision page, then the decision needs it too.
    sign_in_with_mfa(client, world.approver)
    session = client.session
    from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY

    session[AUTHENTICATION_METHODS_SESSION_KEY] = [
        {**r, "at": time.time() - 3600} for r in session[AUTHENTICATION_METHODS_SESSION_KEY]
    ]
    session.save()
    path = link.removeprefix(SITE)
    asked = client.get(path)
    assert asked.status_code == 302
    assert asked["Location"] == f"{reverse('mfa_reauthenticate')}?next=%2Freview%2F{req.pk}%2F"
    sign_in_with_mfa(client, world.approver)  # a fresh factor
    assert client.get(path)["Location"] == f"/review/{req.pk}/"


def test_the_link_is_for_its_person_only_and_only_for_minutes(world, slack, client, settings):
    req = posted(world, slack)
    click("gatehouse_approve", req)
    link = ephemerals(slack)[0].split("<", 1)[1].split("|", 1)[0].removeprefix(SITE)

    sign_in_with_mfa(client, world.approver2)
    assert client.get(link).status_code == 403
    anonymous = Client().get(link)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]
    sign_in_with_mfa(client, world.approver)
    settings.GATEHOUSE_SLACK_LINK_SECONDS = -1  # every link is now older than its lifetime
    assert client.get(link).status_code == 400
    assert client.get("/slack/link/forged-token/").status_code == 400


@pytest.mark.parametrize(
    ("how", "status"),
    [("bad signature", 401), ("old timestamp", 401), ("no timestamp", 401), ("replayed id", 409)],
)
def test_a_bad_signature_an_old_timestamp_or_a_replayed_id_is_refused_and_changes_nothing(
    world, slack, how, status
):
    req = posted(world, slack)
    slack.calls.clear()
    payload = block_action("gatehouse_claim", req.pk, slack_user="U0APPROVER", trigger_id="42.1.replay")
    if how == "replayed id":
        assert Client().post(reverse("slack_interactions"), **signed(payload)).status_code == 200
        SlackMessage.objects.filter(request=req).update(claimed_by=None)
        slack.calls.clear()
    kwargs = {
        "bad signature": {"secret": "not-the-signing-secret"},
        "old timestamp": {"timestamp": int(time.time()) - 6 * 60},
    }.get(how, {})
    request = signed(payload, **kwargs)
    if how == "no timestamp":
        request["HTTP_X_SLACK_REQUEST_TIMESTAMP"] = "soon"

    response = Client().post(reverse("slack_interactions"), **request)

    assert response.status_code == status and response["Content-Type"] == "application/json"
    assert slack.calls == []  # not even a lookup
    assert SlackMessage.objects.get(request=req).claimed_by is None
    assert not AuditEvent.objects.filter(action="request.claimed").exists() or how == "replayed id"


def test_an_unmatched_an_unconfirmed_or_a_deactivated_slack_user_gets_a_private_refusal_and_nothing_happens(
    world, slack
):
    req = posted(world, slack)
    slack.add_user("U0STRANGER", "stranger@example.com")
    slack.add_user("U0UNCONFIRMED", world.approver.email, confirmed=False)
    gone = make_user("gone", "approvers")
    EmailAddress.objects.create(user=gone, email=gone.email, verified=True, primary=True)
    slack.add_user("U0GONE", gone.email)
    gone.is_active = False
    gone.save()
    unverified = make_user("unverified", "approvers")
    slack.add_user("U0UNVERIFIED", unverified.email)  # the portal never verified this address

    for slack_user in ("U0STRANGER", "U0UNCONFIRMED", "U0GONE", "U0UNVERIFIED", "U0NOBODY"):
        for action in ("gatehouse_approve", "gatehouse_claim"):
            assert click(action, req, slack_user=slack_user).status_code == 200

    replies = ephemerals(slack)
    assert len(replies) == 10 and all("nothing was done" in text for text in replies)
    assert "No Gatehouse account has the verified e-mail address stranger@example.com" in replies[0]
    assert "deactivated" in replies[4]
    assert not Decision.objects.exists() and SlackMessage.objects.get(request=req).claimed_by is None
    assert next(c["args"]["user"] for c in slack.calls if c["method"] == "chat.postEphemeral") == "U0STRANGER"


def test_an_address_two_portal_accounts_verified_in_different_case_is_nobodys_and_nothing_is_decided(
    world, slack
):
    # A click would be the approval here, so matching the wrong person would decide the request for them.
    world.rule.chat_approval = ChatApproval.LOW_RISK
    world.rule.save()
    req = posted(world, slack)
    twin = make_user("twin", "approvers")
    EmailAddress.objects.create(user=twin, email=world.approver.email.upper(), verified=True, primary=True)

    for action in ("gatehouse_approve", "gatehouse_claim"):
        assert click(action, req).status_code == 200

    replies = ephemerals(slack)
    assert len(replies) == 2 and all(
        "More than one Gatehouse account has verified the e-mail address approver@example.com" in text
        and "nothing was done" in text
        for text in replies
    )
    assert not Decision.objects.exists() and SlackMessage.objects.get(request=req).claimed_by is None
    assert not AuditEvent.objects.filter(action__in=["request.claimed", "request.approval_recorded"]).exists()


def test_a_deactivated_account_sharing_the_address_still_makes_it_ambiguous(world, slack):
    req = posted(world, slack)
    gone = make_user("gone", "approvers", is_active=False)
    EmailAddress.objects.create(user=gone, email="Approver@Example.COM", verified=True, primary=True)

    click("gatehouse_claim", req)

    assert "More than one Gatehouse account" in ephemerals(slack)[0]
    assert SlackMessage.objects.get(request=req).claimed_by is None


def test_a_unique_verified_address_is_matched_whatever_its_case_and_unverified_copies_do_not_count(
    world, slack
):
    world.rule.chat_approval = ChatApproval.LOW_RISK
    world.rule.save()
    req = posted(world, slack)
    slack.add_user("U0SHOUTING", "APPROVER@EXAMPLE.COM")
    # The same person's address twice, and someone else's unverified claim to it: still one verified holder.
    EmailAddress.objects.create(user=world.approver, email="Approver@example.com", verified=True)
    claimant = make_user("claimant", "approvers")
    EmailAddress.objects.create(user=claimant, email="approver@EXAMPLE.com", verified=False, primary=True)

    click("gatehouse_approve", req, slack_user="U0SHOUTING")

    decision = Decision.objects.get()
    assert decision.request_id == req.pk and decision.reviewer == world.approver
    assert ephemerals(slack)[0].startswith(f"You approved {req.reference}")


def test_a_matched_user_who_may_not_decide_is_told_why(world, slack):
    req = posted(world, slack)
    EmailAddress.objects.create(user=world.requester, email=world.requester.email, verified=True)
    click("gatehouse_approve", req, slack_user="U0REQUESTER")
    assert "You cannot decide your own request." in ephemerals(slack)[0]
    assert "/slack/link/" not in ephemerals(slack)[0]


# --- the message, updated in place ---------------------------------------------------------------------


def test_the_message_is_updated_for_a_claim_each_approval_and_the_grant_being_applied(world, slack):
    req = posted(world, slack)

    assert click("gatehouse_claim", req).status_code == 200
    slack_update_message.apply(args=[req.pk])
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    slack_update_message.apply(args=[req.pk])
    request_approve(request_id=req.pk, reviewer=world.approver2, second_factor=fresh_factor(world.approver2))
    slack_update_message.apply(args=[req.pk])
    now = timezone.now()
    force_update(
        Grant.objects.filter(request=req),
        status=GrantStatus.ACTIVE,
        applied_at=now,
        expires_at=now + timedelta(hours=4),
    )
    slack_update_message.apply(args=[req.pk])

    assert statuses(slack) == [
        "*Status:* waiting for review · 0 of 2 · claimed by approver",
        "*Status:* approved by approver · 1 of 2 · claimed by approver",
        "*Status:* approved by approver, approver2 · applying",
        f"*Status:* approved by approver, approver2 · applied, live until {(now + timedelta(hours=4)):%Y-%m-%d %H:%M} UTC",
    ]
    updates = slack.made("chat.update")
    assert {(u["channel"], u["ts"]) for u in updates} == {(CHANNEL, "1700000000.000001")}
    assert [e.get("action_id") for e in updates[-1]["blocks"][-1]["elements"]] == [
        "gatehouse_open"
    ]  # no buttons left
    assert "You claimed" in ephemerals(slack)[0]
    assert AuditEvent.objects.get(action="request.claimed").actor == world.approver


def test_the_message_says_denied_and_expired_unreviewed(world, slack):
    denied = posted(world, slack)
    request_deny(
        request_id=denied.pk,
        reviewer=world.approver,
        second_factor=fresh_factor(world.approver),
        comment="no",
    )
    slack_update_message.apply(args=[denied.pk])
    waiting = posted(world, slack, justification="forgotten")
    force_update(AccessRequest.objects.filter(pk=waiting.pk), created_at=timezone.now() - timedelta(days=4))
    assert requests_expire_unreviewed(older_than=timedelta(hours=72)) == 1
    slack_update_message.apply(args=[waiting.pk])
    assert statuses(slack) == ["*Status:* denied by approver", "*Status:* expired unreviewed"]


def test_a_click_is_the_approval_only_where_the_rule_allows_chat_approval_for_a_low_risk_request(
    world, slack
):
    world.rule.chat_approval = ChatApproval.LOW_RISK
    world.rule.save()
    low = posted(world, slack)
    risky = posted(world, slack, level=AccessLevel.OPERATOR, justification="operate")

    click("gatehouse_approve", low)
    click("gatehouse_approve", risky)

    decision = Decision.objects.get()
    assert decision.request_id == low.pk and decision.reviewer == world.approver
    recorded = AuditEvent.objects.get(action="request.approval_recorded")
    assert {k: recorded.after["decision"]["second_factor"][k] for k in ("method", "via")} == {
        "method": "slack",
        "via": "slack",
    }
    first, second = ephemerals(slack)
    assert first.startswith(f"You approved {low.reference}")
    assert "/slack/link/" in second  # operator access: decided in Gatehouse with the code


def test_a_slack_factor_decides_nothing_the_rule_has_not_opened_to_chat(world):
    from accessrequests.authz.permissions import NotAllowed, SecondFactor

    req = world.submit()
    factor = SecondFactor(user_id=world.approver.pk, method="slack", at=timezone.now(), via="slack")
    with pytest.raises(NotAllowed, match="second factor in Gatehouse"):
        request_approve(request_id=req.pk, reviewer=world.approver, second_factor=factor)
    world.rule.chat_approval = ChatApproval.LOW_RISK
    world.rule.save()
    with pytest.raises(NotAllowed, match="does not decide this"):
        request_deny(request_id=req.pk, reviewer=world.approver, second_factor=factor, comment="no")
    assert not Decision.objects.exists()


# --- the requester and reminders -----------------------------------------------------------------------


def test_the_requester_gets_a_direct_message_when_decided_and_when_live_once_each(world, slack):
    req = posted(world, slack)
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    request_approve(request_id=req.pk, reviewer=world.approver2, second_factor=fresh_factor(world.approver2))
    slack_dm_requester.apply(args=[req.pk, "decided"])
    slack_dm_requester.apply(args=[req.pk, "decided"])
    now = timezone.now()
    force_update(
        Grant.objects.filter(request=req),
        status=GrantStatus.ACTIVE,
        applied_at=now,
        expires_at=now + timedelta(hours=4),
    )
    slack_dm_requester.apply(args=[req.pk, "applied"])

    dms = [m for m in slack.made("chat.postMessage") if m["channel"] == "U0REQUESTER"]
    assert len(dms) == 2
    assert "was approved by approver, approver2" in dms[0]["text"] and "is live" in dms[1]["text"]
    assert slack.made("users.lookupByEmail")[0] == {"email": "requester@example.com"}


def test_pending_requests_are_announced_again_in_their_thread_with_backoff_until_decided(
    world, slack, settings
):
    req = posted(world, slack)
    message = SlackMessage.objects.get(request=req)
    assert message.next_reminder_at > timezone.now() + timedelta(minutes=59)
    assert slack_remind_pending.apply().get() == 0  # not due yet

    SlackMessage.objects.filter(pk=message.pk).update(next_reminder_at=timezone.now() - timedelta(seconds=1))
    assert slack_remind_pending.apply().get() == 1
    assert slack_remind_pending.apply().get() == 0  # the next one waits twice as long
    message.refresh_from_db()
    assert message.reminders_sent == 1
    assert timedelta(minutes=119) < message.next_reminder_at - timezone.now() <= timedelta(minutes=120)
    [reminder] = [m for m in slack.made("chat.postMessage") if m.get("thread_ts")]
    assert reminder["thread_ts"] == message.ts and "Still waiting for review" in reminder["text"]

    request_deny(
        request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver), comment="no"
    )
    SlackMessage.objects.filter(pk=message.pk).update(next_reminder_at=timezone.now() - timedelta(seconds=1))
    assert slack_remind_pending.apply().get() == 0


def test_a_request_decided_before_it_was_posted_is_not_posted_and_a_slack_outage_never_fails_a_decision(
    world, slack
):
    req = world.submit()
    request_deny(
        request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver), comment="no"
    )
    assert slack_post_request.apply(args=[req.pk]).get() == 0
    assert slack.calls == []
    other = posted(world, slack, justification="second")
    slack.fail_with = "ratelimited"
    request_approve(request_id=other.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    result = slack_update_message.apply(args=[other.pk])
    assert result.failed() and "ratelimited" in str(result.result) and BOT_TOKEN not in str(result.result)
    assert AccessRequest.objects.get(pk=other.pk).decisions.count() == 1


def test_nothing_is_posted_or_answered_when_slack_is_not_configured(world, slack, settings):
    settings.SLACK_BOT_TOKEN = ""
    req = world.submit()
    assert slack_post_request.apply(args=[req.pk]).get() == 0
    assert click("gatehouse_approve", req).status_code == 404
    assert slack.calls == []


def test_the_signed_link_carries_no_authority_by_itself(world, slack):
    """A link forged with another key, or for another request id, is refused before anything is looked up."""
    req = world.submit()
    forged = signing.dumps({"r": req.pk, "u": world.approver.pk, "v": "approve"}, salt="other-salt")
    client = Client()
    sign_in_with_mfa(client, world.approver)
    assert client.get(f"/slack/link/{forged}/").status_code == 400
    assert req.status == RequestStatus.PENDING


def test_the_bot_token_and_the_signing_secret_never_reach_logs_the_audit_trail_or_the_database(
    world, slack, caplog
):
    import logging

    from tests.test_secrets import _everything_in_the_database

    caplog.set_level(logging.DEBUG)
    req = posted(world, slack)
    click("gatehouse_claim", req)
    click("gatehouse_approve", req, secret="wrong")  # refused, and logged
    slack.fail_with = "invalid_auth"
    slack_update_message.apply(args=[req.pk])
    audit = json.dumps(list(AuditEvent.objects.values("before", "after", "actor_label")), default=str)
    for secret in (BOT_TOKEN, SIGNING_SECRET):
        assert (
            secret not in caplog.text and secret not in audit and secret not in _everything_in_the_database()
        )


def test_an_approver_of_another_rule_learns_nothing_about_the_request(world, slack):
    req = posted(world, slack)
    outsider = world.outsider_approver
    EmailAddress.objects.create(user=outsider, email=outsider.email, verified=True, primary=True)
    slack.add_user("U0OUTSIDER", outsider.email)
    click("gatehouse_claim", req, slack_user="U0OUTSIDER")
    click("gatehouse_approve", req, slack_user="U0OUTSIDER")
    assert ephemerals(slack) == ["That request does not exist, or it is not yours to see."] * 2
    assert SlackMessage.objects.get(request=req).claimed_by is None and not Decision.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_request_decided_while_its_message_was_being_posted_is_shown_decided(world, slack):
    from django.db import connection

    req = world.submit()

    def deny_meanwhile(
        method: str,
    ) -> None:  # runs in the fake Slack's thread, on its own database connection
        if method == "chat.postMessage":
            slack.before_answer = None
            request_deny(
                request_id=req.pk,
                reviewer=world.approver,
                second_factor=fresh_factor(world.approver),
                comment="no",
            )
            connection.close()

    slack.before_answer = deny_meanwhile
    assert slack_post_request.apply(args=[req.pk]).get() == 1
    assert statuses(slack) == ["*Status:* denied by approver"]


# --- the /gatehouse break-glass command --------------------------------------------------------------------

MATEO = (
    "An error occurred (AccessDeniedException) when calling the GetPipeline operation: User: "
    "arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: codepipeline:GetPipeline on "
    "resource: my-pipeline"
)
REASON = "Production deploy is stuck; customers cannot check out"
UNKNOWN_ROLE = (
    "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: iam:PassRole on resource: "
    "arn:aws:iam::123456789012:role/NoSuchRole"
)


@pytest.fixture
def oncall(world):
    """The requester, named for break-glass, known to Slack by their verified address (mateojackson is theirs)."""
    EmailAddress.objects.create(
        user=world.requester, email=world.requester.email, verified=True, primary=True
    )
    world.rule.break_glass_users.add(world.requester)
    return world.requester


def command(text: str, slack_user: str = "U0REQUESTER", **signing):
    fields = slash_command(text, slack_user=slack_user, trigger_id=signing.pop("trigger_id", None))
    return Client().post(reverse("slack_commands"), **signed_form(fields, **signing))


def test_break_glass_in_slack_applies_the_pasted_errors_access_at_once_and_answers_only_its_user(
    world, slack, oncall
):
    answer = command(f"break-glass INC-7 {MATEO} -- {REASON}")

    assert answer.status_code == 200 and answer.json()["response_type"] == "ephemeral"
    req = AccessRequest.objects.get()
    assert answer.json()["text"].startswith(
        f"Break-glass {req.reference} (Pipeline actions (Viewer) on my-pipeline"
    )
    assert "is being applied now, for 1 hour" in answer.json()["text"]
    assert (req.status, req.break_glass, req.incident, req.source) == (
        RequestStatus.APPROVED,
        True,
        "INC-7",
        "slack",
    )
    assert (req.requester, req.principal, req.justification) == (oncall, world.principal, REASON)
    assert req.pasted_text == MATEO and req.duration_hours == 1 and not req.decisions.exists()
    assert Grant.objects.get(request=req).status == GrantStatus.QUEUED
    assert AuditEvent.objects.filter(action="request.break_glass", request_id=req.pk).exists()
    # Who it is was asked of Slack; the answer is the response itself, never a message anyone else sees.
    assert slack.made("users.info") == [{"user": "U0REQUESTER"}]
    assert slack.made("chat.postMessage") == [] and slack.made("chat.postEphemeral") == []


@pytest.mark.parametrize(
    ("how", "status"),
    [("bad signature", 401), ("old timestamp", 401), ("no timestamp", 401), ("replayed id", 409)],
)
def test_a_command_with_a_bad_signature_an_old_timestamp_or_a_replayed_id_is_refused_and_changes_nothing(
    world, slack, oncall, how, status
):
    text = f"break-glass INC-7 {MATEO} -- {REASON}"
    if how == "replayed id":
        assert command(text, trigger_id="7.1.replay").json()["text"].startswith("Break-glass GH-")
        slack.calls.clear()
    before = AccessRequest.objects.count()
    signing = {
        "bad signature": {"secret": "not-the-signing-secret"},
        "old timestamp": {"timestamp": int(time.time()) - 6 * 60},
        "replayed id": {"trigger_id": "7.1.replay"},
    }.get(how, {})
    fields = slash_command(text, slack_user="U0REQUESTER", trigger_id=signing.pop("trigger_id", None))
    request = signed_form(fields, **signing)
    if how == "no timestamp":
        request["HTTP_X_SLACK_REQUEST_TIMESTAMP"] = "soon"

    answer = Client().post(reverse("slack_commands"), **request)

    assert answer.status_code == status and answer.json()["ok"] is False
    assert slack.calls == []  # not even a lookup
    assert AccessRequest.objects.count() == before


def test_the_command_says_how_to_use_it_what_it_could_not_read_and_who_is_unknown_and_applies_nothing(
    world, slack, oncall
):
    slack.add_user("U0STRANGER", "stranger@example.com")
    said = {
        text: command(text, slack_user=user).json()["text"]
        for text, user in (
            ("", "U0REQUESTER"),
            ("help", "U0REQUESTER"),
            (f"break-glass INC-7 {MATEO}", "U0REQUESTER"),
            ("break-glass INC-7 the build is red -- please", "U0REQUESTER"),
            (
                f"break-glass INC-7 {MATEO.replace('codepipeline:GetPipeline', 's3:GetObject')} -- x",
                "U0REQUESTER",
            ),
            (f"break-glass INC-7 {MATEO} -- {REASON}", "U0STRANGER"),
            (f"break-glass INC-7 {UNKNOWN_ROLE} -- {REASON}", "U0REQUESTER"),
        )
    }
    usage, helped, no_reason, unreadable, not_codepipeline, stranger, unknown_role = said.values()
    assert usage == helped and usage.startswith("Break-glass from Slack: `/gatehouse break-glass INC-123")
    assert no_reason.startswith("Say the incident, the AccessDenied message, then ` -- ` and the reason.")
    assert unreadable.startswith("Nothing was applied: ") and "not authorized to perform" in unreadable
    assert not_codepipeline.startswith("Nothing was applied: ") and "s3" in not_codepipeline
    assert "No Gatehouse account has the verified e-mail address stranger@example.com" in stranger
    # Nothing is applied half-read: a role the catalog does not know is said, not dropped.
    assert unknown_role.startswith(
        "Nothing was applied: arn:aws:iam::123456789012:role/NoSuchRole is not a role"
    )
    assert not AccessRequest.objects.exists()


def test_the_command_is_refused_with_the_rules_reason_for_someone_the_rule_does_not_name(world, slack):
    EmailAddress.objects.create(
        user=world.requester, email=world.requester.email, verified=True, primary=True
    )
    text = command(f"break-glass INC-7 {MATEO} -- {REASON}").json()["text"]
    assert text.startswith(
        "Nothing was applied: You are not named for break-glass under the rule “Sandbox pipelines”"
    )
    assert not AccessRequest.objects.exists()
