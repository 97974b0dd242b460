"""Pasting a PassRole error whose role ARN a terminal wrapped, in a real Chromium at 1280 and 390 px, on the moto demo
world: the wrapped ARN is rejoined and its role chosen with nothing marked wrong, and an ARN that is really cut is
said to be cut at its line."""

from __future__ import annotations

import pytest

from tests.conftest import screenshot
from tests.provisioning_support import PortalWorld
from tests.test_browser_flow import sign_in
from tests.test_intake_e2e import CUT, SERVICE_ROLE, WRAPPED

pytestmark = [pytest.mark.browser, pytest.mark.moto, pytest.mark.django_db(transaction=True)]

WIDTHS = (1280, 390)
MARKED_WRONG = ".invalid-feedback, .is-invalid, .alert-danger, #preview-panel .text-danger"


@pytest.fixture
def requester_page(demo_world, page):
    world = PortalWorld(demo_world)
    sign_in(page, "requester")
    world.page = page
    return world


def _paste(page, message: str, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto("/requests/paste/")
    page.fill("textarea[name=message]", message)
    page.click("text=Read the error")
    page.wait_for_selector("#request-form")


@pytest.mark.parametrize("shape", list(WRAPPED))
def test_a_wrapped_role_arn_is_rejoined_and_its_role_chosen_with_nothing_marked_wrong(requester_page, shape):
    world, page = requester_page, requester_page.page
    role = world.role("CodePipelineServiceRole")
    for width in WIDTHS:
        _paste(page, WRAPPED[shape], width)

        assert page.input_value("select[name=pass_role]") == str(role.pk)
        assert page.locator("select[name=pass_role]").is_visible()
        assert page.locator(MARKED_WRONG).count() == 0
        assert page.locator("[data-testid=intake-unmatched]").count() == 0
        assert SERVICE_ROLE in page.text_content("[data-testid=intake-summary]")
        assert SERVICE_ROLE in page.text_content("[data-testid=policy-preview]")
        screenshot(page, f"intake-wrapped-{shape}-{width}")


def test_a_cut_role_arn_is_said_to_be_cut_at_its_line_and_choosing_the_role_previews_it(requester_page):
    world, page = requester_page, requester_page.page
    role = world.role("CodePipelineServiceRole")
    for width in WIDTHS:
        _paste(page, CUT, width)

        unmatched = page.text_content("[data-testid=intake-unmatched]")
        assert "The role ARN seems cut at line 2:" in unmatched and "CodePipelineServi" in unmatched
        assert "sync the catalog" not in unmatched
        assert page.input_value("select[name=pass_role]") == ""
        assert page.locator(MARKED_WRONG).count() == 0
        screenshot(page, f"intake-cut-{width}")

    page.select_option("select[name=pass_role]", str(role.pk))
    page.wait_for_selector("[data-testid=policy-preview]")
    assert SERVICE_ROLE in page.text_content("[data-testid=policy-preview]")
    assert page.locator(MARKED_WRONG).count() == 0
