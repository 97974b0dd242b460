"""What the request page and the admin's grant page say about an ended grant: ended at, confirmed in AWS at,
and what became of the sessions issued before (refused until when, or the window AWS cannot close)."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse

from accessrequests.models import AccessEnd, EndState, FenceKind, Grant, GrantEnding, GrantStatus
from accessrequests.workflow.requests import request_approve
from tests.conftest import make_user, sign_in_with_mfa
from tests.factories import World, force_update, fresh_factor

pytestmark = pytest.mark.django_db

ENDED = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def world():
    return World()


@pytest.fixture
def ended(world):
    req = world.submit()
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    grant = Grant.objects.get(request=req)
    force_update(
        Grant.objects.filter(pk=grant.pk),
        status=GrantStatus.REVOKED,
        ending=GrantEnding.REVOKED,
        applied_at=ENDED - timedelta(hours=1),
        revoked_at=ENDED,
    )
    return grant


def text_of(response) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", response.content.decode())))


def page(client, world, grant) -> str:
    client.force_login(world.requester)
    response = client.get(reverse("request_detail", args=[grant.request_id]))
    assert response.status_code == 200
    return text_of(response)


def test_a_confirmed_end_with_a_deny_says_until_when_older_sessions_are_refused(client, world, ended):
    AccessEnd.objects.create(
        grant=ended,
        ended_at=ENDED,
        state=EndState.CONFIRMED,
        confirmed_at=ENDED + timedelta(seconds=3),
        fence_kind=FenceKind.PERMISSION_SET,
        fence_target="arn:aws:sso:::permissionSet/ssoins-1/ps-1",
        fence_account_id="123456789012",
        sessions_until=ENDED + timedelta(hours=1),
    )
    text = page(client, world, ended)
    assert "Ended at 2026-03-01 12:00:00 UTC (revoked), confirmed in AWS at 2026-03-01 12:00:03 UTC." in text
    assert (
        "Sessions issued before the end are refused by a deny Gatehouse keeps in AWS until "
        "2026-03-01 13:00:00 UTC, when the longest of them expires; then it removes the deny." in text
    )

    AccessEnd.objects.filter(grant=ended).update(fence_removed_at=ENDED + timedelta(hours=1, minutes=1))
    text = page(client, world, ended)
    assert (
        "kept in AWS until 2026-03-01 13:00:00 UTC, when the longest of them had expired; it removed the deny at 2026-03-01 13:01:00 UTC."
        in text
    )


def test_a_window_aws_cannot_close_is_shown_with_its_end_and_its_reason(client, world, ended):
    AccessEnd.objects.create(
        grant=ended,
        ended_at=ENDED,
        state=EndState.CONFIRMED,
        confirmed_at=ENDED + timedelta(seconds=2),
        sessions_until=ENDED + timedelta(hours=8),
        residual="the permission set's inline policy has no room for the deny (10,240 characters)",
    )
    text = page(client, world, ended)
    assert "confirmed in AWS at 2026-03-01 12:00:02 UTC" in text
    assert (
        "A session issued before the end may go on working until 2026-03-01 20:00:00 UTC, when it expires: the "
        "permission set's inline policy has no room for the deny (10,240 characters). AWS gives no way to end it "
        "sooner." in text
    )


def test_an_end_without_a_deny_says_aws_checks_older_sessions_at_every_call(client, world, ended):
    AccessEnd.objects.create(grant=ended, ended_at=ENDED, state=EndState.CONFIRMED, confirmed_at=ENDED)
    text = page(client, world, ended)
    assert "confirmed in AWS at 2026-03-01 12:00:00 UTC" in text
    assert (
        "Sessions issued before the end are refused too: AWS checks them against the policies at every call."
        in text
    )


def test_an_end_not_yet_seen_in_aws_says_so_and_why(client, world, ended):
    text = page(client, world, ended)
    assert "Ended at 2026-03-01 12:00:00 UTC (revoked); being confirmed in AWS." in text
    AccessEnd.objects.create(
        grant=ended,
        ended_at=ENDED,
        outcome="AWS still shows user mateojackson inline policy gatehouse allowing it",
    )
    text = page(client, world, ended)
    assert (
        "not yet confirmed in AWS (AWS still shows user mateojackson inline policy gatehouse allowing it)"
        in text
    )
    assert "confirmed in AWS at" not in text


def test_access_held_elsewhere_is_said_plainly(client, world, ended):
    AccessEnd.objects.create(
        grant=ended,
        ended_at=ENDED,
        state=EndState.HELD_ELSEWHERE,
        outcome="codepipeline:GetPipeline on my-pipeline is still allowed by managed policy X, which Gatehouse did not create",
    )
    text = page(client, world, ended)
    assert (
        "Gatehouse's part is gone from AWS, but the access is still there: codepipeline:GetPipeline" in text
    )


def test_the_admins_grant_page_says_the_same(client, world, ended):
    AccessEnd.objects.create(
        grant=ended, ended_at=ENDED, state=EndState.CONFIRMED, confirmed_at=ENDED + timedelta(seconds=3)
    )
    admin = make_user("root-admin", "admins", is_staff=True, is_superuser=True)
    sign_in_with_mfa(client, admin)
    response = client.get(reverse("admin:accessrequests_grant_change", args=[ended.pk]))
    assert response.status_code == 200
    assert "confirmed in AWS at 2026-03-01 12:00:03 UTC" in text_of(response)
