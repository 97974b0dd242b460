"""A TOTP code counts once, as a person at the sign-in page meets it: the code they typed a moment ago (or one read
over their shoulder) is refused with a message that says a code counts once, on a wide screen and a phone, and the authenticator's next
code lets them in. The record is the database's (``accessrequests/authz/used_codes.py``), shared with the API."""

from __future__ import annotations

import time

import pytest
from allauth.mfa import app_settings
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

from accessrequests.models import UsedTotpCode
from tests.conftest import enable_totp, make_user, screenshot, totp_code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"
PHONE = {"width": 390, "height": 844}


def _password_step(page, username: str) -> None:
    page.context.clear_cookies()
    page.goto("/accounts/login/")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("input[name=code]")


def test_a_sign_in_code_typed_again_is_refused_on_the_page_and_the_next_code_works(page):
    user = make_user("approver-codes", "approvers", password=PASSWORD)
    secret = enable_totp(user)
    code = totp_code(secret)

    _password_step(page, user.username)
    page.fill("input[name=code]", code)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")
    assert UsedTotpCode.objects.filter(user=user).count() == 1

    _password_step(page, user.username)  # signed out, and the same code typed again
    page.fill("input[name=code]", code)
    page.click("button[type=submit]")
    page.get_by_text("or it was used already (each code counts once)").first.wait_for()
    assert page.locator("[data-testid=current-user]").count() == 0
    screenshot(page, "sign-in-code-used-1280")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "sign-in-code-used-390")

    following = format_hotp_value(hotp_value(secret, int(time.time()) // app_settings.TOTP_PERIOD + 1))
    page.fill("input[name=code]", following)  # the app's next code (allauth accepts one step ahead)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")
    assert UsedTotpCode.objects.filter(user=user).count() == 2
