"""Break-glass: access at once with no approver for those a rule names, announced to everyone who must know,
capped in time and in number, reviewed afterwards by another approver, and an alert when that review is late."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group, User
from django.core import mail
from django.db import IntegrityError, transaction
from django.utils import timezone

from accessrequests.authz.permissions import NotAllowed
from accessrequests.models import (
    AccessRequest,
    AuditEvent,
    AwsAccount,
    BreakGlassReview,
    EligibilityRule,
    Grant,
    GrantStatus,
    Notification,
    NotificationStatus,
    RequestStatus,
)
from accessrequests.notify.send import notify_break_glass
from accessrequests.workflow.break_glass import (
    break_glass_post_review,
    break_glass_submit,
    post_reviews_overdue,
)
from accessrequests.workflow.requests import RequestError
from tests.conftest import make_user, sign_in_with_mfa, wait_for
from tests.factories import World, force_update, fresh_factor, make_principal
from tests.test_notifications import (
    webhook,  # noqa: F401  (fixture: a real HTTP server standing in for Slack)
)

REASON = "Production deploy is stuck at the approval stage; customers cannot check out"


@pytest.fixture
def world(db, settings):
    settings.GATEHOUSE_BREAK_GLASS_PER_DAY = 3
    settings.GATEHOUSE_BREAK_GLASS_REVIEW_HOURS = 24
    world = World()
    world.oncall = make_user("oncall", "requesters", "oncall")
    # Their own IAM user: break-glass never reaches anyone but the person breaking the glass.
    world.oncall_principal = make_principal(world.account, "oncall", users=[world.oncall])
    world.rule.break_glass_groups.add(Group.objects.get(name="oncall"))
    world.admin = make_user("admin", "admins")
    world.auditor = make_user("auditor", "auditors")
    return world


def glass(world, user=None, *, incident="INC-4711", reason=REASON, hours=1, **overrides):
    if "principal" not in overrides:
        overrides["principal"] = world.oncall_principal
    draft = world.draft(justification=reason, duration_hours=hours, **overrides)
    return break_glass_submit(requester=user or world.oncall, draft=draft, incident=incident)


@pytest.mark.django_db
def test_an_allowed_user_gets_the_access_approved_at_once_with_no_approver_and_it_is_all_in_the_audit_trail(
    world,
):
    req = glass(world)
    assert req.status == RequestStatus.APPROVED and req.break_glass and req.incident == "INC-4711"
    assert req.decisions.count() == 0
    grant = Grant.objects.get(request=req)
    assert grant.status == GrantStatus.QUEUED
    assert grant.expires_at - grant.starts_at == timedelta(hours=1)
    review = BreakGlassReview.objects.get(request=req)
    assert timedelta(hours=23, minutes=59) < review.due_at - timezone.now() <= timedelta(hours=24)
    actions = list(AuditEvent.objects.filter(request_id=req.pk).values_list("action", flat=True))
    assert actions == ["request.created", "request.break_glass", "grant.queued"]
    event = AuditEvent.objects.get(action="request.break_glass")
    assert event.actor == world.oncall
    assert (event.after["incident"], event.after["reason"]) == ("INC-4711", REASON)


@pytest.mark.django_db
def test_an_account_of_unknown_environment_is_refused_naming_why_no_rule_covers_it(world):
    """Routing fails closed for an account no rule knows the environment of; break-glass says why, as a request does."""
    from accessrequests.authz.routing import match_rule
    from accessrequests.models import Environment

    # The rule routes by environment (as organizations write them), not by naming the account.
    world.rule.accounts.clear()
    force_update(type(world.rule).objects.filter(pk=world.rule.pk), environments=[Environment.DEVELOPMENT])
    routed = {"account": world.account, "kind": "pipeline", "level": "viewer", "pipelines": [world.pipeline]}
    assert match_rule(**routed) == world.rule  # a development account: routed
    force_update(AwsAccount.objects.filter(pk=world.account.pk), environment=Environment.UNKNOWN, tags={})
    world.account.refresh_from_db()
    assert match_rule(**{**routed, "account": world.account}) is None
    with pytest.raises(
        NotAllowed, match=r"has no environment: tag it `environment=…` in Organizations"
    ) as refused:
        glass(world)
    assert "Break-glass follows the same rules, so there is none for it either." in str(refused.value)
    assert not AccessRequest.objects.exists()


@pytest.mark.django_db
def test_someone_not_named_by_the_rule_is_refused_with_the_reason(world, client):
    with pytest.raises(NotAllowed, match="not named for break-glass under the rule “Sandbox pipelines”"):
        glass(world, world.requester, principal=world.principal)
    assert not AccessRequest.objects.exists()
    # The web form says the same, as a message on the page (never a server error).
    client.force_login(world.requester)
    page = client.get(f"/break-glass/new/?account={world.account.pk}")
    assert page.status_code == 200 and "No approval rule names you for break-glass" in page.content.decode()
    answer = client.post(
        "/break-glass/new/",
        {
            "intent": "submit", "kind": "pipeline", "account": world.account.pk, "principal": world.principal.pk,
            "pipelines": [world.pipeline.pk], "level": "viewer", "justification": REASON, "incident": "INC-1",
            "duration_hours": 1,
        },
    )  # fmt: skip
    assert answer.status_code == 400
    assert "not named for break-glass" in answer.content.decode()
    assert not AccessRequest.objects.exists()


@pytest.mark.django_db
def test_a_named_user_by_name_rather_than_group_may_too_and_the_rule_of_another_account_does_not_count(world):
    world.rule.break_glass_groups.clear()
    with pytest.raises(NotAllowed):
        glass(world)
    world.rule.break_glass_users.add(world.oncall)
    assert glass(world).break_glass


@pytest.mark.django_db
def test_break_glass_is_no_way_around_an_eligibility_rule(world):
    rule = EligibilityRule.objects.create(name="Sandbox is for the platform team", kinds=["pipeline"])
    rule.accounts.add(world.account)
    rule.groups.add(Group.objects.get_or_create(name="platform")[0])
    with pytest.raises(NotAllowed, match=r"not eligible to request .* “Sandbox is for the platform team”"):
        glass(world)
    assert not AccessRequest.objects.exists()
    world.oncall.groups.add(Group.objects.get(name="platform"))
    oncall = User.objects.get(pk=world.oncall.pk)  # a new sign-in reads the new groups
    # An IAM user shared with the requester, whom the rule leaves out: the access would reach them too.
    world.principal.users.add(world.oncall)
    with pytest.raises(NotAllowed, match="would reach requester, who is not eligible"):
        glass(world, oncall, principal=world.principal)
    assert not AccessRequest.objects.exists()
    assert glass(world, oncall).break_glass


@pytest.mark.django_db
def test_the_duration_cap_holds_in_the_service_and_in_the_database(world):
    with pytest.raises(NotAllowed, match="between 1 and 1 hour"):
        glass(world, hours=2)
    with pytest.raises(NotAllowed, match="between 1 and"):
        glass(world, hours=None)
    world.rule.break_glass_max_hours = 2
    world.rule.save()
    req = glass(world, hours=2)
    assert req.grant.expires_at - req.grant.starts_at == timedelta(hours=2)
    with pytest.raises(IntegrityError), transaction.atomic():
        force_update(AccessRequest.objects.filter(pk=req.pk), duration_hours=None)


@pytest.mark.django_db
def test_a_reason_and_an_incident_are_required(world):
    with pytest.raises(NotAllowed, match="Name the incident"):
        glass(world, incident="  ")
    with pytest.raises(NotAllowed, match="the reason is required"):
        glass(world, reason="")
    assert not AccessRequest.objects.exists()


@pytest.mark.django_db
def test_break_glass_is_rate_limited_per_user_in_24_hours(world):
    pipelines = [world.pipeline] + [
        __import__("tests.factories", fromlist=["make_pipeline"]).make_pipeline(world.account, f"p{i}")
        for i in range(4)
    ]
    for pipeline in pipelines[:3]:
        glass(world, pipelines=[pipeline])
    with pytest.raises(NotAllowed, match="used break-glass 3 times in the last 24 hours"):
        glass(world, pipelines=[pipelines[3]])
    # A day later the oldest no longer counts (the clock moved by changing the stored time).
    oldest = AccessRequest.objects.filter(break_glass=True).order_by("pk").first()
    AccessRequest.objects.filter(pk=oldest.pk).update(created_at=timezone.now() - timedelta(hours=25))
    assert glass(world, pipelines=[pipelines[3]]).break_glass


@pytest.mark.django_db
def test_every_approver_admin_and_auditor_hears_at_once_by_email_and_slack(world, settings, webhook):  # noqa: F811
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    world.rule.slack_webhook_url = webhook.url
    world.rule.save()
    req = glass(world)
    assert notify_break_glass(req.pk) > 0
    told = sorted(address for message in mail.outbox for address in message.to)
    assert told == sorted(
        u.email for u in (world.approver, world.approver2, world.admin, world.auditor)
    )  # every approver of the rule, the admins and the auditors; not the one who broke the glass
    assert all("BREAK-GLASS" in m.subject and "INC-4711" in m.body for m in mail.outbox)
    assert len(webhook.posts) == 1 and "BREAK-GLASS" in webhook.texts()[0]
    assert notify_break_glass(req.pk) == 0  # sent once


@pytest.mark.django_db
def test_the_post_review_is_another_approvers_with_a_second_factor_and_not_justified_revokes(world):
    world.oncall.groups.add(Group.objects.get(name="approvers"))
    req = glass(world)
    review = req.break_glass_review
    with pytest.raises(NotAllowed, match="your own break-glass"):
        break_glass_post_review(
            review_id=review.pk, reviewer=world.oncall, second_factor=fresh_factor(world.oncall),
            outcome="justified", comment="fine",
        )  # fmt: skip
    with pytest.raises(NotAllowed, match="Only approvers of the rule"):
        break_glass_post_review(
            review_id=review.pk, reviewer=world.outsider_approver,
            second_factor=fresh_factor(world.outsider_approver), outcome="justified", comment="fine",
        )  # fmt: skip
    with pytest.raises(NotAllowed, match="second factor"):
        break_glass_post_review(
            review_id=review.pk,
            reviewer=world.approver,
            second_factor=None,
            outcome="justified",
            comment="ok",
        )
    with pytest.raises(RequestError, match="comment is required"):
        break_glass_post_review(
            review_id=review.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver),
            outcome="justified", comment=" ",
        )  # fmt: skip
    done = break_glass_post_review(
        review_id=review.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver),
        outcome="not_justified", comment="The deploy was not blocked; a normal request would have done",
    )  # fmt: skip
    assert (done.reviewer, done.outcome) == (world.approver, "not_justified")
    grant = Grant.objects.get(request=req)
    assert grant.status == GrantStatus.REVOKING
    revoke = AuditEvent.objects.get(action="grant.revoke_requested", object_id=str(grant.pk))
    assert revoke.actor == world.approver and revoke.after["break_glass_post_review"] == review.pk
    reviewed = AuditEvent.objects.get(action="request.break_glass_reviewed")
    assert reviewed.after["decision"]["outcome"] == "not_justified"
    with pytest.raises(NotAllowed, match="reviewed already"):
        break_glass_post_review(
            review_id=review.pk, reviewer=world.approver2, second_factor=fresh_factor(world.approver2),
            outcome="justified", comment="late",
        )  # fmt: skip


@pytest.mark.django_db
def test_a_late_post_review_is_an_alert_on_the_dashboard_and_in_healthz_and_recorded_once(
    world, client, settings
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    req = glass(world)
    client.force_login(world.admin)
    assert 'data-testid="post-review-alert"' not in client.get("/dashboard/").content.decode()
    health = json.loads(client.get("/healthz").content)
    assert health["break_glass"] == {"ok": True, "overdue_post_reviews": 0}
    assert post_reviews_overdue() == 0

    # Its time passes (the stored due time moves, nobody sleeps).
    BreakGlassReview.objects.filter(request=req).update(due_at=timezone.now() - timedelta(minutes=1))
    dashboard = client.get("/dashboard/").content.decode()
    assert 'data-testid="post-review-alert"' in dashboard and req.reference in dashboard
    health = json.loads(client.get("/healthz").content)
    assert health["break_glass"]["ok"] is False
    assert health["break_glass"]["overdue_post_reviews"] == 1
    assert health["break_glass"]["requests"] == [req.reference]
    assert post_reviews_overdue() == 1
    assert post_reviews_overdue() == 0  # once
    assert (
        AuditEvent.objects.filter(action="request.break_glass_review_overdue", request_id=req.pk).count() == 1
    )

    break_glass_post_review(
        review_id=req.break_glass_review.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver),
        outcome="justified", comment="Checked the incident timeline",
    )  # fmt: skip
    assert json.loads(client.get("/healthz").content)["break_glass"]["ok"] is True
    assert 'data-testid="post-review-alert"' not in client.get("/dashboard/").content.decode()


@pytest.mark.django_db
def test_the_form_applies_it_and_the_pages_show_it_in_red(world, client):
    client.force_login(world.oncall)
    page = client.get("/break-glass/new/").content.decode()
    assert "with no approver" in page and "Sandbox pipelines" in page
    answer = client.post(
        "/break-glass/new/",
        {
            "intent": "submit", "kind": "pipeline", "account": world.account.pk,
            "principal": world.oncall_principal.pk, "pipelines": [world.pipeline.pk], "level": "viewer",
            "justification": REASON, "incident": "INC-9",
            "duration_hours": 1,
        },
    )  # fmt: skip
    req = AccessRequest.objects.get(break_glass=True)
    assert answer.status_code == 302 and answer["Location"] == f"/requests/{req.pk}/"
    detail = client.get(answer["Location"]).content.decode()
    assert 'data-testid="break-glass-banner"' in detail and "INC-9" in detail
    sign_in_with_mfa(client, world.approver)
    dashboard = client.get("/dashboard/")
    assert dashboard.status_code == 404  # approvers do not have the dashboard; admins and auditors do
    client.force_login(world.auditor)
    assert 'data-testid="break-glass"' in client.get("/dashboard/").content.decode()
    listing = client.get("/break-glass/").content.decode()
    assert req.reference in listing and "table-danger" in listing
    # The approver reviews it on its page.
    sign_in_with_mfa(client, world.approver)
    answer = client.post(
        f"/break-glass/{req.pk}/review/", {"outcome": "justified", "comment": "Incident INC-9"}
    )
    assert answer.status_code == 302
    assert BreakGlassReview.objects.get(request=req).reviewer == world.approver
    # Someone who may not see the request gets 404.
    client.force_login(world.other_requester)
    assert client.get(f"/break-glass/{req.pk}/review/").status_code == 404


@pytest.mark.worker
@pytest.mark.moto
@pytest.mark.django_db(transaction=True)
def test_break_glass_is_applied_by_real_workers_and_every_approver_and_auditor_is_notified(
    demo_world, aws, worker_env, workers, monkeypatch
):
    from tests.provisioning_support import (
        MY_PIPELINE_ARN,
        PortalWorld,
        admin_credentials,
        aws_env,
        iam_client,
        permits,
        use_credentials,
        user_policies,
    )

    world = PortalWorld(demo_world)
    hub = admin_credentials(aws)
    env = aws_env(worker_env, aws)
    use_credentials(monkeypatch, env, hub)
    # mateojackson is linked to the requester only: the access reaches nobody else.
    oncall = world.requester
    world.rule.break_glass_users.add(oncall)
    auditor = make_user("auditor", "auditors")
    approver2 = make_user("approver2", "approvers")
    workers.start(env)

    req = break_glass_submit(
        requester=oncall,
        draft=world.draft("mateojackson", justification=REASON, duration_hours=1),
        incident="INC-77",
    )
    grant = Grant.objects.get(request=req)
    wait_for(
        lambda: Grant.objects.get(pk=grant.pk).status == GrantStatus.ACTIVE, timeout=60, what="the grant"
    )
    iam = iam_client(
        aws, aws_access_key_id=hub["AWS_ACCESS_KEY_ID"], aws_secret_access_key=hub["AWS_SECRET_ACCESS_KEY"]
    )
    assert permits(user_policies(iam, "mateojackson"), "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    assert not req.decisions.exists()

    expected = {u.email for u in (world.approver, approver2, world.admin, auditor)}

    def all_told() -> bool:
        sent = Notification.objects.filter(
            event_key=f"request.break_glass:{req.pk}", status=NotificationStatus.SENT
        ).values_list("recipient", flat=True)
        return set(sent) == expected

    wait_for(all_told, timeout=60, what="every approver, admin and auditor to be emailed")
    # The one who broke the glass is not told of it (they hear that their access is live, as for any grant).
    assert not Notification.objects.filter(
        recipient=oncall.email, event_key__startswith="request.break_glass"
    ).exists()


@pytest.mark.django_db
def test_the_api_files_break_glass_with_the_same_rules(world, client):
    from tests.factories import make_token

    body = {
        "kind": "pipeline", "account": world.account.account_id, "principal_arn": world.principal.external_id,
        "pipelines": ["my-pipeline"], "level": "viewer", "justification": REASON, "duration_hours": 1,
        "break_glass": True, "incident": "INC-88",
    }  # fmt: skip
    _, raw = make_token(world.requester, "cli")
    refused = client.post(
        "/api/v1/requests/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert refused.status_code == 403 and "not named for break-glass" in refused.content.decode()
    body["principal_arn"] = world.oncall_principal.external_id
    _, raw = make_token(world.oncall, "cli")
    too_long = client.post(
        "/api/v1/requests/", {**body, "duration_hours": 3}, content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )  # fmt: skip
    assert too_long.status_code == 403 and "between 1 and 1 hour" in too_long.content.decode()
    made = client.post(
        "/api/v1/requests/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert made.status_code == 201, made.content
    answer = made.json()
    assert (answer["status"], answer["break_glass"], answer["incident"]) == ("approved", True, "INC-88")
    assert AccessRequest.objects.get(pk=answer["id"]).source == "api"


@pytest.mark.django_db
def test_bad_input_gets_a_clear_message_never_a_server_error(world, client):
    client.force_login(world.oncall)
    for data in (
        {"intent": "submit", "account": "abc", "duration_hours": "-5"},
        {"intent": "submit", "account": world.account.pk, "principal": "999999", "duration_hours": "x"},
        {"intent": "submit", "account": world.account.pk, "principal": world.oncall_principal.pk, "level": "viewer",
         "pipelines": [world.pipeline.pk], "justification": REASON, "incident": "I" * 500, "duration_hours": 1},
        {"intent": "submit", "account": world.account.pk, "principal": world.oncall_principal.pk, "level": "god",
         "pipelines": ["0"], "justification": "", "incident": "", "duration_hours": 10**9},
    ):  # fmt: skip
        answer = client.post("/break-glass/new/", data)
        assert answer.status_code == 400, data
        page = answer.content.decode()
        # Listed once at the top, each problem linked to its field
        assert 'data-testid="error-summary"' in page and "fix what is listed, then submit again" in page
        assert re.search(r'<li><a class="alert-link" href="#id_\w+">', page), data
    assert client.get("/break-glass/new/?account=not-a-number").status_code == 200
    req = glass(world)
    sign_in_with_mfa(client, world.approver)
    answer = client.post(f"/break-glass/{req.pk}/review/", {"outcome": "maybe", "comment": ""})
    assert answer.status_code == 400
    assert client.get("/break-glass/999999999999999999999/review/").status_code == 404
    assert not AccessRequest.objects.exclude(pk=req.pk).exists()


@pytest.mark.django_db
def test_the_rules_slack_channel_hears_of_it_through_the_slack_app_too(world, settings):
    from tests.slack_support import BOT_TOKEN, FakeSlack

    slack = FakeSlack()
    try:
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        settings.SLACK_BOT_TOKEN = BOT_TOKEN
        settings.SLACK_API_URL = slack.url
        world.rule.slack_channel = "C0INCIDENTS"
        world.rule.save()
        req = glass(world)
        notify_break_glass(req.pk)
        posts = slack.made("chat.postMessage")
        assert len(posts) == 1 and posts[0]["channel"] == "C0INCIDENTS" and "BREAK-GLASS" in posts[0]["text"]
        notify_break_glass(req.pk)
        assert len(slack.made("chat.postMessage")) == 1
    finally:
        slack.close()


@pytest.mark.django_db(transaction=True)
def test_break_glass_at_the_same_moment_cannot_pass_the_daily_limit_together(settings):
    from accessrequests.models import ApprovalRule
    from tests.factories import make_pipeline
    from tests.test_workflow import _race

    settings.GATEHOUSE_BREAK_GLASS_PER_DAY = 2
    world = World()
    oncall = make_user("oncall", "requesters")
    own = make_principal(world.account, "oncall", users=[oncall])
    ApprovalRule.objects.get(pk=world.rule.pk).break_glass_users.add(oncall)
    pipelines = [make_pipeline(world.account, f"p{i}") for i in range(4)]
    results = _race(*(lambda p=p: glass(world, oncall, principal=own, pipelines=[p]) for p in pipelines))
    assert sum(isinstance(r, AccessRequest) for r in results) == 2, results
    assert all(isinstance(r, AccessRequest | NotAllowed) for r in results), results
    assert AccessRequest.objects.filter(break_glass=True).count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_post_review_submitted_twice_at_once_is_recorded_once(world):
    from tests.test_workflow import _race

    req = glass(world)
    review = req.break_glass_review

    def review_it(user):
        return lambda: break_glass_post_review(
            review_id=review.pk, reviewer=user, second_factor=fresh_factor(user), outcome="justified",
            comment=f"checked by {user.username}",
        )  # fmt: skip

    results = _race(review_it(world.approver), review_it(world.approver2))
    assert sum(isinstance(r, BreakGlassReview) for r in results) == 1, results
    assert AuditEvent.objects.filter(action="request.break_glass_reviewed").count() == 1
