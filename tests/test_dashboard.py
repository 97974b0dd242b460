"""The admin dashboard: right figures, bounded queries whatever the table sizes."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from accessrequests.models import AccessRequest, Grant, GrantStatus, RequestStatus
from accessrequests.workflow.requests import request_approve
from tests.conftest import make_user
from tests.factories import World, force_update, fresh_factor

pytestmark = pytest.mark.django_db

DASHBOARD_QUERIES = (
    # pinned below, the same at 100 and at 100,000 requests (one is the audit integrity state, two are break-glass:
    # the week's uses and the late post-reviews, one is the open access review, two are governance: the changes
    # waiting for a second admin and the identity provider's recent role and link changes, one is the newest drift
    # check, one counts the disabled accounts the catalog card leaves out)
    23
)


def _clone_requests(template: AccessRequest, n: int) -> None:
    fields = {
        f.attname: getattr(template, f.attname)
        for f in AccessRequest._meta.concrete_fields
        if f.attname != "id"
    }
    statuses = [RequestStatus.PENDING, RequestStatus.DENIED]
    batch = []
    for i in range(n):
        status = statuses[i % 2]
        batch.append(
            AccessRequest(
                **{**fields, "status": status, "decided_at": None if status == "pending" else timezone.now()}
            )
        )
        if len(batch) == 10_000:
            AccessRequest.objects.bulk_create(batch)
            batch = []
    AccessRequest.objects.bulk_create(batch)


@pytest.fixture
def world():
    return World()


def test_the_dashboard_shows_pending_stuck_and_expiring(client, world):
    pending = world.submit()
    approved = world.submit()
    request_approve(
        request_id=approved.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    grant = Grant.objects.get(request=approved)
    force_update(
        Grant.objects.filter(pk=grant.pk), status=GrantStatus.FAILED, last_error="Rate exceeded", attempts=3
    )
    admin = make_user("boss", "admins")
    client.force_login(admin)
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    content = response.content.decode()
    assert pending.reference in content
    assert "Rate exceeded" in content
    assert reverse("grant_retry", args=[grant.pk]) in content
    assert "<svg" in content and "<rect" in content


def test_requesters_and_approvers_get_404(client, world):
    for user in (world.requester, world.approver):
        client.force_login(user)
        assert client.get(reverse("dashboard")).status_code == 404


def test_auditors_see_the_dashboard_without_action_buttons(client, world):
    approved = world.submit()
    request_approve(
        request_id=approved.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    force_update(Grant.objects.filter(request=approved), status=GrantStatus.FAILED)
    client.force_login(make_user("auditor", "auditors"))
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    assert b"Retry now" not in response.content


@pytest.mark.parametrize("n", [100, 100_000])
def test_dashboard_queries_are_the_same_at_100_and_100000_requests(
    client, world, django_assert_num_queries, n
):
    template = world.submit()
    request_approve(
        request_id=template.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    force_update(
        Grant.objects.filter(request=template),
        status=GrantStatus.ACTIVE,
        applied_at=timezone.now(),
        expires_at=timezone.now() + timedelta(hours=2),
    )
    _clone_requests(template, n - 1)
    client.force_login(make_user("boss", "admins"))
    with django_assert_num_queries(DASHBOARD_QUERIES):
        assert client.get(reverse("dashboard")).status_code == 200


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(milliseconds=12), "12 ms"),
        (timedelta(seconds=45), "45 s"),
        (timedelta(minutes=12, seconds=5), "12 min"),
        (timedelta(hours=3, minutes=5), "3 h 5 min"),
        (timedelta(days=2, hours=4), "2 d 4 h"),
        (None, "—"),
    ],
)
def test_durations_read_as_people_say_them(delta, text):
    from accessrequests.templatetags.gatehouse import duration

    assert duration(delta) == text


def test_the_drift_card_says_when_the_last_check_ran(client, world):
    from accessrequests.models import DriftCheck
    from accessrequests.provisioning.engine import drift_check

    client.force_login(make_user("boss", "admins"))

    def status() -> str:
        page = client.get(reverse("dashboard")).content.decode()
        return re.sub(r"<[^>]+>", "", page.split('data-testid="drift-status">')[1].split("</p>")[0])

    assert status() == "Not checked yet: every 15 minutes beat compares AWS with what Gatehouse applied."
    drift_check()  # nothing applied yet: nothing to compare, and that it ran is worth saying
    at = timezone.localtime(DriftCheck.current().checked_at)
    assert status() == f"No drift found at {at:%H:%M} UTC on {at:%Y-%m-%d} (0 principals compared with AWS)."
