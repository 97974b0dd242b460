"""A requester and an approver walk the whole request flow in a real Chromium."""

from __future__ import annotations

import pytest

from accessrequests.models import AccessRequest, RequestStatus
from tests.conftest import enable_totp, screenshot, totp_code
from tests.factories import World

MATEO = (
    "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
    "codepipeline:GetPipeline on resource: my-pipeline"
)
PASSWORD = "correct-horse-battery"


def sign_in(page, username: str, totp_secret: str | None = None) -> None:
    page.goto("/accounts/login/")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    if totp_secret:
        page.wait_for_selector("input[name=code]")
        page.fill("input[name=code]", totp_code(totp_secret))
        page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")


def sign_out(page) -> None:
    page.click("text=Sign out")
    page.wait_for_url("**/accounts/login/**")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_paste_submit_approve_with_totp_and_see_it_approved(page):
    world = World()
    secret = enable_totp(world.approver)

    sign_in(page, "requester")
    page.click("text=Paste an error")
    page.fill("textarea[name=message]", MATEO)
    screenshot(page, "flow-1-paste")
    page.click("text=Read the error")
    page.wait_for_selector("[data-testid=intake-summary]")
    page.fill("textarea[name=justification]", "Release 42 is stuck; I need to see the pipeline state")
    page.click("button[value=preview]")
    page.wait_for_selector("[data-testid=policy-preview]")
    assert "arn:aws:codepipeline:us-east-1:123456789012:my-pipeline" in page.text_content(
        "[data-testid=policy-preview]"
    )
    screenshot(page, "flow-2-preview")
    page.click("button[value=submit]")
    page.wait_for_selector("[data-testid=request-status]")
    assert "Pending review" in page.text_content("[data-testid=request-status]")
    screenshot(page, "flow-3-submitted")
    req = AccessRequest.objects.get()
    assert req.source == "pasted_error" and MATEO in req.pasted_text
    sign_out(page)

    sign_in(page, "approver", totp_secret=secret)
    page.click("text=Review")
    page.wait_for_selector(f"text={req.reference}")
    screenshot(page, "flow-4-queue")
    page.click("a:has-text('Review') >> nth=-1")
    page.wait_for_selector("[data-testid=policy-diff]")
    page.fill("textarea[name=comment]", "Read-only for four hours is fine")
    screenshot(page, "flow-5-review")
    page.click("button[value=approve]")
    page.wait_for_selector("text=is now approved")
    sign_out(page)

    sign_in(page, "requester")
    page.goto(f"/requests/{req.pk}/")
    assert "Approved" in page.text_content("[data-testid=request-status]")
    screenshot(page, "flow-6-approved")
    req.refresh_from_db()
    assert req.status == RequestStatus.APPROVED


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_policy_preview_follows_the_form_as_you_type(page):
    World()
    sign_in(page, "requester")
    page.goto("/requests/new/")
    assert page.locator("[data-testid=continue]").count() == 1  # step one: the account first
    # The account picker: type part of the name, arrow down to the match, Enter chooses it.
    page.fill("input[name=account]", "sand")
    page.wait_for_selector("[role=option]:has-text('sandbox (123456789012)')")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_selector("input[name=pipelines]")  # choosing it loaded the account's lists
    page.select_option("select[name=principal]", index=1)
    page.locator("input[name=pipelines]").first.check()
    page.select_option("select[name=level]", "operator")
    # The preview needs no justification: it follows the choices.
    page.wait_for_selector("[data-testid=policy-preview]")
    assert "codepipeline:StartPipelineExecution" in page.text_content("[data-testid=policy-preview]")
    screenshot(page, "live-preview")

    # Only the sections of the chosen kind show; switching kind swaps them.
    pipelines = "input[name=pipelines] >> nth=0"
    assert page.is_visible(pipelines) and not page.is_visible("select[name=permission_set]")
    page.select_option("select[name=kind]", "permission_set")
    page.wait_for_selector("select[name=permission_set]", state="visible")
    assert not page.is_visible(pipelines) and not page.is_visible("input[name=external_id]")
    page.select_option("select[name=kind]", "cross_account")
    page.wait_for_selector("input[name=external_id]", state="visible")
    assert page.is_visible(pipelines) and not page.is_visible("select[name=pass_role]")
    screenshot(page, "form-cross-account")
    assert AccessRequest.objects.count() == 0
