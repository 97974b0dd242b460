"""Routing by what accounts are, in a real Chromium at 1280 and 390 px: an admin writes a rule by environment and
tags in the admin's form; the second admin reads, on the pending change, which accounts it would move to fewer
approvals, and approves it. An account tagged in Organizations shows its environment read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accessrequests.models import ApprovalRule, Environment, RuleChange, RuleChangeStatus
from tests.conftest import make_user, screenshot, sign_in_with_mfa
from tests.factories import World, make_account

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _context(browser, live_server, client, user, width: int):
    sign_in_with_mfa(client, user)
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": 900})
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    return context


@pytest.mark.parametrize("width", [1280, 390])
def test_a_rule_by_environment_shows_the_accounts_it_would_move_before_the_second_admin_approves(
    browser, live_server, client, width
):
    world = World()
    make_account("111122223333", "payments-prod", Environment.PRODUCTION)
    production = ApprovalRule.objects.create(
        name="Production", priority=10, approvals_required=2, environments=["production"]
    )
    production.approver_groups.add(Group.objects.get(name="approvers"))
    first = make_user("admin-one", "admins", is_staff=True, is_superuser=True)
    second = make_user("admin-two", "admins", is_staff=True, is_superuser=True)

    context = _context(browser, live_server, client, first, width)
    page = context.new_page()
    page.goto(reverse("admin:accessrequests_approvalrule_add"))
    page.fill("#id_name", "Payments team")
    page.fill("#id_priority", "1")
    page.fill("#id_account_tags", "team = payments")
    page.check("input[name=environments][value=production]")
    page.check("input[name=environments][value=staging]")
    screenshot(page, f"admin-rule-by-environment-form-{width}")
    page.click("input[name=_save]")
    page.wait_for_url("**/rulechange/*/change/")
    assert "tagged team=payments" in page.inner_text("body")
    context.close()

    # The account joins the team: the plan now moves it. (Tags come from Organizations; set here for the test.)
    world.account.__class__.objects.filter(account_id="111122223333").update(tags={"team": "payments"})
    client.logout()
    context = _context(browser, live_server, client, second, width)
    page = context.new_page()
    change = RuleChange.objects.get()
    page.goto(reverse("admin:accessrequests_rulechange_change", args=[change.pk]))
    plan = page.inner_text(".routing-plan")
    assert "⚠ 1 account moves to fewer approvals:" in plan
    assert "111122223333 payments-prod: Production (2 approvals) → Payments team (1 approval)" in plan
    # Nothing scrolls sideways on a phone: the plan wraps inside the page.
    assert page.evaluate("document.documentElement.scrollWidth") <= width + 1
    screenshot(page, f"admin-rule-change-routing-{width}")
    page.click("text=Approve and apply")
    page.wait_for_load_state()
    assert "Approved and applied" in page.inner_text("body")
    context.close()
    change.refresh_from_db()
    assert change.status == RuleChangeStatus.APPROVED
    assert ApprovalRule.objects.get(name="Payments team").account_tags == {"team": ["payments"]}


@pytest.mark.parametrize("width", [1280, 390])
def test_an_account_tagged_in_organizations_shows_its_environment_read_only(
    browser, live_server, client, width
):
    World()
    tagged = make_account("111122223333", "payments-prod", Environment.PRODUCTION)
    tagged.tags = {"environment": "production", "team": "payments"}
    tagged.save()
    make_account("444455556666", "newcomer", Environment.UNKNOWN)
    admin = make_user("admin-one", "admins", is_staff=True, is_superuser=True)
    context = _context(browser, live_server, client, admin, width)
    page = context.new_page()
    page.goto(reverse("admin:accessrequests_awsaccount_change", args=[tagged.pk]))
    assert page.locator("select[name=environment]").count() == 0
    assert "Organizations sets this account's environment (its environment tag)" in page.inner_text("body")
    assert "team" in page.inner_text("body")
    screenshot(page, f"admin-account-tagged-{width}")
    page.goto(reverse("dashboard"))
    assert "no environment: requests refused until it is tagged" in page.inner_text("body")
    screenshot(page, f"dashboard-accounts-{width}")
    context.close()
