"""Admins and auditors use the dashboard and the audit log in a real Chromium."""

from __future__ import annotations

import pytest

from accessrequests.models import Grant, GrantStatus
from accessrequests.workflow.requests import request_approve
from tests.conftest import make_user, screenshot, verify_export
from tests.factories import World, force_update, fresh_factor

PASSWORD = "correct-horse-battery"


def sign_in(page, username: str) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_admin_and_auditor_read_the_dashboard_filter_the_log_and_download_an_export(page, tmp_path):
    world = World()
    first = world.submit()
    request_approve(request_id=first.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    force_update(Grant.objects.filter(request=first), status=GrantStatus.FAILED, last_error="Rate exceeded")
    second = world.submit(level="operator")
    make_user("boss", "admins")
    make_user("auditor", "auditors")

    sign_in(page, "boss")
    page.click("text=Dashboard")
    page.wait_for_selector("[data-testid=figures]")
    assert "Rate exceeded" in page.text_content("[data-testid=stuck]")
    screenshot(page, "dashboard-admin")
    page.click("text=Sign out")

    sign_in(page, "auditor")
    page.click("text=Dashboard")
    page.wait_for_selector("[data-testid=figures]")
    assert "Retry now" not in page.content()
    screenshot(page, "dashboard-auditor")
    page.click("nav >> text=Audit")
    page.fill("input[name=request_ref]", second.reference)
    with page.expect_navigation():
        page.click("form[aria-label='Filter events'] button[type=submit]")
    assert f"request_ref={second.reference}" in page.url
    rows = page.locator("[data-testid=audit-table] tbody tr")
    assert rows.count() == 1
    assert "request.created" in rows.first.text_content()
    screenshot(page, "audit-log-filtered")
    # The export and its manifest, saved side by side under the names the browser was given.
    with page.expect_download() as download:
        page.click("[data-testid=export-csv]")
    path = tmp_path / download.value.suggested_filename
    download.value.save_as(path)
    with page.expect_download() as manifest:
        page.click("[data-testid=manifest-csv]")
    assert manifest.value.suggested_filename == path.name + ".manifest.json"
    manifest.value.save_as(tmp_path / manifest.value.suggested_filename)
    verified = verify_export(path)
    assert verified.returncode == 0, verified.stdout
    assert "OK: 1 event (" in verified.stdout
    assert "filtered export (request_ref=" in verified.stdout


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_auditor_sees_the_red_banner_when_the_trail_is_broken(page):
    from accessrequests import tasks
    from accessrequests.audit import checkpoints
    from accessrequests.audit import trail as audit
    from tests.test_audit import tampering

    make_user("auditor", "auditors")
    for n in range(8):
        audit.record(action="test.event", object_type="thing", object_id=n)
    checkpoints.write()
    with tampering() as cursor:
        cursor.execute("DELETE FROM accessrequests_auditevent WHERE seq = 3")
    tasks.verify_audit_trail()

    sign_in(page, "auditor")
    page.click("nav >> text=Audit")
    banner = page.wait_for_selector("[data-testid=integrity-banner]")
    assert "failed its integrity check" in banner.text_content()
    assert "seq 3" in banner.text_content()
    # Events from the first problem on are marked as not proven.
    assert page.locator("[data-testid=audit-table] tbody tr.table-danger").count() >= 5
    screenshot(page, "audit-integrity-banner")
