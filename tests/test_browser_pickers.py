"""The pickers in a real browser at 1280 and 390 px: type, arrow down, Enter; the listbox stays on screen; the
plain search page and the queue's account filter; no sideways scrolling on a phone."""

from __future__ import annotations

import pytest

from accessrequests.models import AwsAccount, OrganizationalUnit
from tests.conftest import enable_totp, screenshot
from tests.factories import World, make_account
from tests.test_browser_flow import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _org() -> World:
    world = World()
    unit = OrganizationalUnit.objects.create(ou_id="ou-prod", name="Prod", path="Root / Workloads / Prod")
    AwsAccount.objects.filter(pk=world.account.pk).update(ou=unit)
    for i in range(30):
        account = make_account(f"2100000000{i:02d}", f"sandbox-team-{i:02d}")
        account.ou = unit
        account.save()
    return world


@pytest.mark.parametrize("width", [1280, 390])
def test_the_account_picker_is_a_keyboard_combobox(page, width):
    world = _org()
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, "requester")
    page.goto("/requests/new/")
    box = page.locator("input[name=account]")
    assert box.get_attribute("role") == "combobox"
    box.fill("sand")
    page.wait_for_selector("input[name=account][data-searched=sand]")
    assert box.get_attribute("aria-expanded") == "true"
    # The requester's IAM user reaches only its own account: the others are not offered.
    assert page.locator("[role=option]").count() == 1
    page.keyboard.press("ArrowDown")
    assert page.locator("[role=option][aria-selected=true]").count() == 1
    screenshot(page, f"picker-open-{width}")
    page.keyboard.press("Enter")
    page.wait_for_selector("input[name=pipelines]")
    assert "sandbox</span> (123456789012) · Root / Workloads / Prod" in page.content()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    screenshot(page, f"picker-chosen-{width}")
    assert world.account.account_id == page.input_value("input[name=account]")


@pytest.mark.parametrize("width", [1280, 390])
def test_the_plain_search_page_and_the_queue_filter(page, width):
    world = _org()
    world.rule.accounts.add(*AwsAccount.objects.all())
    secret = enable_totp(world.approver)
    page.set_viewport_size({"width": width, "height": 900})
    sign_in(page, "approver", totp_secret=secret)
    page.goto("/catalog/search/?kind=account&scope=review&q=team")
    assert page.locator("[data-testid=search-results] li").count() == 20
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    screenshot(page, f"search-page-{width}")
    page.goto("/review/")
    page.fill("input[name=account]", "team-07")
    page.wait_for_selector("input[name=account][data-searched=team-07]")
    assert page.locator("[role=option]").count() == 1
    screenshot(page, f"queue-filter-{width}")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_url("**/review/?account=210000000007*")
    assert page.evaluate("document.documentElement.scrollWidth") <= width


def test_many_pipelines_are_picked_by_name_with_the_keyboard(page):
    from accessrequests.views import forms as request_forms
    from tests.factories import make_pipeline

    world = _org()
    for i in range(request_forms.PIPELINE_CHECKBOXES + 1):
        make_pipeline(world.account, f"bulk-{i:03d}")
    page.set_viewport_size({"width": 390, "height": 900})
    sign_in(page, "requester")
    page.goto(f"/requests/new/?account={world.account.account_id}")
    page.fill("input[name=pipeline_names]", "bulk-04")
    page.wait_for_selector("input[name=pipeline_names][data-searched=bulk-04]")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    assert page.input_value("input[name=pipeline_names]").strip() == "bulk-040"
    screenshot(page, "picker-pipelines-390")
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
