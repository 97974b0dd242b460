"""The access review page in a real Chromium at 1280 and 390 px: both items with their evidence, the flag on the
unused one only, and a revoke from the page that removes the access in AWS."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from accessrequests.models import Grant, GrantStatus, ReviewItem
from accessrequests.reviews import campaigns as reviews
from accessrequests.reviews.evidence import review_item_gather_evidence
from tests.conftest import enable_totp, screenshot, totp_code
from tests.last_accessed_standin import Use
from tests.provisioning_support import MY_PIPELINE_ARN, iam_client, permits, reconcile, user_policies
from tests.test_reviews import MARY, MATEO, _old_grant, standin, world  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.browser, pytest.mark.moto, pytest.mark.django_db(transaction=True)]


def test_the_campaign_page_shows_evidence_and_the_flag_at_both_widths_and_revokes_from_the_page(
    world,  # noqa: F811
    standin,  # noqa: F811
    page,
):
    now = timezone.now()
    mateo = _old_grant(world, "mateojackson")
    _old_grant(world, "marymajor")
    standin.uses[MATEO] = [Use("codepipeline:GetPipeline", now - timedelta(days=120))]
    standin.uses[MARY] = [Use("codepipeline:GetPipeline", now - timedelta(days=1))]
    campaign = reviews.campaign_start(actor=world.admin)
    for _ in range(2):  # IN_PROGRESS, then COMPLETED
        for item in campaign.items.all():
            review_item_gather_evidence(item_id=item.pk)

    secret = enable_totp(world.approver)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", "approver")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")
    page.fill("input[name=code]", totp_code(secret))
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")

    page.goto(f"/access-reviews/{campaign.pk}/")
    page.wait_for_selector("[data-testid=item]")
    cards = {c.get_attribute("data-principal"): c for c in page.locator("[data-testid=item]").all()}
    assert set(cards) == {"mateojackson", "marymajor"}
    assert cards["mateojackson"].locator("[data-testid=unused-flag]").count() == 1
    assert cards["marymajor"].locator("[data-testid=unused-flag]").count() == 0
    assert "120 days ago" in (cards["mateojackson"].text_content() or "")
    assert "1 day ago" in (cards["marymajor"].text_content() or "")
    screenshot(page, "access-review-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "access-review-390")
    page.set_viewport_size({"width": 1280, "height": 900})

    card = page.locator("[data-testid=item][data-principal=mateojackson]")
    card.locator("textarea").fill("Not used since spring")
    card.locator("button[value=revoke]").click()
    page.wait_for_selector("text=revoked; the access is being removed from AWS")
    reconcile(mateo)
    assert Grant.objects.get(pk=mateo.pk).status == GrantStatus.REVOKED
    documents = user_policies(iam_client(standin.proxy.url), "mateojackson")
    assert not permits(documents, "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    item = ReviewItem.objects.get(grant=mateo)
    assert (item.decided_by, item.reason) == (world.approver, "Not used since spring")
    page.goto(f"/access-reviews/{campaign.pk}/")
    screenshot(page, "access-review-after-revoke-1280")


def test_the_break_glass_form_explains_itself_shows_what_it_applies_and_applies_at_both_widths(
    db, page, settings
):
    from django.contrib.auth.models import Group

    from accessrequests.models import AccessRequest
    from tests.conftest import make_user
    from tests.factories import World, make_principal

    sandbox = World()
    oncall = make_user("oncall", "requesters", "oncall")
    own = make_principal(sandbox.account, "oncall", users=[oncall])  # theirs alone: nobody else is reached
    sandbox.principal.users.add(oncall)  # mateojackson, which the requester uses too
    sandbox.rule.break_glass_groups.add(Group.objects.get(name="oncall"))
    sandbox.rule.break_glass_kinds = ["pipeline", "pass_role"]
    sandbox.rule.save()
    page.goto("/accounts/login/")
    page.fill("input[name=login]", "oncall")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")
    page.click("text=Break-glass")
    # The account picker, once its script has made the field a combobox: type the start of the id, arrow down
    # to the match, Enter chooses it, and choosing it loads the account's lists (the Continue step).
    page.wait_for_selector("input[name=account][role=combobox]")
    page.fill("input[name=account]", sandbox.account.account_id[:6])
    page.wait_for_selector(f"[role=option]:has-text('{sandbox.account.account_id}')")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    page.wait_for_selector("textarea[name=justification]")
    assert page.input_value("input[name=account]") == sandbox.account.account_id
    # The kinds its rule gives: pipeline access and PassRole; the PassRole section shows only for PassRole.
    assert not page.is_visible("select[name=pass_role]")
    page.check(f"input[name=pipelines][value='{sandbox.pipeline.pk}']")
    page.select_option("select[name=level]", "viewer")
    page.fill("textarea[name=justification]", "Release blocked at the approval stage")
    page.fill("input[name=incident]", "INC-2024")
    # A principal someone else uses too: the preview says, before anything is tried, that break-glass refuses it.
    page.select_option("select[name=principal]", str(sandbox.principal.pk))
    page.wait_for_selector("[data-testid=preview-refusal]")
    assert "would also reach requester" in page.text_content("[data-testid=preview-refusal]")
    screenshot(page, "break-glass-refused-preview-1280")
    page.select_option("select[name=principal]", str(own.pk))
    page.wait_for_selector("[data-testid=preview-refusal]", state="detached")
    # Before anything is applied: the exact statements and who can use them.
    page.wait_for_selector("[data-testid=policy-preview]")
    assert "codepipeline:GetPipeline" in page.text_content("[data-testid=policy-preview]")
    assert "IAM user oncall" in page.text_content("[data-testid=preview-recipients]")
    screenshot(page, "break-glass-form-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, "break-glass-form-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.select_option("select[name=kind]", "pass_role")
    page.wait_for_selector("select[name=pass_role]", state="visible")
    page.select_option("select[name=pass_role]", str(sandbox.role.pk))
    page.wait_for_selector("[data-testid=policy-preview]:has-text('iam:PassRole')")
    screenshot(page, "break-glass-passrole-preview-1280")
    page.select_option("select[name=kind]", "pipeline")
    page.wait_for_selector("[data-testid=policy-preview]:has-text('codepipeline:GetPipeline')")
    page.set_viewport_size({"width": 390, "height": 844})
    page.click("button[value=submit]")
    page.wait_for_load_state()
    page.wait_for_selector("[data-testid=break-glass-banner]")
    screenshot(page, "break-glass-request-390")
    req = AccessRequest.objects.get(break_glass=True)
    assert req.requester == oncall and req.incident == "INC-2024" and req.grant is not None
    assert (req.kind, req.principal) == ("pipeline", own)
