"""Access reviews on moto: the campaign takes long-lived grants, the evidence of use comes from IAM's last-accessed
data (served by a stand-in at the HTTP boundary, since moto does not implement it), revoke removes the access in
AWS, keep records who and why, the deadline follows its setting, and the export verifies offline."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone

from accessrequests.authz.permissions import NotAllowed
from accessrequests.models import (
    AuditEvent,
    CampaignStatus,
    EvidenceStatus,
    Grant,
    GrantStatus,
    ItemDecision,
    ReviewCampaign,
    ReviewItem,
)
from accessrequests.reviews import campaigns as reviews
from accessrequests.reviews.campaigns import review_item_decide
from accessrequests.reviews.evidence import review_item_gather_evidence
from tests.conftest import make_user, sign_in_with_mfa, verify_export
from tests.factories import force_update, fresh_factor
from tests.last_accessed_standin import LastAccessedStandIn, Use
from tests.provisioning_support import (
    MY_PIPELINE_ARN,
    AwsProxy,
    PortalWorld,
    iam_client,
    permits,
    reconcile,
    user_policies,
)

pytestmark = [pytest.mark.moto, pytest.mark.django_db]
MATEO = "arn:aws:iam::123456789012:user/mateojackson"
MARY = "arn:aws:iam::123456789012:user/marymajor"


@pytest.fixture
def standin(aws, settings, monkeypatch):
    """IAM's last-accessed data from the stand-in, everything else from moto, through one proxy the portal uses."""
    from accessrequests.aws.client import clear_credentials_cache

    data = LastAccessedStandIn(polls_before_done=1)
    proxy = AwsProxy(aws, answer=data.answers())
    settings.AWS_ENDPOINT_URL = proxy.url
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    clear_credentials_cache()
    data.proxy = proxy  # type: ignore[attr-defined]
    yield data
    proxy.close()


@pytest.fixture
def world(demo_world, settings):
    settings.GATEHOUSE_REVIEW_MIN_AGE_DAYS = 30
    settings.GATEHOUSE_REVIEW_UNUSED_DAYS = 90
    settings.GATEHOUSE_REVIEW_DEADLINE_DAYS = 14
    settings.GATEHOUSE_REVIEW_UNREVIEWED = "remind"
    world = PortalWorld(demo_world)
    world.rule.allow_permanent = True
    world.rule.save()
    return world


def _old_grant(world, principal: str, days: int = 200, **fields) -> Grant:
    """A grant applied through the real workflow and provisioning, then moved ``days`` into the past."""
    grant = world.approve(principal, duration_hours=None, **fields)
    reconcile(grant)
    then = timezone.now() - timedelta(days=days)
    force_update(Grant.objects.filter(pk=grant.pk), starts_at=then, applied_at=then)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE
    return grant


@pytest.fixture
def campaign_world(world, standin):
    now = timezone.now()
    world.mateo = _old_grant(world, "mateojackson")
    world.mary = _old_grant(world, "marymajor")
    # A grant of four hours, applied just now: not long-lived, not in the campaign.
    world.young = world.approve("mateojackson", actions=["codepipeline:ListPipelines"], duration_hours=4)
    reconcile(world.young)
    standin.uses[MATEO] = [Use("codepipeline:GetPipeline", now - timedelta(days=120))]
    standin.uses[MARY] = [Use("codepipeline:GetPipeline", now - timedelta(days=1))]
    standin.key_uses[world.seeded["access_keys"]["mateojackson"]["access_key_id"]] = now - timedelta(days=120)
    world.standin = standin
    return world


def _items(campaign) -> dict[str, ReviewItem]:
    return {item.grant.principal.name: item for item in campaign.items.select_related("grant__principal")}


def _gather(campaign) -> None:
    """What the evidence task does for each item: the first answer is IN_PROGRESS, the next COMPLETED."""
    for item in campaign.items.all():
        status = review_item_gather_evidence(item_id=item.pk)
        assert status == EvidenceStatus.IN_PROGRESS, ReviewItem.objects.get(pk=item.pk).evidence
    for item in campaign.items.all():
        assert review_item_gather_evidence(item_id=item.pk) == EvidenceStatus.COMPLETED


def test_a_campaign_reviews_old_grants_with_iam_evidence_revokes_in_aws_keeps_with_a_reason_and_exports(
    campaign_world, client, tmp_path
):
    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    items = _items(campaign)
    assert set(items) == {"mateojackson", "marymajor"}  # the four-hour grant is not in it
    assert {i.grant_id for i in items.values()} == {world.mateo.pk, world.mary.pk}

    _gather(campaign)
    assert world.standin.proxy.calls["GenerateServiceLastAccessedDetails"] == 2
    assert world.standin.proxy.calls["GetServiceLastAccessedDetails"] == 4
    mateo, mary = (ReviewItem.objects.get(pk=items[n].pk) for n in ("mateojackson", "marymajor"))
    now = timezone.now()
    assert (now - mateo.last_used_at).days == 120 and mateo.is_unused(now)
    assert (now - mary.last_used_at).days in (0, 1) and not mary.is_unused(now)
    assert mateo.evidence["access_keys"][0]["last_used"]

    # The reviewer's page shows both, with the flag on the unused one only.
    sign_in_with_mfa(client, world.approver)
    page = client.get(f"/access-reviews/{campaign.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('data-testid="item"') == 2
    assert html.count("Not used in 90 days: revoke suggested") == 1
    mateo_card = html[html.index('data-principal="mateojackson"') :]
    mateo_card = mateo_card[: mateo_card.index('data-testid="evidence"') + 400]
    assert "revoke suggested" in mateo_card and "120 days ago" in mateo_card
    assert "1 day ago" in html or "today" in html

    iam = iam_client(world.standin.proxy.url)
    assert permits(user_policies(iam, "mateojackson"), "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    answer = client.post(
        f"/access-reviews/items/{mateo.pk}/",
        {f"item{mateo.pk}-decision": "revoke", f"item{mateo.pk}-reason": "Not used since spring"},
    )
    assert answer.status_code == 302
    world.mateo.refresh_from_db()
    assert world.mateo.status == GrantStatus.REVOKING
    reconcile(world.mateo)
    world.mateo.refresh_from_db()
    assert world.mateo.status == GrantStatus.REVOKED
    # Read back from AWS: the access is gone, and the four-hour grant of the same user is untouched.
    documents = user_policies(iam, "mateojackson")
    assert not permits(documents, "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    assert permits(documents, "codepipeline:ListPipelines", "*")

    kept = review_item_decide(
        item_id=mary.pk,
        reviewer=world.approver,
        second_factor=fresh_factor(world.approver),
        decision="keep",
        reason="Used daily for releases",
    )
    assert (kept.decision, kept.decided_by, kept.reason) == (
        "keep",
        world.approver,
        "Used daily for releases",
    )
    event = AuditEvent.objects.get(action="review.item_kept")
    assert event.actor == world.approver and event.after["decision"]["comment"] == "Used daily for releases"
    assert event.after["decision"]["second_factor"]["method"] == "totp"

    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CLOSED
    closing = AuditEvent.objects.get(action="review.campaign_closed")
    assert closing.after["outcomes"]["keep"] == 1 and closing.after["outcomes"]["revoke"] == 1

    # The export and its manifest, as an auditor downloads them, verify offline; an edited row does not.
    auditor = make_user("auditor", "auditors")
    client.force_login(auditor)
    export = client.get(f"/access-reviews/{campaign.pk}/export.csv")
    assert export.status_code == 200
    path = tmp_path / "campaign.csv"
    path.write_bytes(b"".join(export.streaming_content))
    manifest = client.get(f"/access-reviews/{campaign.pk}/export.csv?manifest=1")
    Path(str(path) + ".manifest.json").write_bytes(manifest.content)
    rows = path.read_text().splitlines()
    assert len(rows) - 1 == len(closing.after["event_seqs"]) + 1
    assert all("review_campaign" in row for row in rows[1:])
    checked = verify_export(path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith("OK:")
    path.write_text(path.read_text().replace("Used daily for releases", "Used weekly for releases"))
    assert verify_export(path).returncode == 1


def test_an_unreviewed_item_past_the_deadline_is_revoked_in_aws_when_the_setting_says_revoke(
    campaign_world, settings
):
    world = campaign_world
    settings.GATEHOUSE_REVIEW_UNREVIEWED = "revoke"
    campaign = reviews.campaign_start(actor=world.admin)
    mary = _items(campaign)["marymajor"]
    review_item_decide(
        item_id=mary.pk,
        reviewer=world.approver,
        second_factor=fresh_factor(world.approver),
        decision="keep",
        reason="Still needed",
    )
    assert reviews.campaigns_tick()["revoked"] == 0  # before the deadline nothing is revoked
    past = timezone.now() - timedelta(minutes=1)
    ReviewCampaign.objects.filter(pk=campaign.pk).update(started_at=past - timedelta(days=14), deadline=past)

    assert reviews.campaigns_tick()["revoked"] == 1
    item = ReviewItem.objects.get(campaign=campaign, grant=world.mateo)
    assert item.decision == ItemDecision.REVOKED_UNREVIEWED and item.decided_by is None
    reconcile(world.mateo)
    world.mateo.refresh_from_db()
    assert world.mateo.status == GrantStatus.REVOKED
    assert not permits(
        user_policies(iam_client(world.standin.proxy.url), "mateojackson"),
        "codepipeline:GetPipeline",
        MY_PIPELINE_ARN,
    )
    world.mary.refresh_from_db()
    assert world.mary.status == GrantStatus.ACTIVE  # kept stays
    assert AuditEvent.objects.filter(action="review.item_revoked_unreviewed", actor__isnull=True).count() == 1
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CLOSED
    assert reviews.campaigns_tick()["revoked"] == 0  # idempotent


def test_an_unreviewed_item_past_the_deadline_is_reminded_with_backoff_when_the_setting_says_remind(
    campaign_world, settings
):
    world = campaign_world
    settings.GATEHOUSE_REVIEW_REMINDER_HOURS = 24
    campaign = reviews.campaign_start(actor=world.admin)
    assert reviews.campaigns_tick()["reminded"] == 0  # the first reminder waits a day
    past = timezone.now() - timedelta(minutes=1)
    ReviewCampaign.objects.filter(pk=campaign.pk).update(
        started_at=past - timedelta(days=14), deadline=past, next_reminder_at=past
    )
    assert reviews.campaigns_tick() | {"evidence": 0} == {
        "started": 0, "evidence": 0, "ended": 0, "reminded": 1, "revoked": 0, "closed": 0
    }  # fmt: skip
    campaign.refresh_from_db()
    assert campaign.reminders_sent == 1
    gap = campaign.next_reminder_at - timezone.now()
    assert timedelta(hours=47) < gap <= timedelta(hours=48)  # the second gap is twice the first
    assert reviews.campaigns_tick()["reminded"] == 0  # not again before then
    assert Grant.objects.get(pk=world.mateo.pk).status == GrantStatus.ACTIVE
    assert ReviewItem.objects.filter(campaign=campaign, decision="").count() == 2
    reminder = AuditEvent.objects.get(action="review.reminders_sent")
    assert reminder.after["overdue"] is True


def test_the_reviewer_is_an_approver_of_the_rule_never_the_requester_nor_a_recipient(campaign_world):
    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    item = _items(campaign)["mateojackson"]
    factor_of = fresh_factor

    # The requester of the access, even as an approver of the rule.
    world.requester.groups.add(world.approver.groups.first())
    with pytest.raises(NotAllowed, match="your own access"):
        review_item_decide(
            item_id=item.pk, reviewer=world.requester, second_factor=factor_of(world.requester),
            decision="keep", reason="mine",
        )  # fmt: skip
    # Someone the access reaches: linked to the principal.
    reached = make_user("reached", "approvers")
    item.grant.principal.users.add(reached)
    with pytest.raises(NotAllowed, match="reaches you"):
        review_item_decide(
            item_id=item.pk, reviewer=reached, second_factor=factor_of(reached), decision="keep", reason="x"
        )
    # An approver of another rule.
    other = make_user("release", "release-managers")
    with pytest.raises(NotAllowed, match="Only approvers of the rule"):
        review_item_decide(
            item_id=item.pk, reviewer=other, second_factor=factor_of(other), decision="keep", reason="x"
        )
    # An auditor changes nothing.
    auditor = make_user("auditor", "auditors", "approvers")
    with pytest.raises(NotAllowed, match="read-only"):
        review_item_decide(
            item_id=item.pk, reviewer=auditor, second_factor=factor_of(auditor), decision="keep", reason="x"
        )
    # No second factor, or no reason.
    with pytest.raises(NotAllowed, match="second factor"):
        review_item_decide(
            item_id=item.pk, reviewer=world.approver, second_factor=None, decision="keep", reason="x"
        )
    with pytest.raises(reviews.ReviewError, match="reason is required"):
        review_item_decide(
            item_id=item.pk, reviewer=world.approver, second_factor=factor_of(world.approver), decision="keep",
            reason="  ",
        )  # fmt: skip
    # Nobody revokes through the review path without being its reviewer.
    from accessrequests.provisioning import engine as provisioning

    with pytest.raises(NotAllowed):
        provisioning.grant_revoke(grant_id=item.grant_id, actor=other, review_item=item)
    with pytest.raises(NotAllowed, match=r"not past its deadline|keeps reminding"):
        provisioning.grant_revoke(grant_id=item.grant_id, actor=None, review_item=item)
    assert Grant.objects.get(pk=item.grant_id).status == GrantStatus.ACTIVE
    assert ReviewItem.objects.get(pk=item.pk).decision == ""

    review_item_decide(
        item_id=item.pk, reviewer=world.approver, second_factor=factor_of(world.approver), decision="keep",
        reason="Needed",
    )  # fmt: skip
    with pytest.raises(NotAllowed, match="already reviewed"):
        review_item_decide(
            item_id=item.pk, reviewer=world.approver, second_factor=factor_of(world.approver), decision="revoke",
            reason="changed my mind",
        )  # fmt: skip


def test_outsiders_get_404_and_requesters_cannot_start_or_see_a_campaign(campaign_world, client):
    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    item = _items(campaign)["mateojackson"]
    with pytest.raises(NotAllowed, match="Only an admin"):
        reviews.campaign_start(actor=world.approver)
    client.force_login(world.requester)
    assert client.get("/access-reviews/").status_code == 404
    assert client.get(f"/access-reviews/{campaign.pk}/").status_code == 404
    assert client.post("/access-reviews/start/").status_code == 404
    answer = client.post(f"/access-reviews/items/{item.pk}/", {f"item{item.pk}-decision": "revoke"})
    assert answer.status_code == 404
    # An approver of another rule only sees the campaign, none of this rule's items; posting to one is a 404.
    client.force_login(make_user("release", "release-managers", "approvers"))
    world.rule.approver_groups.set([])
    world.rule.approver_users.set([world.approver])
    assert client.get(f"/access-reviews/{campaign.pk}/").content.decode().count('data-testid="item"') == 0
    assert (
        client.post(
            f"/access-reviews/items/{item.pk}/",
            {f"item{item.pk}-decision": "keep", f"item{item.pk}-reason": "x"},
        ).status_code
        == 404
    )
    assert client.get(f"/access-reviews/{campaign.pk}/export.csv").status_code == 404  # auditors and admins
    assert client.get("/access-reviews/abc/").status_code == 404


def test_a_missing_reason_on_the_page_is_a_clear_message_not_an_error(campaign_world, client):
    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    item = _items(campaign)["mateojackson"]
    sign_in_with_mfa(client, world.approver)
    answer = client.post(
        f"/access-reviews/items/{item.pk}/", {f"item{item.pk}-decision": "revoke"}, follow=True
    )
    assert answer.status_code == 200
    assert "the reason is required" in answer.content.decode()
    assert Grant.objects.get(pk=item.grant_id).status == GrantStatus.ACTIVE


def test_one_campaign_at_a_time_and_the_schedule_starts_one_when_due(campaign_world, settings):
    world = campaign_world
    settings.GATEHOUSE_REVIEW_EVERY_DAYS = 90
    assert reviews.campaigns_tick()["started"] == 1
    with pytest.raises(reviews.ReviewError, match="still open"):
        reviews.campaign_start(actor=world.admin)
    first = ReviewCampaign.objects.get()
    assert first.started_by is None and first.items.count() == 2
    assert AuditEvent.objects.get(action="review.campaign_started").actor_label == "schedule"


def test_the_evidence_pack_holds_the_campaign_its_items_and_its_verifiable_events(campaign_world, tmp_path):
    import json

    from django.core.management import call_command

    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    _gather(campaign)
    for name, decision in (("mateojackson", "revoke"), ("marymajor", "keep")):
        review_item_decide(
            item_id=_items(campaign)[name].pk, reviewer=world.approver,
            second_factor=fresh_factor(world.approver), decision=decision, reason=f"{decision} after review",
        )  # fmt: skip
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d")
    until = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d")
    folder = tmp_path / "pack"
    call_command("evidence_pack", "--since", since, "--until", until, "--output", str(folder))
    ref = campaign.reference
    items = (folder / "access-reviews" / f"{ref}-items.csv").read_text()
    assert "revoke after review" in items and "keep after review" in items and "yes" in items
    checked = verify_export(folder / "access-reviews" / f"{ref}-events.csv")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    verification = json.loads((folder / "verification.json").read_text())
    assert verification["access_reviews"][0]["ok"] is True
    assert (
        f"access-reviews/{ref}-events.csv.manifest.json"
        in json.loads((folder / "pack.json").read_text())["files"]
    )
    assert (folder / "break-glass.csv").exists()


def test_reviewers_hear_of_their_items_and_are_reminded_but_nobody_the_access_reaches(
    campaign_world, settings
):
    from django.core import mail

    from accessrequests.notify.send import notify_review_reminder, notify_review_started

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    world = campaign_world
    approver2 = make_user("approver2", "approvers")
    reached = make_user("reached", "approvers")
    world.principal("mateojackson").users.add(reached)  # may review marymajor's access, not mateojackson's
    campaign = reviews.campaign_start(actor=world.admin)
    assert notify_review_started(campaign.pk) == 3
    told = {m.to[0]: m for m in mail.outbox}
    assert set(told) == {"approver@example.com", "approver2@example.com", "reached@example.com"}
    assert (
        "2 items" in told["approver@example.com"].subject and "1 item " in told["reached@example.com"].subject
    )
    assert "requester@example.com" not in told  # the requester of both is no reviewer
    mail.outbox.clear()
    assert notify_review_reminder(campaign.pk, 1) == 3
    assert notify_review_reminder(campaign.pk, 1) == 0  # once per round
    assert all("Reminder" in m.subject for m in mail.outbox)
    reminded = {m.to[0]: m for m in mail.outbox}
    assert reminded["reached@example.com"].subject.endswith(": 1 access review item waits for you")
    assert reminded["approver@example.com"].subject.endswith(": 2 access review items wait for you")
    assert approver2  # named so the reader sees who the third reviewer is


def test_an_admin_starts_a_review_from_its_page(campaign_world, client):
    world = campaign_world
    client.force_login(world.admin)
    page = client.get("/access-reviews/").content.decode()
    assert "Start an access review" in page
    answer = client.post("/access-reviews/start/")
    campaign = ReviewCampaign.objects.get()
    assert answer.status_code == 302 and answer["Location"] == f"/access-reviews/{campaign.pk}/"
    again = client.post("/access-reviews/start/", follow=True)
    assert again.status_code == 200 and "still open" in again.content.decode()
    dashboard = client.get("/dashboard/").content.decode()
    assert 'data-testid="open-review"' in dashboard and "2 of 2 items still to review" in dashboard
    client.force_login(world.approver)
    assert client.post("/access-reviews/start/").status_code == 404


def test_a_review_of_one_item_is_announced_as_one_item(world, standin, client):
    _old_grant(world, "mateojackson")
    client.force_login(world.admin)
    page = client.post("/access-reviews/start/", follow=True).content.decode()
    campaign = ReviewCampaign.objects.get()
    assert f"{campaign.reference} started with 1 item; reviewers are told by email." in page


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_gathers_the_evidence_asking_iam_again_until_the_job_is_completed(
    world, standin, worker_env, workers
):
    from tests.conftest import wait_for
    from tests.provisioning_support import aws_env

    mateo = _old_grant(world, "mateojackson")
    standin.uses[MATEO] = [Use("codepipeline:GetPipeline", timezone.now() - timedelta(days=3))]
    workers.start(aws_env(worker_env, standin.proxy.url))
    campaign = reviews.campaign_start(actor=world.admin)
    item = campaign.items.get(grant=mateo)

    def gathered():
        return ReviewItem.objects.get(pk=item.pk).evidence_status == EvidenceStatus.COMPLETED

    wait_for(gathered, timeout=90, what="the worker to read the last-accessed report")
    item.refresh_from_db()
    assert (timezone.now() - item.last_used_at).days == 3 and not item.is_unused(timezone.now())
    assert standin.proxy.calls["GenerateServiceLastAccessedDetails"] == 1  # one job, asked again until done
    assert standin.proxy.calls["GetServiceLastAccessedDetails"] == 2
    assert AuditEvent.objects.filter(action="review.evidence_read").count() == 1


def test_an_item_whose_access_ended_meanwhile_closes_as_ended_and_the_campaign_with_it(campaign_world):
    from accessrequests.provisioning import engine as provisioning

    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    review_item_decide(
        item_id=_items(campaign)["marymajor"].pk, reviewer=world.approver,
        second_factor=fresh_factor(world.approver), decision="keep", reason="Still needed",
    )  # fmt: skip
    provisioning.grant_revoke(grant_id=world.mateo.pk, actor=world.requester)
    reconcile(world.mateo)
    counts = reviews.campaigns_tick()
    assert (counts["ended"], counts["closed"]) == (1, 1)
    item = ReviewItem.objects.get(campaign=campaign, grant=world.mateo)
    assert item.decision == ItemDecision.ENDED and item.decided_by is None
    assert ReviewCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.CLOSED


def test_the_api_lists_items_and_keeps_or_revokes_one_with_the_authenticator_code(campaign_world, client):
    from tests.conftest import current_code, enable_totp
    from tests.factories import make_token

    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    _gather(campaign)
    enable_totp(world.approver)
    _, raw = make_token(world.approver, "reviews")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    listed = client.get(f"/api/v1/access-reviews/{campaign.pk}/items/", **auth).json()
    by_arn = {row["principal_arn"]: row for row in listed}
    assert by_arn[MATEO]["unused"] is True and by_arn[MARY]["unused"] is False
    item = by_arn[MATEO]["id"]
    url = f"/api/v1/access-reviews/items/{item}/decide/"
    without = client.post(
        url, {"decision": "revoke", "reason": "unused"}, content_type="application/json", **auth
    )
    assert without.status_code == 403 and "second factor" in without.json()["error"]
    done = client.post(
        url, {"decision": "revoke", "reason": "unused", "otp": current_code(world.approver)},
        content_type="application/json", **auth,
    )  # fmt: skip
    assert done.status_code == 200, done.content
    assert (done.json()["decision"], done.json()["reviewer"]) == ("revoke", "approver")
    assert Grant.objects.get(pk=world.mateo.pk).status == GrantStatus.REVOKING
    _, raw = make_token(world.requester, "mine")
    assert (
        client.get(
            f"/api/v1/access-reviews/{campaign.pk}/items/", HTTP_AUTHORIZATION=f"Bearer {raw}"
        ).status_code
        == 404
    )


@pytest.mark.django_db(transaction=True)
def test_two_reviewers_deciding_one_item_at_once_record_one_decision(world, standin):
    from tests.test_workflow import _race

    mateo = _old_grant(world, "mateojackson")
    approver2 = make_user("approver2", "approvers")
    campaign = reviews.campaign_start(actor=world.admin)
    item = campaign.items.get(grant=mateo)

    def decide(user, decision):
        return lambda: review_item_decide(
            item_id=item.pk,
            reviewer=user,
            second_factor=fresh_factor(user),
            decision=decision,
            reason=decision,
        )

    results = _race(decide(world.approver, "keep"), decide(approver2, "revoke"))
    assert sum(isinstance(r, ReviewItem) for r in results) == 1, results
    decided = ReviewItem.objects.get(pk=item.pk)
    assert AuditEvent.objects.filter(action__in=["review.item_kept", "review.item_revoked"]).count() == 1
    revoked = Grant.objects.get(pk=mateo.pk).status == GrantStatus.REVOKING
    assert revoked == (decided.decision == "revoke")


def test_a_lost_iam_job_is_a_failure_shown_on_the_item_and_the_next_try_starts_a_new_job(campaign_world):
    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    item = _items(campaign)["mateojackson"]
    assert review_item_gather_evidence(item_id=item.pk) == EvidenceStatus.IN_PROGRESS
    world.standin.jobs.clear()  # IAM no longer knows the job
    assert review_item_gather_evidence(item_id=item.pk) == EvidenceStatus.FAILED
    failed = ReviewItem.objects.get(pk=item.pk)
    assert "NoSuchEntity" in failed.evidence["error"] and failed.evidence_job_id == ""
    assert review_item_gather_evidence(item_id=item.pk) == EvidenceStatus.IN_PROGRESS
    assert review_item_gather_evidence(item_id=item.pk) == EvidenceStatus.COMPLETED
    assert world.standin.proxy.calls["GenerateServiceLastAccessedDetails"] == 2


def test_a_keep_carried_through_the_step_up_is_recorded_with_its_reason_once(campaign_world, client):
    from tests.conftest import current_code
    from tests.test_step_up import _age_second_factor

    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    item = _items(campaign)["marymajor"]
    sign_in_with_mfa(client, world.approver)
    _age_second_factor(client, minutes=6)
    asked = client.post(
        f"/access-reviews/items/{item.pk}/",
        {f"item{item.pk}-decision": "keep", f"item{item.pk}-reason": "On call"},
    )
    assert (
        asked["Location"].startswith(reverse("mfa_reauthenticate"))
        and not ReviewItem.objects.get(pk=item.pk).decision
    )
    done = client.post(asked["Location"], {"code": current_code(world.approver)})
    assert done.status_code == 302 and done["Location"] == f"/access-reviews/{campaign.pk}/"
    kept = ReviewItem.objects.get(pk=item.pk)
    assert (kept.decision, kept.decided_by, kept.reason) == ("keep", world.approver, "On call")
    assert AuditEvent.objects.filter(action="review.item_kept").count() == 1


# --- evidence that cannot be read ----------------------------------------------------------------------------


@pytest.fixture
def moto_only_world(world):
    """Long-lived grants on a bare moto server, which does not implement IAM's last-accessed data: every
    evidence read fails, as it did in the demo before it had a stand-in."""
    world.mateo = _old_grant(world, "mateojackson")
    world.mary = _old_grant(world, "marymajor")
    return world


def test_evidence_iam_cannot_give_is_a_failure_on_the_item_with_its_reason_and_a_retry_never_preparing(
    moto_only_world, client
):
    world = moto_only_world
    campaign = reviews.campaign_start(actor=world.admin)
    item = _items(campaign)["mateojackson"]
    # moto answers GenerateServiceLastAccessedDetails with an HTML error page: a failure, recorded, not a crash.
    assert review_item_gather_evidence(item_id=item.pk) == EvidenceStatus.FAILED
    failed = ReviewItem.objects.get(pk=item.pk)
    assert failed.evidence_attempts == 1 and failed.evidence_next_at > timezone.now()
    assert (
        "GenerateServiceLastAccessedDetails" in failed.evidence["error"]
        or "parse" in failed.evidence["error"]
    )
    event = AuditEvent.objects.get(action="review.evidence_failed")
    assert event.after["error"] == failed.evidence["error"] and event.after["attempt"] == 1

    sign_in_with_mfa(client, world.approver)
    html = client.get(f"/access-reviews/{campaign.pk}/?item={item.pk}").content.decode()
    card = html[html.index(f'id="item-{item.pk}"') :]
    assert "Usage evidence could not be read: " + failed.evidence["error"][:40] in card
    assert f'action="/access-reviews/items/{item.pk}/evidence/retry/"' in card and ">Retry<" in card
    assert "preparing" not in html

    # Retry (a POST by a reviewer): asked again at once, audited, the error gone from the item.
    retried = client.post(f"/access-reviews/items/{item.pk}/evidence/retry/", follow=True)
    assert "asked IAM again" in retried.content.decode()
    again = ReviewItem.objects.get(pk=item.pk)
    assert (again.evidence_status, again.evidence_attempts, again.evidence_next_at) == ("pending", 0, None)
    retry = AuditEvent.objects.get(action="review.evidence_retry_requested")
    assert retry.actor == world.approver and retry.after["previous_error"] == failed.evidence["error"]


def test_evidence_retry_is_for_reviewers_and_admins_of_a_failed_item_of_an_open_review(
    moto_only_world, client
):
    from accessrequests.reviews.campaigns import review_item_evidence_retry

    world = moto_only_world
    campaign = reviews.campaign_start(actor=world.admin)
    items = _items(campaign)
    item = items["mateojackson"]
    with pytest.raises(NotAllowed, match="nothing to retry"):
        review_item_evidence_retry(item_id=item.pk, actor=world.admin)  # not failed (yet)
    review_item_gather_evidence(item_id=item.pk)
    for outsider in (
        world.requester,
        make_user("reader", "auditors"),
        make_user("other", "release-managers"),
    ):
        with pytest.raises(NotAllowed):
            review_item_evidence_retry(item_id=item.pk, actor=outsider)
    client.force_login(world.requester)
    assert client.post(f"/access-reviews/items/{item.pk}/evidence/retry/").status_code == 404
    assert client.get(f"/access-reviews/items/{item.pk}/evidence/retry/").status_code in (404, 405)
    assert ReviewItem.objects.get(pk=item.pk).evidence_status == EvidenceStatus.FAILED
    # Over the API too: the reason in the item, and Retry with a token that may decide.
    from tests.factories import make_token

    _, mine = make_token(world.requester, "mine")
    url = f"/api/v1/access-reviews/items/{item.pk}/evidence/retry/"
    refused = client.post(url, HTTP_AUTHORIZATION=f"Bearer {mine}")  # a requester's token cannot decide
    assert refused.status_code == 403 and "decide" in refused.json()["error"]
    _, raw = make_token(world.approver, "reviews")
    listed = client.get(
        f"/api/v1/access-reviews/{campaign.pk}/items/", HTTP_AUTHORIZATION=f"Bearer {raw}"
    ).json()
    assert {r["id"]: r for r in listed}[item.pk]["evidence_error"] == ReviewItem.objects.get(
        pk=item.pk
    ).evidence["error"]
    answer = client.post(url, HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert answer.status_code == 200 and answer.json()["evidence_status"] == "pending"
    again = client.post(
        url, HTTP_AUTHORIZATION=f"Bearer {raw}"
    )  # nothing failed now: refused, with the reason
    assert again.status_code == 403 and "nothing to retry" in again.json()["error"]
    review_item_gather_evidence(item_id=item.pk)
    assert review_item_evidence_retry(item_id=item.pk, actor=world.admin).evidence_status == "pending"
    # Once the item is decided the review no longer needs its evidence: nothing to retry.
    review_item_gather_evidence(item_id=item.pk)
    review_item_decide(
        item_id=item.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver),
        decision="keep", reason="Needed",
    )  # fmt: skip
    with pytest.raises(NotAllowed, match="already reviewed"):
        review_item_evidence_retry(item_id=item.pk, actor=world.admin)


def test_failed_evidence_is_asked_again_with_growing_gaps_and_then_left_for_someone_to_retry(
    moto_only_world, settings
):
    from accessrequests.reviews.evidence import EVIDENCE_MAX_ATTEMPTS

    world = moto_only_world
    campaign = reviews.campaign_start(actor=world.admin)
    item = _items(campaign)["mateojackson"]
    reviews.review_item_decide(
        item_id=_items(campaign)["marymajor"].pk, reviewer=world.approver,
        second_factor=fresh_factor(world.approver), decision="keep", reason="Needed",
    )  # fmt: skip
    gaps = []
    for attempt in range(1, EVIDENCE_MAX_ATTEMPTS + 1):
        now = timezone.now()
        assert review_item_gather_evidence(item_id=item.pk) == EvidenceStatus.FAILED
        failed = ReviewItem.objects.get(pk=item.pk)
        assert failed.evidence_attempts == attempt
        # Not before its time ...
        assert reviews.campaigns_tick(now=now)["evidence"] == 0
        if attempt < EVIDENCE_MAX_ATTEMPTS:
            gaps.append(failed.evidence_next_at - now)
            # ... and at its time, once.
            assert reviews.campaigns_tick(now=failed.evidence_next_at + timedelta(seconds=1))["evidence"] == 1
        else:
            assert failed.evidence_next_at is None  # stopped: the page says so and offers Retry
            assert reviews.campaigns_tick(now=now + timedelta(days=30))["evidence"] == 0
    assert gaps == sorted(gaps) and gaps[-1] > gaps[0]
    assert AuditEvent.objects.filter(action="review.evidence_failed").count() == EVIDENCE_MAX_ATTEMPTS


def test_an_item_decided_before_its_evidence_arrived_never_says_iam_is_preparing(campaign_world, client):
    world = campaign_world
    campaign = reviews.campaign_start(actor=world.admin)
    for name, item in _items(campaign).items():
        review_item_decide(
            item_id=item.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver),
            decision="keep", reason=f"{name} still needs it",
        )  # fmt: skip
    assert ReviewCampaign.objects.get(pk=campaign.pk).status == CampaignStatus.CLOSED
    sign_in_with_mfa(client, world.approver)
    html = client.get(f"/access-reviews/{campaign.pk}/").content.decode()
    assert "preparing" not in html
    assert html.count("Usage was not read before this access was reviewed") == 2


def test_an_iam_job_that_never_finishes_becomes_a_failure_after_an_hour(campaign_world):
    world = campaign_world
    world.standin.polls_before_done = 10_000  # IAM keeps saying IN_PROGRESS
    campaign = reviews.campaign_start(actor=world.admin)
    item = _items(campaign)["mateojackson"]
    assert review_item_gather_evidence(item_id=item.pk) == EvidenceStatus.IN_PROGRESS
    ReviewItem.objects.filter(pk=item.pk).update(evidence_asked_at=timezone.now() - timedelta(minutes=61))
    assert review_item_gather_evidence(item_id=item.pk) == EvidenceStatus.FAILED
    failed = ReviewItem.objects.get(pk=item.pk)
    assert "did not finish" in failed.evidence["error"] and failed.evidence_job_id == ""


def test_an_answer_botocore_cannot_parse_is_an_aws_failure_worth_another_try():
    """What moto answers for a call it does not implement (an HTML error page): from the endpoint, not a bug."""
    from botocore.parsers import ResponseParserError

    from accessrequests.aws import errors

    garbled = ResponseParserError(
        "Unable to parse response (syntax error: line 1, column 0), invalid XML received. Further retries may "
        "succeed:\nb'<!doctype html><title>500 Internal Server Error</title>'"
    )
    assert errors.is_aws_error(garbled) and errors.is_transient(garbled)
    said = errors.describe(garbled)
    assert "invalid XML received" in said and "AWS_ENDPOINT_URL" in said and "<!doctype" not in said
