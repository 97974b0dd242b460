"""An approver's work in a real Chromium at 1280 and 390 px: "Needs your review" on the home page and in the queue
with all three kinds of work, an access-review item whose evidence could not be read (with Retry), the step-up
prompt that carries the decision through, and the two-factor setup that says what comes next."""

from __future__ import annotations

import time

import pytest
from django.contrib.sessions.backends.db import SessionStore

from accessrequests.models import Decision, ReviewItem
from accessrequests.reviews import campaigns as reviews
from accessrequests.reviews.evidence import review_item_gather_evidence
from tests.conftest import current_code, make_user, screenshot
from tests.test_inbox import gov  # noqa: F401  (fixture)
from tests.test_reviews import _items, _old_grant, moto_only_world, world  # noqa: F401  (fixtures)
from tests.test_step_up import _code

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PASSWORD = "correct-horse-battery"
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _sign_in(page, user) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", user.get_username())
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    if user.authenticator_set.exists():
        page.wait_for_selector("input[name=code]")
        page.fill("input[name=code]", current_code(user))
        page.click("main button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")


def _both_widths(page, name: str) -> None:
    """Screenshots at 1280 and 390 px; at 390 nothing scrolls sideways and each row's action is in view."""
    page.set_viewport_size(DESKTOP)
    screenshot(page, f"{name}-1280")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
    for action in page.locator("[data-testid=row-action]").all():
        box = action.bounding_box()
        assert box is not None and box["x"] + box["width"] <= PHONE["width"], name
    screenshot(page, f"{name}-390")
    page.set_viewport_size(DESKTOP)


def test_the_approver_home_and_queue_show_all_three_kinds_of_work_and_lead_to_each(gov, page):  # noqa: F811
    _sign_in(page, gov.approver)
    page.goto("/")
    rows = page.locator("[data-testid=needs-review] [data-testid=inbox-row]")
    assert [r.get_attribute("data-kind") for r in rows.all()] == ["post_review", "request", "review_item"]
    assert page.text_content("[data-testid=nav-review-count]") == "3"
    _both_widths(page, "inbox-home")

    page.click("[data-testid=nav-review-count]")
    page.wait_for_selector("[data-testid=inbox]")
    assert page.locator("[data-testid=inbox-row]").count() == 3
    _both_widths(page, "inbox-queue")
    # Narrowed to an account where nothing waits: the page says the filters match nothing (not that nothing
    # waits), offers the way back, and the menu still counts everything.
    page.fill("#queue-account", "999999999999")
    page.click("form[aria-label=Filter] button[type=submit]")
    page.wait_for_selector("[data-testid=nothing-matches]")
    assert page.text_content("[data-testid=nav-review-count]") == "3"
    _both_widths(page, "inbox-queue-filtered")
    page.click("[data-testid=nothing-matches] a")
    page.wait_for_selector("[data-testid=inbox]")
    assert page.locator("[data-testid=inbox-row]").count() == 3
    # Each row opens the page where it is decided.
    page.click("[data-testid=inbox-row][data-kind=post_review] [data-testid=row-action]")
    page.wait_for_selector("select[name=outcome]")
    page.go_back()
    page.click("[data-testid=inbox-row][data-kind=review_item] [data-testid=row-action]")
    page.wait_for_selector("[data-testid=item] textarea")
    assert page.locator("[data-testid=item]").count() == 1
    page.go_back()
    page.click("[data-testid=inbox-row][data-kind=request] [data-testid=row-action]")
    page.wait_for_selector("button[value=approve]")
    # The reviewer's Break-glass entry is the uses and what waits for their post-review.
    page.click("[data-testid=nav-break-glass]")
    page.wait_for_selector("[data-testid=post-reviews-waiting]")
    _both_widths(page, "inbox-break-glass-uses")


def test_the_step_up_prompt_asks_only_for_the_code_and_the_approval_goes_through(gov, page):  # noqa: F811
    _sign_in(page, gov.approver)
    from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY

    cookie = next(c for c in page.context.cookies() if c["name"] == "sessionid")
    session = SessionStore(session_key=cookie["value"])
    records = session[AUTHENTICATION_METHODS_SESSION_KEY]
    for record in records:
        record["at"] = time.time() - 600  # the second factor of the sign-in, ten minutes ago
    session[AUTHENTICATION_METHODS_SESSION_KEY] = records
    session.save()
    page.goto(f"/review/{gov.pending.pk}/")
    page.fill("textarea[name=comment]", "Diff checked")
    page.click("button[value=approve]")
    page.wait_for_selector("input[name=code]")
    assert f"approve {gov.pending.reference}" in page.text_content("main")
    assert page.locator("text=Use your password").count() == 0
    _both_widths(page, "step-up")
    page.fill("input[name=code]", _code(gov.approver, 1))  # the sign-in used this minute's code: the next one
    page.click("main button[type=submit]")
    page.wait_for_selector(f"text={gov.pending.reference} is now approved")
    decision = Decision.objects.get(request=gov.pending)
    assert (decision.reviewer, decision.comment) == (gov.approver, "Diff checked")


def test_setting_up_two_factor_says_what_comes_next_and_set_up_only_at_the_end(gov, page):  # noqa: F811
    fresh = make_user("fresh-approver", "approvers", password=PASSWORD)
    gov.rule.approver_users.add(fresh)
    _sign_in(page, fresh)
    page.goto(f"/review/{gov.pending.pk}/")
    page.click("[data-testid=mfa-banner] a")
    page.wait_for_selector("input[name=password]")
    assert "step 1 of 2" in page.text_content("[data-testid=mfa-setup-step]")
    assert page.locator("[data-testid=after-mfa]").count() == 0
    _both_widths(page, "totp-password-step")
    page.fill("input[name=password]", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_selector("input[name=code]")
    assert "step 2 of 2" in page.text_content("[data-testid=mfa-setup-step]")
    assert page.locator("[data-testid=after-mfa]").count() == 0
    _both_widths(page, "totp-activation")


@pytest.mark.moto
def test_an_item_whose_evidence_could_not_be_read_says_why_and_retries_at_both_widths(
    moto_only_world,  # noqa: F811
    page,
):
    campaign = reviews.campaign_start(actor=moto_only_world.admin)
    item = _items(campaign)["mateojackson"]
    review_item_gather_evidence(item_id=item.pk)  # moto cannot answer: failed, with its reason
    approver = moto_only_world.approver
    from tests.conftest import enable_totp

    enable_totp(approver)
    _sign_in(page, approver)
    page.goto(f"/access-reviews/{campaign.pk}/")
    failed = page.locator(f"#item-{item.pk} [data-testid=evidence-failed]")
    assert failed.text_content().startswith("Usage evidence could not be read: ")
    assert "preparing" not in page.text_content(f"#item-{item.pk}")
    _both_widths(page, "access-review-evidence-failed")
    failed.locator("button", has_text="Retry").click()
    page.wait_for_selector("text=asked IAM again for the usage report")
    assert ReviewItem.objects.get(pk=item.pk).evidence_attempts == 0
