"""Every page of the portal in a real Chromium on a 390 px phone: nothing scrolls sideways, each list row's primary
action is in view, and no page asks the server for something it does not have (no 404 in the console)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from accessrequests.workflow.requests import request_approve
from tests.conftest import enable_totp, make_user, screenshot, sign_in_with_mfa
from tests.factories import World, fresh_factor

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE = {"width": 390, "height": 844}


def _signed_in_context(browser, live_server, client, user):
    """A browser context carrying the session of ``user`` (signed in with their second factor)."""
    sign_in_with_mfa(client, user) if user.authenticator_set.exists() else client.force_login(user)
    context = browser.new_context(base_url=live_server.url, viewport=PHONE)
    cookie = client.cookies["sessionid"]
    context.add_cookies([{"name": "sessionid", "value": cookie.value, "url": live_server.url}])
    return context


def _walk(context, paths: list[str], name: str) -> None:
    page = context.new_page()
    missing: list[str] = []
    page.on("response", lambda r: missing.append(f"{r.status} {r.url}") if r.status == 404 else None)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    for path in paths:
        response = page.goto(path)
        assert response is not None and response.status < 400, (path, response and response.status)
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= PHONE["width"], f"{path} is {width} px wide on a {PHONE['width']} px phone"
        for action in page.locator("[data-testid=row-action]").all():
            box = action.bounding_box()
            assert action.is_visible() and box is not None and box["x"] + box["width"] <= PHONE["width"], path
        screenshot(page, f"phone-{name}-{path.strip('/').replace('/', '-') or 'home'}")
    assert missing == [] and errors == [], (missing, errors)


def test_every_page_fits_a_phone(browser, live_server, client):
    world = World(approvals=1)
    enable_totp(world.approver)
    admin = make_user("boss", "admins", is_staff=True, is_superuser=True)
    auditor = make_user("reader", "auditors")
    pending = world.submit(justification="A long justification " * 8)
    granted = world.submit(level="operator")
    request_approve(
        request_id=granted.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    today = timezone.now().strftime("%Y-%m-%dT00:00")
    requester_pages = [
        "/", "/requests/", "/requests/new/", f"/requests/new/?account={world.account.pk}", "/requests/paste/",
        f"/requests/{pending.pk}/", f"/requests/{granted.pk}/", "/tokens/", "/accounts/2fa/",
        "/catalog/search/?kind=account&q=sand", "/catalog/search/?kind=ou",
    ]  # fmt: skip
    approver_pages = [
        "/", "/review/", f"/review/{pending.pk}/", f"/requests/{granted.pk}/",
        "/catalog/search/?kind=account&scope=review",
    ]  # fmt: skip
    auditor_pages = [
        "/", "/dashboard/", "/audit/", f"/audit/?account={world.account.account_id}",
        f"/audit/access/?since={today}&until=2100-01-01T00:00", f"/requests/{granted.pk}/",
    ]  # fmt: skip
    for user, pages, name in (
        (world.requester, requester_pages, "requester"),
        (world.approver, approver_pages, "approver"),
        (auditor, auditor_pages, "auditor"),
        (admin, ["/dashboard/", "/audit/"], "admin"),
    ):
        context = _signed_in_context(browser, live_server, client, user)
        try:
            _walk(context, pages, name)
        finally:
            context.close()
    # Signed out: the sign-in page too.
    context = browser.new_context(base_url=live_server.url, viewport=PHONE)
    try:
        _walk(context, ["/accounts/login/"], "anonymous")
    finally:
        context.close()


def test_revoke_and_cancel_ask_first_with_javascript_too(page):
    world = World()
    pending = world.submit()
    granted = world.submit(level="operator")
    request_approve(
        request_id=granted.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    from tests.test_browser_flow import sign_in

    sign_in(page, "requester")
    page.goto(f"/requests/{granted.pk}/")
    page.click("button:has-text('Revoke now')")
    page.wait_for_selector("[data-testid=confirm]")
    assert "Revoke GH-" in page.text_content("h1")
    granted.grant.refresh_from_db()
    assert granted.grant.status == "queued"  # nothing happened yet
    page.click("[data-testid=confirm]")
    page.wait_for_selector("text=Revocation queued")
    page.goto(f"/requests/{pending.pk}/")
    page.click("button:has-text('Cancel request')")
    page.wait_for_selector("[data-testid=confirm]")
    page.click("text=Keep it pending")
    page.wait_for_selector("[data-testid=request-status]")
    pending.refresh_from_db()
    assert pending.status == "pending"
