"""The request form with the mistakes a newcomer makes, in a real Chromium at 1280 and 390 px (screenshots in
var/artifacts/form-*): the duration follows the rule's maximum so the default submits, the preview and Submit agree;
cross-account access asks only for the outside party; what is wrong is listed once, at the top, with links to the
fields; a justification too long is said before it is cut."""

from __future__ import annotations

import pytest

from accessrequests.models import AccessLevel, AccessRequest
from tests.conftest import screenshot
from tests.factories import World, make_pipeline
from tests.test_browser_flow import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = (1280, 390)
OUTSIDE = "210987654321"


@pytest.fixture
def production():
    """The demo's shape: the account's rule allows at most 4 hours, less than the usual 8."""
    world = World()
    world.rule.name, world.rule.max_duration_hours = "Production", 4
    world.rule.save()
    return world


def _open_form(page, world, width: int) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.goto(f"/requests/new/?account={world.account.pk}")
    page.wait_for_selector("select[name=principal]")


def _choose(page, world, pipeline) -> None:
    page.select_option("select[name=principal]", str(world.principal.pk))
    page.check(f"input[name=pipelines][value='{pipeline.pk}']")
    page.select_option("select[name=level]", AccessLevel.VIEWER)


def _preview_says(page, text: str) -> None:
    page.wait_for_function(
        "text => (document.querySelector('[data-testid=preview-duration]') || {}).textContent?.includes(text)",
        arg=text,
    )


def test_the_default_duration_is_the_rules_maximum_and_submits(production, page):
    world = production
    sign_in(page, "requester")
    pipelines = [world.pipeline, make_pipeline(world.account, "other-pipeline")]
    for width, pipeline in zip(WIDTHS, pipelines, strict=True):
        _open_form(page, world, width)
        assert page.input_value("input[name=duration_hours]") == ""
        _choose(page, world, pipeline)
        _preview_says(page, "Asks for 4 hours from approval.")
        assert "the most the rule “Production” allows" in page.text_content("#preview-panel")
        assert page.get_attribute("input[name=duration_hours]", "placeholder") == "4"
        page.fill("textarea[name=justification]", "Reading the deploy's state")
        screenshot(page, f"form-duration-default-{width}")
        page.click("button[value=submit]")
        page.wait_for_selector("[data-testid=request-status]")
        assert AccessRequest.objects.get(pipelines=pipeline).duration_hours == 4


def test_more_hours_than_the_rule_allows_are_brought_down_in_the_field_as_in_the_preview(production, page):
    world = production
    sign_in(page, "requester")
    pipelines = [world.pipeline, make_pipeline(world.account, "other-pipeline")]
    for width, pipeline in zip(WIDTHS, pipelines, strict=True):
        _open_form(page, world, width)
        _choose(page, world, pipeline)
        page.fill("input[name=duration_hours]", "8")
        page.press("input[name=duration_hours]", "Tab")  # the change is sent when the field is left
        page.wait_for_function("document.querySelector('input[name=duration_hours]').value === '4'")
        _preview_says(page, "Asks for 4 hours from approval.")
        page.fill("textarea[name=justification]", "Reading the deploy's state")
        screenshot(page, f"form-duration-brought-down-{width}")
        page.click("button[value=submit]")
        page.wait_for_selector("[data-testid=request-status]")
        assert AccessRequest.objects.get(pipelines=pipeline).duration_hours == 4


def test_cross_account_asks_only_for_the_outside_party_and_says_when_both_are_named(page):
    world = World()
    sign_in(page, "requester")
    for width, outside in zip(WIDTHS, (OUTSIDE, "210987654322"), strict=True):
        deployer = f"arn:aws:iam::{outside}:role/Deployer"
        _open_form(page, world, width)
        page.select_option("select[name=kind]", "cross_account")
        page.wait_for_selector("input[name=trusted_account_id]", state="visible")
        assert not page.is_visible("select[name=principal]")
        page.check(f"input[name=pipelines][value='{world.pipeline.pk}']")
        page.select_option("select[name=level]", AccessLevel.VIEWER)
        page.fill("input[name=trusted_account_id]", outside)
        page.fill("input[name=trusted_principal_arn]", deployer)
        page.fill("textarea[name=justification]", "The release partner reads the pipeline")
        page.click("button[value=submit]")
        page.wait_for_selector(".invalid-feedback")
        said = page.text_content("#request-form")
        assert f"You named both an outside account ({outside}) and an outside principal ({deployer})" in said
        assert not page.is_visible("select[name=principal]")
        screenshot(page, f"form-cross-account-both-{width}")
        page.fill("input[name=trusted_principal_arn]", "")
        page.click("button[value=submit]")
        page.wait_for_selector("[data-testid=request-status]")
        facts = page.text_content("[data-testid=request-for]")
        assert f"Outside account {outside}" in facts and "mateojackson" not in facts
        screenshot(page, f"form-cross-account-filed-{width}")
        req = AccessRequest.objects.get(trusted_account_id=outside)
        assert req.principal.name == outside and req.on_behalf


def _in_view(page, selector: str) -> bool:
    box = page.locator(selector).bounding_box()
    height = page.viewport_size["height"] if page.viewport_size else 900
    return box is not None and box["y"] >= 0 and box["y"] + 40 <= height


def test_an_empty_submit_is_listed_at_the_top_in_view_with_links_to_the_fields(page):
    world = World()
    sign_in(page, "requester")
    for width in WIDTHS:
        _open_form(page, world, width)
        page.click("button[value=submit]")  # nothing chosen: the browser lets it through, the server lists it
        page.wait_for_selector("[data-testid=error-summary]")
        summary = page.text_content("[data-testid=error-summary]")
        assert "Not filed yet" in summary
        for label in ("Who receives access", "Level", "Why you need it"):
            assert label in summary, label
        assert page.evaluate("document.activeElement.id") == "error-summary" and _in_view(
            page, "#error-summary"
        )
        screenshot(page, f"form-empty-submit-{width}")
        page.click("#error-summary >> text=Who receives access")
        assert page.evaluate("location.hash") == "#id_principal"
        assert not AccessRequest.objects.exists()


def test_a_long_justification_is_counted_kept_whole_and_said_at_the_top(page):
    world = World()
    sign_in(page, "requester")
    long = "The release is blocked because " + "x" * 19_969
    for width in WIDTHS:
        _open_form(page, world, width)
        _choose(page, world, world.pipeline)
        page.fill("textarea[name=justification]", long)
        assert len(page.input_value("textarea[name=justification]")) == 20_000  # nothing cut while pasting
        assert "20,000 of 2,000 characters: 18,000 too many" in page.text_content(
            "[data-testid=count-justification]"
        )
        page.click("button[value=submit]")
        page.wait_for_selector("[data-testid=error-summary]")
        assert "At most 2000 characters: this has 20000" in page.text_content("[data-testid=error-summary]")
        assert _in_view(page, "#error-summary")
        assert page.input_value("textarea[name=justification]") == long
        screenshot(page, f"form-long-justification-{width}")
    assert not AccessRequest.objects.exists()


def test_the_same_access_again_is_said_once(page):
    world = World()
    world.submit(justification="deploy")
    sign_in(page, "requester")
    for width in WIDTHS:
        _open_form(page, world, width)
        _choose(page, world, world.pipeline)
        page.fill("textarea[name=justification]", "again")
        page.click("button[value=submit]")
        page.wait_for_selector("[data-testid=duplicate]")
        assert page.locator("text=You already asked for exactly this access").count() == 1
        screenshot(page, f"form-duplicate-{width}")
    assert AccessRequest.objects.count() == 1


def test_a_nul_byte_or_an_override_typed_in_is_taken_out_and_said_on_the_form(page):
    world = World()
    sign_in(page, "requester")
    cases = [
        (1280, "\x00", "U+0000 (NUL)", world.pipeline),
        (390, "\u202e", "U+202E (RIGHT-TO-LEFT OVERRIDE)", make_pipeline(world.account, "other-pipeline")),
    ]
    for width, char, name, pipeline in cases:
        _open_form(page, world, width)
        _choose(page, world, pipeline)
        page.fill("textarea[name=justification]", f"Debugging{char} the deploy of release 42")
        page.click("button[value=submit]")
        page.wait_for_selector("[data-testid=error-summary]")
        assert f"{name} at character 10" in page.text_content("[data-testid=error-summary]")
        assert page.input_value("textarea[name=justification]") == "Debugging the deploy of release 42"
        screenshot(page, f"form-hidden-character-{width}")
        page.click("button[value=submit]")  # sent again as shown, it is filed
        page.wait_for_selector("[data-testid=request-status]")
        assert (
            AccessRequest.objects.get(pipelines=pipeline).justification
            == "Debugging the deploy of release 42"
        )
