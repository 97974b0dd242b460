"""A rule change in a real Chromium: one admin saves a rule in the admin, it waits; a second admin reads the
change in words on the Rule changes page and approves it with the button; the rule is then in force."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accessrequests.models import ApprovalRule, RuleChange, RuleChangeStatus
from tests.conftest import make_user, screenshot, sign_in_with_mfa
from tests.factories import World

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _context(browser, live_server, client, user):
    sign_in_with_mfa(client, user)
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    return context


def test_a_rule_change_is_proposed_by_one_admin_and_approved_by_another_in_the_browser(
    browser, live_server, client
):
    world = World()
    Group.objects.get_or_create(name="sre")
    first = make_user("admin-one", "admins", is_staff=True, is_superuser=True)
    second = make_user("admin-two", "admins", is_staff=True, is_superuser=True)

    context = _context(browser, live_server, client, first)
    page = context.new_page()
    page.goto(reverse("admin:accessrequests_approvalrule_change", args=[world.rule.pk]))
    assert "A change saved here waits for a second admin" in page.inner_text("#rules-source")
    page.fill("#id_approvals_required", "2")
    page.click("input[name=_save]")
    page.wait_for_url("**/rulechange/*/change/")
    body = page.inner_text("body")
    assert "rule 'Sandbox pipelines': approvals 1 → 2" in body
    assert "approvals: 1" in body and "approvals: 2" in body  # the rule before and after, as in a rules file
    assert "You proposed this change; another admin must decide it." in page.inner_text("#decide-problem")
    assert page.locator("text=Approve and apply").count() == 0
    screenshot(page, "admin-rule-change-proposed")
    context.close()
    assert ApprovalRule.objects.get(pk=world.rule.pk).approvals_required == 1

    client.logout()
    context = _context(browser, live_server, client, second)
    page = context.new_page()
    change = RuleChange.objects.get()
    page.goto(reverse("admin:accessrequests_rulechange_change", args=[change.pk]))
    page.fill("#id_decision_comment", "as agreed")
    page.click("text=Approve and apply")
    page.wait_for_load_state()
    assert "Approved and applied: rule 'Sandbox pipelines': approvals 1 → 2." in page.inner_text("body")
    screenshot(page, "admin-rule-change-approved")
    context.close()
    change.refresh_from_db()
    assert change.status == RuleChangeStatus.APPROVED and change.comment == "as agreed"
    assert ApprovalRule.objects.get(pk=world.rule.pk).approvals_required == 2
