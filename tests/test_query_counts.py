"""Every busy page costs the same number of queries at 10 and at 1,000 rows, and with 10 or 300 accounts in
the catalog: the review queue and the approver's home page (both "Needs your review", with as many break-glass
post-reviews and access-review items waiting as requests), the break-glass uses, an access review, my requests, a
request, the picker search, the audit log, the access report and a multi-account request. (``bench/scale.py``
measures their time at 1,000,000 requests and 3,000 accounts.)"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.models import (
    AccessRequest,
    AwsAccount,
    BreakGlassReview,
    Grant,
    GrantStatus,
    IdentityCenter,
    OrganizationalUnit,
    Principal,
    PrincipalKind,
    ReviewCampaign,
    ReviewItem,
)
from accessrequests.workflow.batches import batch_submit
from accessrequests.workflow.requests import request_approve
from tests.conftest import enable_totp, make_user
from tests.factories import World, fresh_factor, make_pipeline
from tests.test_views import login

pytestmark = pytest.mark.django_db

# Pinned: a change that makes a page cost more queries (or one per row) fails here first. The queue and the
# approver's home page are "Needs your review": besides the requests they read the ids of the break-glass
# post-reviews and access-review items waiting, and load the rows of each kind shown (one query each).
BUDGET = {
    "queue": 15,
    # Filtered, the menu still counts everything waiting: three more queries, the rules, the principals and the
    # decisions read once for both (before: 22, the whole inbox counted again for the menu).
    "queue_one_account": 18,
    "home_approver": 17,
    "break_glass_uses": 14,
    "access_review": 21,
    "my_requests": 5,
    "detail": 9,
    "detail_approved": 12,
    "search_accounts": 5,
    "search_units": 7,
    "search_pipelines": 5,
    "audit_log": 7,
    "access_report": 8,
    "batch": 6,
}


def _world(rows: int, accounts: int) -> World:
    world = World()
    enable_totp(world.approver)
    unit = OrganizationalUnit.objects.create(ou_id="ou-team", name="Team", path="Root / Team")
    AwsAccount.objects.bulk_create(
        AwsAccount(account_id=f"7{i:011d}", name=f"team-{i:04d}", ou=unit) for i in range(accounts - 1)
    )
    world.rule.accounts.add(*AwsAccount.objects.all())
    center = IdentityCenter.objects.create(
        instance_arn="arn:aws:sso:::instance/ssoins-1", identity_store_id="d-1"
    )
    world.ic_principal = Principal.objects.create(
        kind=PrincipalKind.IC_USER, external_id="u-1", name="requester", identity_center=center
    )
    world.ic_principal.users.add(world.requester)
    template = world.submit()
    others = list(AwsAccount.objects.order_by("pk"))
    clones = []
    for i in range(rows - 1):
        clone = AccessRequest.objects.get(pk=template.pk)
        clone.pk = None
        clone.account = others[i % len(others)]
        clones.append(clone)
    AccessRequest.objects.bulk_create(clones, batch_size=500)
    now = timezone.now()
    Grant.objects.bulk_create(
        Grant(
            request=req,
            principal=world.principal,
            account=world.account,
            delivery=req.delivery,
            statements=req.statements,
            status=GrantStatus.ACTIVE,
            starts_at=now - timedelta(hours=1),
            applied_at=now - timedelta(hours=1),
            expires_at=now + timedelta(hours=3),
        )
        for req in AccessRequest.objects.all()
    )
    # As much governance work waits as requests do: a post-review for every other request (as if each had been a
    # break-glass use) and an access review with an item for every grant. A few of each are due first, so the
    # first page of "Needs your review" shows every kind at any size (each kind shown is one query to load).
    AccessRequest.objects.filter(pk__in=[c.pk for c in clones[:2]]).update(
        created_at=now - timedelta(hours=71)
    )
    AccessRequest.objects.filter(pk__in=[c.pk for c in clones[::2]]).update(
        break_glass=True, incident="INC-1"
    )
    BreakGlassReview.objects.bulk_create(
        BreakGlassReview(request_id=c.pk, due_at=now + timedelta(minutes=30 if i < 2 else 60 * 24 * 3 + i))
        for i, c in enumerate(clones[::2])
    )
    world.campaign = ReviewCampaign.objects.create(
        started_at=now - timedelta(days=14), deadline=now + timedelta(hours=2), min_age_days=30, unused_days=90,
        on_deadline="remind",
    )  # fmt: skip
    ReviewItem.objects.bulk_create(
        ReviewItem(campaign=world.campaign, grant=grant, rule=world.rule) for grant in Grant.objects.all()
    )
    for i in range(rows):
        audit.record(action="request.viewed", object_type="request", object_id=i, account_id="123456789012")
    for account in others[:2]:
        make_pipeline(account, "shared-pipeline")
    world.batch = batch_submit(
        requester=world.requester,
        draft=world.draft(
            principal=world.ic_principal, pipelines=[make_pipeline(world.account, "shared-pipeline")]
        ),
        accounts=others[:2],
    )
    world.approved = world.submit(level="operator")
    request_approve(
        request_id=world.approved.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    world.auditor = make_user("auditor", "auditors")
    world.admin = make_user("boss", "admins")
    return world


def _count(client, url: str, params=None) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url, params or {})
    assert response.status_code == 200, (url, response.status_code, response.content[:500])
    return len(queries)


@pytest.mark.parametrize(("rows", "accounts"), [(10, 10), (1000, 10), (10, 300), (1000, 300)])
def test_every_page_costs_the_same_queries_whatever_the_rows_and_accounts(client, rows, accounts):
    world = _world(rows, accounts)
    assert AccessRequest.objects.count() >= rows and AwsAccount.objects.count() == accounts
    newest = (
        AccessRequest.objects.filter(requester=world.requester, status="pending", batch=None)
        .order_by("-pk")
        .first()
    )
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    until = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    counts = {}

    login(client, world.requester)
    counts["my_requests"] = _count(client, reverse("my_requests"))
    counts["detail"] = _count(client, reverse("request_detail", args=[newest.pk]))
    counts["detail_approved"] = _count(client, reverse("request_detail", args=[world.approved.pk]))
    counts["search_accounts"] = _count(
        client, reverse("catalog_search"), {"kind": "account", "q": "team", "format": "json"}
    )
    counts["search_units"] = _count(client, reverse("catalog_search"), {"kind": "ou", "format": "json"})
    counts["search_pipelines"] = _count(
        client, reverse("catalog_search"), {"kind": "pipeline", "q": "pipeline", "format": "json"}
    )
    counts["batch"] = _count(client, reverse("batch_detail", args=[world.batch.pk]))
    login(client, world.approver)
    counts["queue"] = _count(client, reverse("queue"))
    counts["queue_one_account"] = _count(client, reverse("queue"), {"account": world.account.account_id})
    counts["home_approver"] = _count(client, reverse("home"))
    counts["break_glass_uses"] = _count(client, reverse("break_glass_list"))
    counts["access_review"] = _count(client, reverse("review_campaign", args=[world.campaign.pk]))
    client.force_login(world.auditor)
    counts["audit_log"] = _count(client, reverse("audit_log"))
    counts["access_report"] = _count(client, reverse("access_report"), {"since": since, "until": until})
    assert counts == BUDGET
    # And the approver's pages did list each kind of work on their first page.
    login(client, world.approver)
    for url in (reverse("queue"), reverse("home")):
        page = client.get(url).content.decode()
        assert all(f'data-kind="{kind}"' in page for kind in ("request", "post_review", "review_item")), url
