"""A TOTP code counts once wherever it is typed: the API's decisions and allauth's step-up share one record of used
codes, kept in the database (``accessrequests/authz/used_codes.py``)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accessrequests.authz import used_codes
from accessrequests.models import Decision, RequestStatus, UsedTotpCode
from tests.conftest import current_code, enable_totp, sign_in_with_mfa
from tests.factories import World, make_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    w = World()
    enable_totp(w.approver)
    return w


def _api_approve(user, request_pk: int, code: str):
    _, raw = make_token(user, f"tests-{request_pk}-{code}")
    return Client().post(
        f"/api/v1/requests/{request_pk}/approve/",
        {"otp": code},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )


def test_a_code_used_in_the_web_step_up_is_refused_by_the_api(world):
    req = world.submit()
    code = current_code(world.approver)
    client = Client()
    sign_in_with_mfa(client, world.approver)
    confirmed = client.post(reverse("mfa_reauthenticate"), {"code": code})
    assert confirmed.status_code == 302  # allauth took the code (and recorded it through used_codes)
    assert UsedTotpCode.objects.filter(user=world.approver).count() == 1
    response = _api_approve(world.approver, req.pk, code)
    assert response.status_code == 403 and "second factor" in response.json()["error"]
    assert not Decision.objects.exists()


def test_a_code_used_by_the_api_is_refused_by_the_web_step_up(world):
    req = world.submit()
    code = current_code(world.approver)
    assert _api_approve(world.approver, req.pk, code).status_code == 200
    req.refresh_from_db()
    assert req.status == RequestStatus.APPROVED
    client = Client()
    sign_in_with_mfa(client, world.approver)
    refused = client.post(reverse("mfa_reauthenticate"), {"code": code})
    assert refused.status_code == 200  # the form again, with its error: the code was used
    assert "code" in refused.content.decode().lower()
    assert UsedTotpCode.objects.filter(user=world.approver).count() == 1


def test_a_use_is_remembered_for_the_codes_whole_window_and_forgotten_after_it(world):
    assert used_codes.window() == timedelta(
        seconds=90
    )  # MFA_TOTP_TOLERANCE = 1: the step before, now, the next
    assert used_codes.mark_used(world.approver.pk, "123456") is True
    assert used_codes.mark_used(world.approver.pk, "123456") is False
    assert used_codes.mark_used(world.requester.pk, "123456") is True  # another person's code is theirs
    UsedTotpCode.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert used_codes.mark_used(world.approver.pk, "123456") is True  # the window passed: a new code now
    assert used_codes.mark_used(world.approver.pk, "123456") is False  # and it counts once again
    assert UsedTotpCode.objects.filter(user=world.approver).count() == 1  # the expired record was renewed


def test_expired_records_are_pruned_and_live_ones_kept(world):
    assert used_codes.mark_used(world.approver.pk, "111111") is True
    assert used_codes.mark_used(world.approver.pk, "222222") is True
    UsedTotpCode.objects.filter(code="111111").update(expires_at=timezone.now() - timedelta(seconds=1))
    assert used_codes.prune() == 1
    assert list(UsedTotpCode.objects.values_list("code", flat=True)) == ["222222"]
    assert used_codes.mark_used(world.approver.pk, "222222") is False
