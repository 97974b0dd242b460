"""The second factor where it matters: the admin's sign-in, every decision (web and API), and API tokens that
carry scopes, expire and die with a password change or a deactivation. All through real HTTP requests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accessrequests.models import AccessRequest, ApiToken, AuditEvent, Decision, RequestStatus
from tests.conftest import (
    ROOT,
    current_code,
    database_url_for_subprocess,
    enable_totp,
    make_user,
    sign_in_with_mfa,
)
from tests.factories import World, make_token

pytestmark = pytest.mark.django_db
PASSWORD = "correct-horse-battery"


@pytest.fixture
def admin():
    user = make_user("root", "admins", is_staff=True, is_superuser=True)
    enable_totp(user)
    return user


def _signed_in_as(client: Client):
    return client.session.get("_auth_user_id")


# --- the Django admin's own sign-in is allauth's ----------------------------------------------------------


def test_the_admin_login_page_is_the_portals_sign_in(client, admin):
    page = client.get(reverse("admin:login"), follow=True)
    assert page.status_code == 200
    assert b"Sign in to Gatehouse" in page.content
    assert b'name="next" value="/admin/"' in page.content


def test_the_right_password_at_the_admin_login_does_not_open_the_admin_without_the_second_factor(
    client, admin
):
    response = client.post(
        reverse("admin:login") + "?next=/admin/", {"login": "root", "password": PASSWORD, "next": "/admin/"}
    )
    assert response.status_code == 302 and response["Location"] == reverse("mfa_authenticate")
    assert _signed_in_as(client) is None
    assert client.get(reverse("admin:index")).status_code == 302  # still outside
    # Django's own admin form fields go nowhere either.
    assert (
        Client().post(reverse("admin:login"), {"username": "root", "password": PASSWORD}).status_code == 200
    )
    finished = client.post(reverse("mfa_authenticate"), {"code": current_code(admin)})
    assert finished.status_code == 302 and finished["Location"] == "/admin/"
    assert client.get(reverse("admin:index")).status_code == 200
    login = AuditEvent.objects.get(action="auth.login")
    assert login.actor == admin


def test_wrong_passwords_at_the_admin_login_are_throttled_like_the_portal_login(client, admin):
    for _ in range(20):
        client.post(reverse("admin:login"), {"login": "root", "password": "guess"})
    refused = client.post(reverse("admin:login"), {"login": "root", "password": PASSWORD})
    assert b"Too many failed login attempts" in refused.content
    assert _signed_in_as(client) is None
    assert AuditEvent.objects.filter(action="auth.login_failed").count() >= 5
    # The portal's own login page shares the counter: it is the same lock on the same name.
    portal = Client().post(reverse("account_login"), {"login": "root", "password": PASSWORD})
    assert b"Too many failed login attempts" in portal.content


@pytest.mark.django_db(transaction=True)
def test_the_throttle_is_shared_by_every_process(client, admin, settings):
    """Wrong passwords here until this process is throttled; the right one, sent by another process, is
    refused too: the counter is in the shared cache, not in this process's memory."""
    # The other process checks passwords with the production hashers, not the tests' fast one.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]
    admin.set_password(PASSWORD)
    admin.save()
    for _ in range(6):
        last = client.post(reverse("account_login"), {"login": "root", "password": "guess"})
    assert b"Too many failed login attempts" in last.content
    script = (
        "import django, os; django.setup()\n"
        "from django.test import Client\n"
        f"r = Client().post('/accounts/login/', {{'login': 'root', 'password': {PASSWORD!r}}})\n"
        "print('THROTTLED' if b'Too many failed login attempts' in r.content else 'OPEN', r.status_code)\n"
    )
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocess(),
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "GATEHOUSE_CACHE_PREFIX": settings.CACHES["default"]["KEY_PREFIX"],
        "ALLOWED_HOSTS": "testserver",  # allauth keys the counter by site (the host) and login name
        "DEBUG": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert "THROTTLED" in done.stdout, done.stdout + done.stderr


def test_a_staff_session_without_a_second_factor_is_sent_to_confirm_one(client, admin):
    client.force_login(admin)  # a session that never presented the second factor
    response = client.get(reverse("admin:index"), follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("mfa_reauthenticate"))
    client.post(reverse("mfa_reauthenticate"), {"code": current_code(admin)})
    assert client.get(reverse("admin:index")).status_code == 200


# --- every decision needs a fresh second factor --------------------------------------------------------


@pytest.fixture
def world():
    w = World()
    enable_totp(w.approver)
    return w


def _age_second_factor(client: Client, minutes: int) -> None:
    from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY

    session = client.session
    records = session[AUTHENTICATION_METHODS_SESSION_KEY]
    for record in records:
        record["at"] = time.time() - minutes * 60
    session[AUTHENTICATION_METHODS_SESSION_KEY] = records
    session.save()


def _code(user, steps_ahead: int = 0) -> str:
    """The code the user's authenticator shows now, or ``steps_ahead`` periods later (allauth accepts the next one
    too, MFA_TOTP_TOLERANCE): a second, unused code for the same minute."""
    from allauth.mfa import app_settings
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
    from allauth.mfa.utils import decrypt

    secret = decrypt(Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP).data["secret"])
    return format_hotp_value(hotp_value(secret, int(time.time()) // app_settings.TOTP_PERIOD + steps_ahead))


def test_an_approver_whose_second_factor_is_old_confirms_it_and_the_approval_goes_through_with_the_comment(
    client, world
):
    req = world.submit()
    sign_in_with_mfa(client, world.approver)
    _age_second_factor(client, minutes=6)
    review = reverse("review", args=[req.pk])
    asked = client.post(review, {"decision": "approve", "comment": "ok for the release"})
    assert asked.status_code == 302 and asked["Location"].startswith(reverse("mfa_reauthenticate"))
    assert not Decision.objects.exists()
    prompt = client.get(asked["Location"]).content.decode()
    assert f"approve {req.reference}" in prompt  # the prompt says what the code is for
    done = client.post(asked["Location"], {"code": current_code(world.approver)})
    # The code carries the approval through: no second press of Approve.
    assert done.status_code == 302 and done["Location"] == reverse("queue")
    req.refresh_from_db()
    assert req.status == RequestStatus.APPROVED
    recorded = AuditEvent.objects.get(action="request.approval_recorded")
    decision = recorded.after["decision"]
    assert (decision["second_factor"]["method"], decision["second_factor"]["via"]) == ("totp", "session")
    assert decision["comment"] == "ok for the release" and decision["outcome"] == "approve"
    assert f"{req.reference} is now approved" in client.get(done["Location"]).content.decode()


def test_the_step_up_prompt_offers_only_a_second_factor_never_the_password(client, world):
    req = world.submit()
    sign_in_with_mfa(client, world.approver)
    _age_second_factor(client, minutes=6)
    asked = client.post(reverse("review", args=[req.pk]), {"decision": "approve", "comment": "ok"})
    prompt = client.get(asked["Location"]).content.decode()
    assert "Use your password" not in prompt and reverse("account_reauthenticate") not in prompt
    # The password page itself sends a person with a second factor back to it.
    password_page = client.get(
        reverse("account_reauthenticate") + "?next=" + reverse("review", args=[req.pk])
    )
    assert password_page.status_code == 302
    assert password_page["Location"].startswith(reverse("mfa_reauthenticate"))
    typed = client.post(reverse("account_reauthenticate"), {"password": PASSWORD})
    assert typed.status_code == 302 and typed["Location"].startswith(reverse("mfa_reauthenticate"))
    # The password counted for nothing: the decision still asks for the code.
    still = client.post(reverse("review", args=[req.pk]), {"decision": "approve", "comment": "ok"})
    assert still["Location"].startswith(reverse("mfa_reauthenticate"))
    assert not Decision.objects.exists()


def test_a_decision_carried_through_the_step_up_happens_once_whatever_is_replayed(client, world):
    world.rule.approvals_required = 2  # still pending after one approval: a replay would be a second decision
    world.rule.save()
    req = world.submit()
    sign_in_with_mfa(client, world.approver)
    _age_second_factor(client, minutes=6)
    review = reverse("review", args=[req.pk])
    asked = client.post(review, {"decision": "approve", "comment": "checked the diff"})
    assert client.post(asked["Location"], {"code": _code(world.approver)}).status_code == 302
    assert Decision.objects.filter(request=req).count() == 1
    # Back to the prompt and a fresh code: the held decision was used up.
    again = client.post(asked["Location"], {"code": _code(world.approver, 1)})
    assert again.status_code == 302 and again["Location"] == review
    # Back to the review page and its form sent again: refused, not recorded twice.
    replay = client.post(review, {"decision": "approve", "comment": "checked the diff"}, follow=True)
    assert "already decided" in replay.content.decode()
    assert Decision.objects.filter(request=req).count() == 1
    assert AuditEvent.objects.filter(action="request.approval_recorded").count() == 1


@pytest.mark.parametrize("stale", ["older_than_the_window", "another_users", "asked_for_another_page"])
def test_a_held_decision_is_not_sent_when_stale_not_the_users_or_not_what_the_code_was_for(
    client, world, stale
):
    from allauth.account.internal.flows.reauthentication import STATE_SESSION_KEY

    req = world.submit()
    sign_in_with_mfa(client, world.approver)
    _age_second_factor(client, minutes=6)
    review = reverse("review", args=[req.pk])
    asked = client.post(review, {"decision": "deny", "comment": "not during the freeze"})
    session = client.session
    held = session[STATE_SESSION_KEY]
    if stale == "older_than_the_window":
        held["state"]["at"] -= 301
    elif stale == "another_users":
        held["state"]["user"] = world.approver2.pk
    else:  # the code was asked for another page (say the admin, in another tab) while this decision was held
        held["state"]["back"] = reverse("queue")
    session[STATE_SESSION_KEY] = held
    session.save()
    back = client.post(asked["Location"], {"code": current_code(world.approver)})
    assert back.status_code == 302 and back["Location"] == review
    assert not Decision.objects.exists()
    page = client.get(review).content.decode()
    if stale == "asked_for_another_page":
        assert "Confirmed" not in page  # nothing of this decision was held for that page
    else:
        assert "Confirmed — now press Deny" in page and "not during the freeze" in page


def test_a_break_glass_post_review_carried_through_the_step_up_is_recorded_with_its_comment(client, world):
    from django.contrib.auth.models import Group

    from accessrequests.models import BreakGlassReview
    from accessrequests.workflow.break_glass import break_glass_submit
    from tests.factories import make_principal

    oncall = make_user("oncall", "requesters", "oncall")
    own = make_principal(world.account, "oncall-p", users=[oncall])  # break-glass gives only one's own access
    world.rule.break_glass_groups.add(Group.objects.get(name="oncall"))
    used = break_glass_submit(
        requester=oncall,
        draft=world.draft(principal=own, duration_hours=1, justification="Release blocked"),
        incident="INC-7",
    )
    sign_in_with_mfa(client, world.approver)
    _age_second_factor(client, minutes=6)
    page = reverse("break_glass_review", args=[used.pk])
    asked = client.post(page, {"outcome": "justified", "comment": "Matches INC-7"})
    assert asked["Location"].startswith(reverse("mfa_reauthenticate"))
    done = client.post(asked["Location"], {"code": current_code(world.approver)})
    assert done.status_code == 302 and done["Location"] == reverse("request_detail", args=[used.pk])
    review = BreakGlassReview.objects.get(request=used)
    assert (review.reviewer, review.outcome, review.comment) == (world.approver, "justified", "Matches INC-7")


# --- setting up two-factor authentication ------------------------------------------------------------


def test_the_banner_says_two_factor_is_set_up_only_once_it_is_and_says_what_to_do_before(client, world):
    from allauth.mfa.totp.internal.auth import SECRET_SESSION_KEY

    from tests.conftest import totp_code

    fresh = make_user("fresh-approver", "approvers", password=PASSWORD)
    world.rule.approver_users.add(fresh)
    req = world.submit()
    client.force_login(fresh)
    client.get(reverse("review", args=[req.pk]))  # read-only, with the banner that leads to the setup
    # allauth asks for the password before showing the QR code.
    password = client.get(reverse("mfa_activate_totp"), follow=True)
    assert password.redirect_chain[-1][0].startswith(reverse("account_reauthenticate"))
    html = password.content.decode()
    assert "Two-factor authentication is set up" not in html and 'data-testid="after-mfa"' not in html
    assert 'data-testid="mfa-setup-step"' in html and "step 1 of 2" in html
    activation = client.post(password.redirect_chain[-1][0], {"password": PASSWORD}, follow=True)
    assert activation.redirect_chain[-1][0] == reverse("mfa_activate_totp")
    html = activation.content.decode()
    assert "Two-factor authentication is set up" not in html and 'data-testid="after-mfa"' not in html
    assert "step 2 of 2" in html and "scan" in html.lower()
    wrong = client.post(reverse("mfa_activate_totp"), {"code": "000000"}).content.decode()
    assert "Two-factor authentication is set up" not in wrong
    done = client.post(
        reverse("mfa_activate_totp"), {"code": totp_code(client.session[SECRET_SESSION_KEY])}, follow=True
    )
    html = done.content.decode()
    assert 'data-testid="after-mfa"' in html and "Two-factor authentication is set up" in html
    assert client.get(reverse("continue_after_mfa"))["Location"] == reverse("review", args=[req.pk])


def test_api_decisions_need_a_valid_fresh_code(world):
    from tests.test_api import Api

    req = world.submit()
    api = Api(world.approver)
    for body in ({}, {"otp": "000000"}, {"otp": "not-a-code"}):
        refused = api.post(f"requests/{req.pk}/approve/", body)
        assert refused.status_code == 403 and refused["Content-Type"] == "application/json"
        assert "second factor" in refused.json()["error"]
    assert not Decision.objects.exists()
    assert api.decide(f"requests/{req.pk}/approve/").status_code == 200


# --- tokens: scopes, expiry, death ---------------------------------------------------------------------


def _bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_a_read_token_cannot_file_or_decide(world):
    _, reader = make_token(world.requester, "reader", scopes=["read"])
    _, approver_reader = make_token(world.approver, "reader", scopes=["read"])
    api = Client()
    assert api.get("/api/v1/requests/", **_bearer(reader)).status_code == 200
    filed = api.post(
        "/api/v1/requests/",
        json.dumps({"message": "x", "justification": "y"}),
        content_type="application/json",
        **_bearer(reader),
    )
    assert filed.status_code == 403 and "scope" in filed.json()["error"]
    req = world.submit()
    decided = api.post(
        f"/api/v1/requests/{req.pk}/approve/",
        json.dumps({"otp": current_code(world.approver)}),
        content_type="application/json",
        **_bearer(approver_reader),
    )
    assert decided.status_code == 403 and "decide" in decided.json()["error"]
    assert AccessRequest.objects.count() == 1 and not Decision.objects.exists()


def test_a_token_older_than_a_password_change_is_refused(world):
    _, raw = make_token(world.requester, "laptop")
    assert Client().get("/api/v1/requests/", **_bearer(raw)).status_code == 200
    browser = Client()
    browser.force_login(world.requester)
    changed = browser.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": "a-new-long-passphrase", "password2": "a-new-long-passphrase"},
    )
    assert changed.status_code == 302
    assert Client().get("/api/v1/requests/", **_bearer(raw)).status_code == 401
    event = AuditEvent.objects.get(action="auth.password_changed")
    assert event.actor == world.requester and event.after["api_tokens_revoked"] == 1
    assert "a-new-long-passphrase" not in json.dumps([event.before, event.after])


def test_a_token_refused_once_its_password_changes_even_when_nothing_revoked_it(world):
    """The stamp alone kills it: a password set through any path (here the ORM) that skipped the signal."""
    token, raw = make_token(world.requester, "laptop")
    world.requester.set_password("another-long-passphrase")
    type(world.requester).objects.filter(pk=world.requester.pk).update(password=world.requester.password)
    assert ApiToken.objects.get(pk=token.pk).revoked_at is None
    assert Client().get("/api/v1/requests/", **_bearer(raw)).status_code == 401


def test_an_expired_token_is_refused(world):
    token, raw = make_token(world.requester, "laptop", days=7)
    assert Client().get("/api/v1/requests/", **_bearer(raw)).status_code == 200
    ApiToken.objects.filter(pk=token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert Client().get("/api/v1/requests/", **_bearer(raw)).status_code == 401


def test_a_deactivated_users_tokens_die_and_it_is_audited(world):
    _, raw = make_token(world.requester, "laptop")
    world.requester.is_active = False
    world.requester.save()
    assert Client().get("/api/v1/requests/", **_bearer(raw)).status_code == 401
    event = AuditEvent.objects.get(action="auth.user_deactivated")
    assert event.after == {"is_active": False, "user": "requester", "api_tokens_revoked": 1}


def test_a_token_lives_at_most_a_year_and_only_with_scopes_its_user_may_hold(client, world):
    client.force_login(world.requester)
    for fields in (
        {"name": "forever", "scopes": ["read"], "days": 3650},
        {"name": "decider", "scopes": ["read", "decide"], "days": 30},
        {"name": "nothing", "days": 30},
    ):
        assert client.post(reverse("tokens"), fields).status_code == 400
    assert not ApiToken.objects.exists()
