"""Needs your review: an approver's home page and review queue list every request they may decide, every
break-glass use they may review afterwards and every access-review item they may keep or revoke, the one due first
on top, each linking to where it is decided, and nothing the rules in ``permissions`` would refuse them."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils import timezone

from accessrequests.authz import inbox, permissions
from accessrequests.authz.recipients import reach_of, recipient_user_ids
from accessrequests.core.ids import NoneOf
from accessrequests.models import (
    AccessRequest,
    BreakGlassReview,
    Grant,
    GrantStatus,
    IdentityCenter,
    Principal,
    PrincipalKind,
    RequestKind,
    RequestStatus,
    ReviewItem,
)
from accessrequests.reviews import campaigns as reviews
from accessrequests.workflow.break_glass import break_glass_post_review, break_glass_submit
from accessrequests.workflow.requests import request_approve
from tests.conftest import enable_totp, make_user
from tests.factories import World, force_update, fresh_factor, make_account, make_pipeline, make_principal
from tests.test_views import login

pytestmark = pytest.mark.django_db


def _live_for_long(req: AccessRequest, days: int = 200) -> Grant:
    """The grant of an approved request, as if applied ``days`` ago (an access review takes it)."""
    then = timezone.now() - timedelta(days=days)
    force_update(
        Grant.objects.filter(request=req),
        status=GrantStatus.ACTIVE,
        starts_at=then,
        applied_at=then,
        expires_at=None,
    )
    return Grant.objects.get(request=req)


class Governance(World):
    """World plus what governance adds: an on-call requester named for break-glass, an admin, a principal of the
    approver's own, and three kinds of work waiting."""

    def __init__(self) -> None:
        super().__init__()
        enable_totp(self.approver)
        self.admin = make_user("boss", "admins")
        self.oncall = make_user("oncall", "requesters", "oncall")
        # Break-glass gives only access that reaches nobody but whoever uses it: principals of their own.
        self.oncall_principal = make_principal(self.account, "oncall-p", users=[self.oncall])
        self.rule.break_glass_groups.add(Group.objects.get(name="oncall"))
        self.rule.allow_permanent = True
        self.rule.save()
        self.ana = make_principal(self.account, "ana", users=[self.approver])
        self.ana_solo = make_principal(self.account, "ana-solo", users=[self.approver])
        self.rule.break_glass_users.add(self.approver)  # an approver named for break-glass too

    def glass(self, who, principal, incident: str) -> AccessRequest:
        return break_glass_submit(
            requester=who,
            draft=self.draft(
                principal=principal,
                pipelines=[make_pipeline(self.account, f"hotfix-{incident}")],
                duration_hours=1,
                justification="Release blocked",
            ),
            incident=incident,
        )

    def kept_for_review(self, principal, requester) -> Grant:
        req = self.submit(requester=requester, principal=principal, duration_hours=None)
        request_approve(
            request_id=req.pk, reviewer=self.approver2, second_factor=fresh_factor(self.approver2)
        )
        return _live_for_long(req)


@pytest.fixture
def gov() -> Governance:
    world = Governance()
    # Access reviews first (they take every long-lived grant), then the rest, so each kind has its own rows.
    world.mateo_grant = world.kept_for_review(world.principal, world.requester)
    world.ana_grant = world.kept_for_review(world.ana, world.approver)  # the approver's own access
    world.ana.users.add(
        world.oncall
    )  # ana is shared with on-call: what oncall asks for ana reaches the approver
    world.reaching_grant = world.kept_for_review(world.ana, world.oncall)
    world.campaign = reviews.campaign_start(actor=world.admin)
    world.glass_oncall = world.glass(world.oncall, world.oncall_principal, "INC-1")
    world.glass_own = world.glass(world.approver, world.ana_solo, "INC-2")
    # A use that reached only on-call then, and reaches the approver since an admin linked them to its principal.
    linked_later = make_principal(world.account, "oncall-2", users=[world.oncall])
    world.glass_reaching = world.glass(world.oncall, linked_later, "INC-3")
    linked_later.users.add(world.approver)
    world.pending = world.submit(justification="Debugging a failed deploy")
    world.own = world.submit(requester=world.approver, principal=world.ana)
    return world


def test_the_approver_sees_each_kind_of_work_most_urgent_first_linking_to_where_it_is_decided(client, gov):
    # The break-glass review is due in a day, the request's review window closes in three, the campaign in two
    # weeks: that order, whatever order they were filed in.
    login(client, gov.approver)
    home = client.get(reverse("home")).content.decode()
    needs = home.split('data-testid="needs-review"')[1].split("</div></div>")[0]
    assert "<strong>1</strong> request waits for your review" in needs
    assert "<strong>1</strong> break-glass use waits for your post-review" in needs
    assert "<strong>1</strong> access-review item waits to be kept or revoked" in needs
    kinds = [chunk.split('"')[0] for chunk in needs.split('data-kind="')[1:]]
    assert kinds == ["post_review", "request", "review_item"]
    item = ReviewItem.objects.get(grant=gov.mateo_grant)
    links = [
        reverse("break_glass_review", args=[gov.glass_oncall.pk]),
        reverse("review", args=[gov.pending.pk]),
        f"{reverse('review_campaign', args=[gov.campaign.pk])}?item={item.pk}#item-{item.pk}",
    ]
    positions = [needs.index(f'href="{link}"') for link in links]
    assert positions == sorted(positions)
    # Nothing of their own.
    assert gov.own.reference not in needs and gov.glass_own.reference not in needs
    assert (
        "ana" not in needs
    )  # the access review item of the approver's own grant is someone else's to review

    queue = client.get(reverse("queue")).content.decode()
    assert [chunk.split('"')[0] for chunk in queue.split('data-testid="inbox-row" data-kind="')[1:]] == kinds
    assert 'data-kind="request">1<' in queue and 'data-kind="post_review">1<' in queue
    assert 'data-kind="review_item">1<' in queue
    # The menu counts it all, and says which part is break-glass and which the access review.
    assert 'data-testid="nav-review-count" title="waiting for you">3<' in queue
    assert 'data-testid="nav-post-review-count" title="waiting for your post-review">1<' in queue
    assert 'data-testid="nav-review-item-count" title="items waiting for you">1<' in queue
    # Each link opens the page where it is decided, with the form there.
    assert 'value="approve"' in client.get(links[1]).content.decode()
    assert 'name="outcome"' in client.get(links[0]).content.decode()
    campaign_page = client.get(links[2]).content.decode()
    assert campaign_page.count('data-testid="item"') == 1 and f'id="item-{item.pk}"' in campaign_page
    assert f'name="item{item.pk}-reason"' in campaign_page
    # The queue's filter narrows to one kind and still says how much of each waits.
    only = client.get(reverse("queue"), {"work": "post_review"}).content.decode()
    assert only.count('data-testid="inbox-row"') == 1 and 'data-kind="request">1<' in only
    # Narrowed to what waits nowhere, the page counts nothing and the menu still counts everything.
    elsewhere = client.get(reverse("queue"), {"account": "999999999999"}).content.decode()
    assert 'data-testid="inbox-row"' not in elsewhere and 'data-kind="request">0<' in elsewhere
    assert "Nothing waiting for you matches these filters." in elsewhere  # not "nothing waits for you"
    assert "Nothing waits for your review." not in elsewhere
    assert 'data-testid="nav-review-count" title="waiting for you">3<' in elsewhere
    assert 'data-testid="nav-post-review-count" title="waiting for your post-review">1<' in elsewhere


def test_done_work_leaves_the_inbox(client, gov):
    request_approve(
        request_id=gov.pending.pk, reviewer=gov.approver, second_factor=fresh_factor(gov.approver)
    )
    review = BreakGlassReview.objects.get(request=gov.glass_oncall)
    break_glass_post_review(
        review_id=review.pk, reviewer=gov.approver, second_factor=fresh_factor(gov.approver),
        outcome="justified", comment="INC-1 was real",
    )  # fmt: skip
    reviews.review_item_decide(
        item_id=ReviewItem.objects.get(grant=gov.mateo_grant).pk, reviewer=gov.approver,
        second_factor=fresh_factor(gov.approver), decision="keep", reason="Still on call",
    )  # fmt: skip
    login(client, gov.approver)
    home = client.get(reverse("home")).content.decode()
    assert "Nothing waits for your review." in home and 'data-testid="nav-review-count"' not in home


def test_the_inbox_lists_exactly_what_the_permissions_let_each_person_decide(gov):
    """The oracle is ``permissions``: for every person and every piece of work, listed exactly when its
    ``*_problem`` rule says they may decide it."""
    late = gov.submit(justification="Filed long ago")
    force_update(AccessRequest.objects.filter(pk=late.pk), created_at=timezone.now() - timedelta(days=4))
    both = make_user("both", "approvers", "auditors")  # an auditor never decides, whatever else they are
    # A principal whose e-mail address is the approver's reaches them without being linked to them.
    by_mail = make_principal(gov.account, "ana-mail", users=[gov.requester])
    Principal.objects.filter(pk=by_mail.pk).update(email="APPROVER@example.com")
    reaching_by_mail = gov.submit(principal=by_mail)
    # An admin who also approves, filing on someone's behalf: their own work though the access is not theirs.
    gov.rule.approver_users.add(gov.admin)
    gov.rule.break_glass_users.add(gov.admin)
    on_behalf = gov.submit(requester=gov.admin, justification="For mateo")
    boss_principal = make_principal(gov.account, "boss-p", users=[gov.admin])
    gov.glass(gov.admin, boss_principal, "INC-4")
    boss_principal.users.remove(gov.admin)  # unlinked since: the use is still theirs, never theirs to review
    admins_grant = gov.kept_for_review(gov.principal, gov.admin)
    ReviewItem.objects.create(campaign=gov.campaign, grant=admins_grant, rule=gov.rule)
    # Needing two approvals, approved once: still pending, no longer the first approver's to decide.
    two = gov.submit(justification="Needs two")
    force_update(AccessRequest.objects.filter(pk=two.pk), approvals_required=2)
    request_approve(request_id=two.pk, reviewer=gov.approver, second_factor=fresh_factor(gov.approver))
    people = [gov.approver, gov.approver2, gov.outsider_approver, gov.requester, gov.admin, both]
    pending = list(AccessRequest.objects.filter(status=RequestStatus.PENDING))
    assert two in pending and permissions.decide_problem(gov.approver, two) is not None
    assert {late, reaching_by_mail, on_behalf} <= set(pending)
    post_reviews = list(BreakGlassReview.objects.all())
    items = list(ReviewItem.objects.all())
    for person in people:
        listed = inbox.review_inbox(person, size=100).page.object_list
        shown = {(w.kind, w.obj.pk) for w in listed}
        expected = (
            {("request", r.pk) for r in pending if permissions.decide_problem(person, r) is None}
            | {
                ("post_review", r.pk)
                for r in post_reviews
                if permissions.post_review_problem(person, r) is None
            }
            | {("review_item", i.pk) for i in items if permissions.review_item_problem(person, i) is None}
        )
        assert shown == expected, person
        counts = inbox.counts_for(person)
        assert counts.total == len(expected), person
    assert ("request", gov.pending.pk) in {
        (w.kind, w.obj.pk) for w in inbox.review_inbox(gov.approver).page.object_list
    }


def test_reach_says_whom_a_request_reaches_as_the_recipients_do(gov):
    """``recipients.Reach`` (one person's side, as a query) agrees with ``recipient_user_ids`` for every kind."""
    other_account = make_account("210000000001", "elsewhere")
    team = make_principal(gov.account, "team", kind=PrincipalKind.IAM_GROUP)
    team.members.add(gov.ana)
    stranger = make_principal(gov.account, "stranger")
    ic = IdentityCenter.objects.create(
        instance_arn="arn:aws:sso:::instance/ssoins-1", identity_store_id="d-1"
    )
    mail = Principal.objects.create(
        kind=PrincipalKind.IC_USER, external_id="u-ana", name="ana.ic", identity_center=ic,
        email="approver@EXAMPLE.com",
    )  # fmt: skip
    ic_team = Principal.objects.create(
        kind=PrincipalKind.IC_GROUP, external_id="g-team", name="ic-team", identity_center=ic
    )
    ic_team.members.add(mail)
    cross = RequestKind.CROSS_ACCOUNT
    requests = [
        AccessRequest(kind=RequestKind.PIPELINE, principal=p)
        for p in (gov.ana, team, stranger, mail, ic_team, gov.principal)
    ] + [
        AccessRequest(kind=cross, principal=stranger, trusted_principal_arn=arn)
        for arn in (gov.ana.external_id, team.external_id, stranger.external_id, "arn:aws:iam::999999999999:root")
    ] + [
        AccessRequest(kind=cross, principal=stranger, trusted_account_id=account)
        for account in (gov.account.account_id, other_account.account_id, "999999999999")
    ]  # fmt: skip
    for person in (gov.approver, gov.requester, gov.approver2, gov.outsider_approver):
        reach = reach_of(person)
        for req in requests:
            assert reach.reaches(req) == (person.pk in recipient_user_ids(req)), (
                person,
                req.kind,
                req.principal,
            )
    assert reach_of(gov.approver).reaches(requests[0]) and reach_of(gov.approver).reaches(requests[3])


def test_break_glass_in_the_menu_is_the_post_reviews_for_reviewers_and_the_form_only_for_those_named(
    client, gov
):
    enable_totp(gov.approver2)
    login(client, gov.approver2)  # reviews break-glass, is not named for it
    home = client.get(reverse("home")).content.decode()
    assert f'href="{reverse("break_glass_list")}" data-testid="nav-break-glass"' in home
    uses = client.get(reverse("break_glass_list")).content.decode()
    waiting = uses.split('data-testid="post-reviews-waiting"')[1].split("</div></div>")[0]
    assert gov.glass_oncall.reference in waiting and gov.glass_own.reference in waiting
    assert 'data-testid="use-break-glass"' not in uses
    form = client.get(reverse("break_glass_new")).content.decode()
    assert "No approval rule names you for break-glass" in form and 'name="intent"' not in form
    assert 'name="account"' not in form  # no form to fill, only the way to the post-reviews
    assert reverse("break_glass_list") in form

    login(client, gov.approver)  # named for it and an approver: the uses, with the way to break the glass
    uses = client.get(reverse("break_glass_list")).content.decode()
    assert 'data-testid="use-break-glass"' in uses
    waiting = uses.split('data-testid="post-reviews-waiting"')[1].split("</div></div>")[0]
    assert gov.glass_oncall.reference in waiting and gov.glass_own.reference not in waiting  # not their own

    client.force_login(gov.other_requester)  # neither named nor a reviewer: no entry at all
    assert 'data-testid="nav-break-glass"' not in client.get(reverse("home")).content.decode()
    client.force_login(gov.oncall)  # named: the entry is the form
    home = client.get(reverse("home")).content.decode()
    assert f'href="{reverse("break_glass_new")}" data-testid="nav-break-glass"' in home
    assert 'name="account"' in client.get(reverse("break_glass_new")).content.decode()


def test_none_of_leaves_out_exactly_the_ids_given_however_many(gov):
    pending = sorted(AccessRequest.objects.filter(status=RequestStatus.PENDING).values_list("pk", flat=True))
    assert gov.pending.pk in pending

    def kept(ids):
        rows = AccessRequest.objects.filter(status=RequestStatus.PENDING).filter(NoneOf("pk", ids))
        return sorted(rows.values_list("pk", flat=True))

    # More ids than SQLite's default bound of parameters a statement, one of them pending.
    assert kept([gov.pending.pk, *range(10**9, 10**9 + 40_000)]) == [
        pk for pk in pending if pk != gov.pending.pk
    ]
    assert kept([]) == pending
