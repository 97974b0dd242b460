"""Pages that fit, in a real Chromium at 1280 and 390 px: every policy box shows a long Resource ARN whole (it
wraps; nothing is cut off or scrolls sideways), the proposal after a pasted error puts what would be granted
before the Submit button on a phone and is far shorter there, and the main menu is one row for every role (a
<details> menu on a phone, which needs no JavaScript)."""

from __future__ import annotations

import pytest

from accessrequests.models import AccessLevel, PassableRole
from accessrequests.services.break_glass import break_glass_submit
from accessrequests.services.requests import request_approve
from tests.conftest import screenshot
from tests.factories import World, fresh_factor, make_pipeline
from tests.test_browser_flow import sign_in

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
    return browser.new_context(
        base_url=live_server.url, viewport=WIDTHS[width], java_script_enabled=javascript
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
        _shows_whole(page, [LONG_PIPELINE_ARN], f"policy-wrap-preview-{width}")
        page.goto(f"/requests/{world.pending.pk}/")
        _shows_whole(page, both, f"policy-wrap-request-{width}")
        page.goto(f"/requests/{world.granted.pk}/")
        page.wait_for_selector("[data-testid=your-access]")
        _shows_whole(page, [LONG_PIPELINE_ARN], f"policy-wrap-grant-{width}")
        context.clear_cookies()
        sign_in(page, "approver")
        page.goto(f"/review/{world.pending.pk}/")
        page.wait_for_selector("[data-testid=policy-diff]")
        _shows_whole(page, both, f"policy-wrap-review-{width}")
        page.goto(f"/break-glass/{world.glass.pk}/review/")
        _shows_whole(page, [LONG_PIPELINE_ARN], f"policy-wrap-break-glass-{width}")
    finally:
        context.close()
