"""Revoke, retry and abandon from the web: who may, and what happens (the services do the work)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from accessrequests.models import AuditEvent, Grant, GrantStatus
from accessrequests.workflow.requests import request_approve
from tests.conftest import make_user
from tests.factories import World, force_update, fresh_factor

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return World()


@pytest.fixture
def active_grant(world):
    req = world.submit()
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    grant = Grant.objects.get(request=req)
    force_update(Grant.objects.filter(pk=grant.pk), status=GrantStatus.ACTIVE, applied_at=timezone.now())
    return grant


def test_the_requester_revokes_their_grant_now(client, world, active_grant):
    client.force_login(world.requester)
    detail = client.get(reverse("request_detail", args=[active_grant.request_id]))
    assert b"Revoke now" in detail.content
    asked = client.post(reverse("grant_revoke", args=[active_grant.pk]))  # the button: a second step first
    assert asked.status_code == 200 and b"Revoke GH-" in asked.content and b'name="confirm"' in asked.content
    active_grant.refresh_from_db()
    assert active_grant.status == GrantStatus.ACTIVE
    response = client.post(reverse("grant_revoke", args=[active_grant.pk]), {"confirm": "yes"})
    assert response.status_code == 302
    active_grant.refresh_from_db()
    assert active_grant.status == GrantStatus.REVOKING
    assert AuditEvent.objects.filter(action="grant.revoke_requested", actor=world.requester).exists()


def test_other_people_get_404_and_change_nothing(client, world, active_grant):
    for user in (world.other_requester, world.outsider_approver):
        client.force_login(user)
        for name in ("grant_revoke", "grant_retry", "grant_abandon"):
            assert client.post(reverse(name, args=[active_grant.pk])).status_code == 404
    active_grant.refresh_from_db()
    assert active_grant.status == GrantStatus.ACTIVE


def test_an_auditor_cannot_revoke(client, world, active_grant):
    client.force_login(make_user("auditor", "auditors"))
    assert client.post(reverse("grant_revoke", args=[active_grant.pk])).status_code == 404
    active_grant.refresh_from_db()
    assert active_grant.status == GrantStatus.ACTIVE


def test_revoking_twice_says_so_instead_of_failing(client, world, active_grant):
    client.force_login(world.requester)
    client.post(reverse("grant_revoke", args=[active_grant.pk]), {"confirm": "yes"})
    response = client.post(reverse("grant_revoke", args=[active_grant.pk]), {"confirm": "yes"}, follow=True)
    assert b"already revoking" in response.content


def test_an_admin_retries_and_abandons_a_failed_grant(client, world, active_grant):
    force_update(
        Grant.objects.filter(pk=active_grant.pk), status=GrantStatus.FAILED, last_error="Rate exceeded"
    )
    admin = make_user("boss", "admins")
    client.force_login(admin)
    assert client.post(reverse("grant_retry", args=[active_grant.pk])).status_code == 302
    active_grant.refresh_from_db()
    assert active_grant.status == GrantStatus.QUEUED
    assert client.post(reverse("grant_abandon", args=[active_grant.pk])).status_code == 302
    active_grant.refresh_from_db()
    assert active_grant.status == GrantStatus.REVOKING
    assert active_grant.ending == "abandoned"


def test_forged_grant_ids_get_404(client, world):
    client.force_login(make_user("boss", "admins"))
    assert client.post(reverse("grant_retry", args=[999999])).status_code == 404
