"""Pages that fit, in a real Chromium at 1280 and 390 px: every policy box shows a long Resource ARN whole (it
wraps; nothing is cut off or scrolls sideways), the proposal after a pasted error puts what would be granted
before the Submit button on a phone and is far shorter there, and the main menu is one row for every role (a
<details> menu on a phone, which needs no JavaScript)."""

from __future__ import annotations

import pytest

from accessrequests.models import AccessLevel, AccessRequest, PassableRole
from accessrequests.workflow.break_glass import break_glass_submit
from accessrequests.workflow.requests import request_approve
from tests.conftest import make_user, screenshot
from tests.factories import World, fresh_factor, make_pipeline
from tests.test_browser_flow import MATEO, sign_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

WIDTHS = {1280: {"width": 1280, "height": 900}, 390: {"width": 390, "height": 844}}
# As long as AWS allows: a pipeline name of 100 characters, and a service role with a path.
LONG_PIPELINE = (
    "payments-settlement-ledger-reconciliation-nightly-release-to-every-region-with-canary-and-rollback"
)
LONG_ROLE = (
    "arn:aws:iam::123456789012:role/service-role/codepipeline/payments/"
    "CodePipelineServiceRole-us-east-1-payments-settlement-ledger"
)
LONG_PIPELINE_ARN = f"arn:aws:codepipeline:us-east-1:123456789012:{LONG_PIPELINE}"
SECOND_LONG = LONG_PIPELINE.replace("nightly", "hourly")
SECOND_LONG_ARN = f"arn:aws:codepipeline:us-east-1:123456789012:{SECOND_LONG}"

# Every policy box and every ARN in a summary: not wider than its box, not past the right edge of the window.
_CLIPPED = """() => {
  const width = document.documentElement.clientWidth, found = [];
  for (const box of document.querySelectorAll('pre.policy')) {
    const r = box.getBoundingClientRect();
    if (box.scrollWidth > box.clientWidth + 1) found.push(`box scrolls: ${box.scrollWidth} > ${box.clientWidth}`);
    if (r.right > width + 0.5) found.push(`box ends at ${r.right} in a ${width} px window`);
  }
  for (const code of document.querySelectorAll('.gh-allows code, .gh-allows .gh-actions')) {
    const list = code.closest('ul').getBoundingClientRect();
    for (const r of code.getClientRects()) {
      if (r.right > Math.min(width, list.right) + 0.5) found.push(`${code.textContent} ends at ${r.right}`);
    }
  }
  return found;
}"""


def _context(browser, live_server, width: int, *, javascript: bool = True):
    # Reduced motion: Bootstrap's smooth scrolling would keep an element that must be scrolled to "not stable"
    # for Playwright's click when JavaScript is off.
    return browser.new_context(
        base_url=live_server.url,
        viewport=WIDTHS[width],
        java_script_enabled=javascript,
        reduced_motion="reduce",
    )


def _shows_whole(page, arns: list[str], name: str) -> None:
    assert page.locator("pre.policy").count(), f"{name}: no policy box"
    assert page.evaluate(_CLIPPED) == [], name
    shown = " ".join(page.locator("pre.policy").all_inner_texts())
    summary = " ".join(page.locator("[data-testid=policy-summary] code").all_inner_texts())
    for arn in arns:
        assert arn in shown, f"{name}: {arn} not in the policy box"
        assert arn in summary, f"{name}: {arn} not in the summary above it"
    screenshot(page, name)


@pytest.fixture
def long_world():
    world = World()
    world.long_pipeline = make_pipeline(world.account, LONG_PIPELINE)
    world.second_long = make_pipeline(world.account, SECOND_LONG)
    world.long_pipeline.role_arn = LONG_ROLE
    world.long_pipeline.save()
    PassableRole.objects.create(
        account=world.account, arn=LONG_ROLE, name=LONG_ROLE.rsplit("/", 1)[1], trusts_codepipeline=True
    )
    # Editor passes the pipeline's service role: one statement on the pipeline, one PassRole on the role.
    ask = {"pipelines": [world.long_pipeline], "level": AccessLevel.EDITOR}
    world.pending = world.submit(**ask)
    world.granted = world.submit(**{**ask, "level": AccessLevel.OPERATOR})
    request_approve(
        request_id=world.granted.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    world.rule.break_glass_users.add(world.requester)
    world.glass = break_glass_submit(
        requester=world.requester,
        draft=world.draft(pipelines=[world.long_pipeline], level=AccessLevel.VIEWER, duration_hours=1),
        incident="INC-1",
    )
    return world


@pytest.mark.parametrize("width", [1280, 390])
def test_every_policy_box_shows_a_long_resource_arn_whole(browser, live_server, long_world, width):
    world = long_world
    both = [LONG_PIPELINE_ARN, LONG_ROLE]
    context = _context(browser, live_server, width)
    try:
        page = context.new_page()
        sign_in(page, "requester")
        page.goto("/requests/paste/")
        page.fill(
            "textarea[name=message]",
            "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
            f"codepipeline:GetPipeline on resource: {LONG_PIPELINE}",
        )
        page.click("text=Read the error")
        page.wait_for_selector("[data-testid=policy-preview]")
        page.click("[data-testid=policy-json] summary")  # the JSON under the summary, folded until asked for
        _shows_whole(page, [LONG_PIPELINE_ARN], f"policy-wrap-preview-{width}")
        page.goto(f"/requests/{world.pending.pk}/")
        _shows_whole(page, both, f"policy-wrap-request-{width}")
        page.goto(f"/requests/{world.granted.pk}/")
        page.wait_for_selector("[data-testid=your-access]")
        _shows_whole(page, [LONG_PIPELINE_ARN], f"policy-wrap-grant-{width}")
        # The break-glass page's preview, before anything is applied (a pipeline of the same length, not yet held).
        page.goto(f"/break-glass/new/?account={world.account.account_id}")
        page.select_option("select[name=principal]", str(world.principal.pk))
        page.check(f"input[name=pipelines][value='{world.second_long.pk}']")
        page.select_option("select[name=level]", AccessLevel.VIEWER)
        page.fill("textarea[name=justification]", "The release is stuck")
        page.fill("input[name=incident]", "INC-2")
        page.click("button[value=preview]")
        page.click("[data-testid=policy-json] summary")
        _shows_whole(page, [SECOND_LONG_ARN], f"policy-wrap-break-glass-preview-{width}")
        context.clear_cookies()
        sign_in(page, "approver")
        page.goto(f"/review/{world.pending.pk}/")
        page.wait_for_selector("[data-testid=policy-diff]")
        _shows_whole(page, both, f"policy-wrap-review-{width}")
        page.goto(f"/break-glass/{world.glass.pk}/review/")
        _shows_whole(page, [LONG_PIPELINE_ARN], f"policy-wrap-break-glass-{width}")
    finally:
        context.close()


# The proposal after pasting MATEO was 4,242 px tall on a 390 px phone without JavaScript (3,548 px with it), its
# "What would be granted" below the Submit button; the menu took three rows (215 px). It is 1,972 px now, with or
# without JavaScript; the bound leaves room for fonts and still fails either old layout by more than 1,100 px.
PHONE_PAGE_BOUND = 2400
ONE_ROW = 64


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_the_paste_proposal_on_a_phone_shows_what_would_be_granted_first_and_is_short(
    browser, live_server, javascript
):
    World()
    context = _context(browser, live_server, 390, javascript=javascript)
    try:
        page = context.new_page()
        sign_in(page, "requester")
        page.goto("/requests/paste/")
        page.fill("textarea[name=message]", MATEO)
        page.click("text=Read the error")
        page.wait_for_selector("[data-testid=intake-summary]")
        name = f"paste-proposal-390-{'js' if javascript else 'no-js'}"
        screenshot(page, name)
        height = page.evaluate("document.documentElement.scrollHeight")
        granted = page.locator("h2:has-text('What would be granted')").bounding_box()
        submit = page.locator("button[value=submit]").bounding_box()
        assert granted and submit and granted["y"] < submit["y"], (granted, submit)
        assert page.locator("[data-testid=policy-summary]").is_visible()
        assert height < PHONE_PAGE_BOUND, f"{name}: {height} px"
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        # The folded fields are still part of the form: submitting files exactly what was proposed.
        page.fill("textarea[name=justification]", "Release 42 is stuck")
        page.click("button[value=submit]")
        page.wait_for_selector("[data-testid=request-status]")
        req = AccessRequest.objects.get()
        assert [p.name for p in req.pipelines.all()] == ["my-pipeline"] and req.level == AccessLevel.VIEWER
    finally:
        context.close()


def _nav_links(page) -> list[str]:
    return page.locator("nav .nav-link").evaluate_all("links => links.map(a => a.textContent.trim())")


@pytest.mark.parametrize("width", [390, 1280])
def test_the_menu_is_one_row_for_every_role_and_opens_without_javascript(browser, live_server, width):
    World()
    make_user("auditor", "auditors")
    make_user("boss", "admins", is_staff=True, is_superuser=True)
    make_user("everything", "requesters", "approvers", "auditors", "admins", is_staff=True)
    for username in ("requester", "approver", "auditor", "boss", "everything"):
        context = _context(browser, live_server, width, javascript=False)
        try:
            page = context.new_page()
            sign_in(page, username)
            nav = page.locator("nav").bounding_box()
            assert nav and nav["height"] <= ONE_ROW, f"{username} at {width} px: the menu is {nav} tall"
            assert page.locator("[data-testid=current-user]").is_visible()
            menu = page.locator("[data-testid=menu]")
            if width == 390:
                visible = [link for link in page.locator("nav .nav-link").all() if link.is_visible()]
                assert visible == [], f"{username}: links show before the menu is opened"
                menu.locator("summary").click()
                screenshot(page, f"menu-open-390-{username}")
            else:
                assert not menu.is_visible()
                screenshot(page, f"menu-1280-{username}")
            shown = [link for link in page.locator("nav .nav-link").all() if link.is_visible()]
            assert shown and len(shown) == len(set(_nav_links(page))), username
            for link in shown:
                box = link.bounding_box()
                assert box and box["x"] + box["width"] <= width, (username, link.text_content())
            if width == 1280:  # the name opens the account panel; on a phone its links are in the Menu
                page.locator("nav summary:has([data-testid=current-user])").click()
            for name in ("Two-factor", "API tokens"):
                assert page.get_by_role("link", name=name, exact=True).is_visible(), (username, name)
            sign_out = page.get_by_role("button", name="Sign out", exact=True)
            assert sign_out.is_visible()
            sign_out.click()
            page.wait_for_url("**/accounts/login/**")
        finally:
            context.close()
