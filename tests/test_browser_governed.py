"""Governed changes in a real Chromium: one admin changes an account's environment in the admin, the page says it
waits; a second admin reads it on the Rule changes page, approves a rules file's set with one button, and the
dashboard lists what waits. Screenshots at 1280 and 390 px of each page."""

from __future__ import annotations

from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.urls import reverse

from accessrequests.governance import rules_file as governance
from accessrequests.models import AwsAccount, RuleChange, RuleChangeStatus
from tests.conftest import make_user, screenshot, sign_in_with_mfa
from tests.rules_support import Org

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _context(browser, live_server, client, user, width: int = 1280):
    sign_in_with_mfa(client, user)
    context = browser.new_context(base_url=live_server.url, viewport={"width": width, "height": 900})
    context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
    return context


def _both_widths(browser, live_server, client, user, url: str, name: str) -> str:
    """Open ``url`` at 1280 and 390 px, screenshot both; returns the page's text."""
    text = ""
    for width in (1280, 390):
        context = _context(browser, live_server, client, user, width)
        page = context.new_page()
        page.goto(url)
        text = page.inner_text("body")
        assert page.evaluate("document.documentElement.scrollWidth") <= max(width, 1280)
        screenshot(page, f"{name}-{width}")
        context.close()
    return text


def test_an_environment_change_and_a_rules_file_wait_for_a_second_admin_in_the_browser(
    browser, live_server, client, settings, tmp_path
):
    settings.GATEHOUSE_RULES_FILE = ""
    org = Org()
    first = make_user("admin-one", "admins", is_staff=True, is_superuser=True)
    second = make_user("admin-two", "admins", is_staff=True, is_superuser=True)

    context = _context(browser, live_server, client, first)
    page = context.new_page()
    page.goto(reverse("admin:accessrequests_awsaccount_change", args=[org.production.pk]))
    assert "The environment waits for a second admin" in page.inner_text("#rules-source")
    page.select_option("#id_environment", "development")
    page.click("input[name=_save]")
    page.wait_for_load_state()
    assert "Proposed: account 'production (111122223333)': environment production → development." in (
        page.inner_text("body")
    )
    screenshot(page, "admin-environment-proposed")
    context.close()
    assert AwsAccount.objects.get(pk=org.production.pk).environment == "production"

    document = governance.export_document()
    document["rules"][0]["approvals"] = 2
    document["rules"].append({"name": "Production", "accounts": ["111122223333"], "approver_groups": ["sre"]})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    call_command("rules", "apply", str(path), "--as", "admin-one", stdout=StringIO())

    pages = {
        "admin-account-governed": reverse("admin:accessrequests_awsaccount_change", args=[org.production.pk]),
        "admin-principal-governed": reverse("admin:accessrequests_principal_change", args=[org.principal.pk]),
        "admin-user-governed": reverse("admin:auth_user_change", args=[org.requester.pk]),
        "admin-group-governed": reverse(
            "admin:auth_group_change", args=[org.rule.approver_groups.first().pk]
        ),
    }
    for name, url in pages.items():
        assert "wait" in _both_widths(browser, live_server, client, first, url, name)
    client.logout()

    rule_change = RuleChange.objects.filter(change_set__gt="").order_by("pk").first()
    url = reverse("admin:accessrequests_rulechange_change", args=[rule_change.pk])
    text = _both_widths(browser, live_server, client, second, url, "admin-rule-change-set")
    assert "Proposed together (2 changes" in text
    assert "Approve and apply all 2 waiting changes of this set" in text
    dashboard = _both_widths(browser, live_server, client, second, reverse("dashboard"), "dashboard-governed")
    assert "Waiting for a second admin" in dashboard and "environment production → development" in dashboard

    context = _context(browser, live_server, client, second)
    page = context.new_page()
    page.goto(url)
    page.click("text=Approve and apply all 2 waiting changes of this set")
    page.wait_for_load_state()
    assert (
        "Approved and applied: rule 'Sandbox pipelines': approvals 1 → 2; rule 'Production'"
        in page.inner_text("body")
    )
    screenshot(page, "admin-rule-change-set-approved")
    context.close()
    assert RuleChange.objects.filter(status=RuleChangeStatus.APPROVED).count() == 2
