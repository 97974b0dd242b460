"""Four walks through the demo as the README tells it, in a real Chromium, each from signing in to reading back from
the moto server what AWS holds, a real Celery worker applying every change, with screenshots of the key steps at
1280 and 390 px (var/artifacts/walk-*):

(a) the try-it path: the requester pastes the guide's error, the approver sets up TOTP from the banner and approves,
    the worker writes the policy, moto holds the statement, the requester sees Active;
(b) break-glass: the requester the rule names uses it, the access is applied at once and read back, and an approver
    does the post-review;
(c) access review: an admin starts a review, an approver revokes the unused item, and the policy is gone from IAM;
(d) cross-account: the requester asks for access for an outside account, it is approved, and the role and its
    trust policy are read back.

The world is the one ``make demo`` seeds (``manage.py seed_demo``: its users, rules and break-glass names)."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.utils import timezone

from accessrequests.management.commands.seed_demo import DEMO_PASSWORD, MATEO_ERROR
from accessrequests.models import (
    AccessLevel,
    AccessRequest,
    AwsAccount,
    Grant,
    GrantStatus,
    Principal,
    RequestKind,
)
from accessrequests.workflow.requests import RequestDraft, request_approve, request_submit
from tests.conftest import enable_totp, screenshot, totp_code, wait_for
from tests.factories import force_update, fresh_factor
from tests.last_accessed_standin import Use
from tests.provisioning_support import (
    MANAGEMENT,
    MY_PIPELINE_ARN,
    OUTSIDE_ACCOUNT,
    OUTSIDE_EXTERNAL_ID,
    aws_env,
    iam_client,
    permits,
    reconcile,
    user_policies,
)
from tests.test_reviews import MATEO, standin  # noqa: F401  (fixture: IAM's last-accessed data beside moto)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.moto,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]
WIDE, PHONE = {"width": 1280, "height": 900}, {"width": 390, "height": 844}


# --- the demo, a worker, and how a person moves through it --------------------------------------------------


def _demo(settings, tmp_path, endpoint: str, worker_env, workers) -> str:
    """``make demo``'s world on the moto server at ``endpoint`` (or a proxy before it), and a worker for it."""
    settings.VAR_DIR = tmp_path
    call_command("seed_demo", "--no-tips", stdout=StringIO())
    workers.start(aws_env(worker_env, endpoint))
    return endpoint


@pytest.fixture
def demo(aws, settings, tmp_path, worker_env, workers) -> str:
    return _demo(settings, tmp_path, aws, worker_env, workers)


def _user(username: str):
    return get_user_model().objects.get(username=username)


def _sign_in(page, username: str, secret: str | None = None) -> None:
    page.context.clear_cookies()
    page.goto("/accounts/login/")
    page.fill("input[name=login]", username)
    page.fill("input[name=password]", DEMO_PASSWORD)
    page.click("button[type=submit]")
    if secret:
        page.fill("input[name=code]", totp_code(secret))
        page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")


def _nav(page, name: str) -> None:
    """Follow a link of the main menu, as someone at a wide screen does; a link may carry its count ("Review 2")."""
    label = re.compile(rf"^{re.escape(name)}( [0-9]+\+?)?$")
    page.get_by_role("navigation").get_by_role("link", name=label).first.click()


def _both(page, name: str) -> None:
    """Screenshots of this step at 1280 and 390 px; on the phone nothing may scroll sideways."""
    screenshot(page, f"walk-{name}-1280")
    page.set_viewport_size(PHONE)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{name}: {width} px wide on a phone"
    screenshot(page, f"walk-{name}-390")
    page.set_viewport_size(WIDE)


def _next_code(secret: str, used: str) -> str:
    """The authenticator's next code: a code once used is refused again, so wait for the app to show another."""
    return wait_for(lambda: (code := totp_code(secret)) != used and code, timeout=35, what="a new TOTP code")


def _active(req: AccessRequest) -> Grant:
    """The worker applied the request's grant (a real worker process: wait for it, never for a time)."""
    wait_for(
        lambda: Grant.objects.filter(request=req, status=GrantStatus.ACTIVE).exists(),
        timeout=90,
        what=f"{req.reference} applied by the worker",
    )
    return Grant.objects.get(request=req)


def _shows(page, path: str, selector: str, text: str) -> None:
    """Open ``path`` until ``selector`` says ``text`` (the page says what the worker did once it has done it)."""

    def says() -> bool:
        page.goto(path)
        return text in (page.text_content(selector) or "")

    wait_for(says, timeout=60, interval=1, what=f"{path} to say {text!r}")


def _pick_account(page, account_id: str) -> None:
    """The account combobox: type the start of the id, arrow down to the match, Enter."""
    page.wait_for_selector("input[name=account][role=combobox]")
    page.fill("input[name=account]", account_id[:6])
    page.wait_for_selector(f"[role=option]:has-text('{account_id}')")
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")


def _ask_for_viewer_on_my_pipeline(page, justification: str, *, for_mateo: bool = True) -> None:
    """The form's part every pipeline request shares: mateojackson (unless the access is for an outside party),
    my-pipeline, viewer, and why."""
    my_pipeline = AwsAccount.objects.get(account_id=MANAGEMENT).pipelines.get(name="my-pipeline")
    if for_mateo:
        mateo = Principal.objects.get(name="mateojackson")
        page.select_option("select[name=principal]", str(mateo.pk))
    page.check(f"input[name=pipelines][value='{my_pipeline.pk}']")
    page.select_option("select[name=level]", AccessLevel.VIEWER)
    page.fill("textarea[name=justification]", justification)


def _mateo_holds(endpoint: str) -> bool:
    documents = user_policies(iam_client(endpoint), "mateojackson")
    return permits(documents, "codepipeline:GetPipeline", MY_PIPELINE_ARN)


# --- (a) the README's try-it path ---------------------------------------------------------------------------


def test_walk_the_readme_from_a_pasted_error_to_the_policy_in_aws(demo, page):
    assert not _mateo_holds(demo)

    # 1. The requester pastes the guide's error and submits the proposal.
    _sign_in(page, "requester")
    _nav(page, "Paste an error")
    page.fill("textarea[name=message]", MATEO_ERROR)
    page.click("text=Read the error")
    page.wait_for_selector("[data-testid=policy-summary]")
    assert MY_PIPELINE_ARN in page.text_content("[data-testid=policy-summary]")
    _both(page, "a-1-proposal")
    page.fill("textarea[name=justification]", "Release 42 is stuck; I need to see the pipeline state")
    page.click("button[value=submit]")
    page.wait_for_selector("[data-testid=request-status]")
    req = AccessRequest.objects.get()
    assert req.source == "pasted_error" and "Pending review" in page.text_content(
        "[data-testid=request-status]"
    )

    # 2. The approver opens it from the queue, sets up TOTP from the banner, comes back and approves.
    _sign_in(page, "approver")
    _nav(page, "Review")
    page.click(f"a[data-testid=row-action][href='/review/{req.pk}/']")
    page.wait_for_selector("[data-testid=mfa-banner]")
    _both(page, "a-2-review-before-two-factor")
    page.click("[data-testid=mfa-banner] >> text=Set up two-factor")
    page.wait_for_selector("#authenticator_secret, input[name=password]")
    if page.locator("input[name=password]").count():  # allauth confirms the password before a new factor
        page.fill("input[name=password]", DEMO_PASSWORD)
        page.click("main button[type=submit]")
    assert page.locator("[data-testid=after-mfa]").count() == 0  # not "set up" before it is
    secret = page.input_value("#authenticator_secret")
    activated = totp_code(secret)
    page.fill("input[name=code]", activated)
    page.click("main button[type=submit]")
    page.click("[data-testid=after-mfa] >> text=Continue where you were")
    page.wait_for_selector("[data-testid=policy-diff]")
    _both(page, "a-3-review")
    page.fill("textarea[name=comment]", "Read-only for the release; fine")
    page.click("button[value=approve]")
    if page.locator("input[name=code]").count():  # the sign-in had no second factor: confirm it now
        page.fill("input[name=code]", _next_code(secret, activated))
        page.click("main button[type=submit]")
        page.click("button[value=approve]")
    page.wait_for_selector("text=is now approved")

    # 3. The worker writes the policy; moto holds the statement.
    grant = _active(req)
    assert _mateo_holds(demo)
    held = iam_client(demo).get_user_policy(UserName="mateojackson", PolicyName="gatehouse")
    assert grant.principal.name == "mateojackson" and "codepipeline:GetPipeline" in json.dumps(held)

    # 4. The requester sees it Active, on the request and on the home page.
    _sign_in(page, "requester")
    _shows(page, f"/requests/{req.pk}/", "[data-testid=grant-status]", "Active")
    _both(page, "a-4-active")
    page.goto("/")
    assert req.reference in (page.text_content("main") or "")
    _both(page, "a-5-home")


# --- (b) break-glass ----------------------------------------------------------------------------------------


def test_walk_break_glass_applied_at_once_read_back_and_reviewed_afterwards(demo, page):
    # 1. The requester, whom the Non-production rule names, breaks the glass.
    _sign_in(page, "requester")
    _nav(page, "Break-glass")
    # Choosing the account loads its lists (the Continue step, done by the page's script).
    _pick_account(page, MANAGEMENT)
    page.wait_for_selector("textarea[name=justification]")
    _ask_for_viewer_on_my_pipeline(page, "Release blocked at the approval stage; customers wait")
    page.fill("input[name=incident]", "INC-2024")
    page.click("button[value=preview]")
    page.wait_for_selector("[data-testid=policy-summary]")
    _both(page, "b-1-preview")
    page.click("button[value=submit]")
    page.wait_for_selector("[data-testid=break-glass-banner]")
    req = AccessRequest.objects.get(break_glass=True)
    assert req.decisions.count() == 0  # no approver

    # 2. Applied at once by the worker, and read back from moto.
    _active(req)
    assert _mateo_holds(demo)
    _shows(page, f"/requests/{req.pk}/", "[data-testid=grant-status]", "Active")
    _both(page, "b-2-applied")

    # 3. An approver reviews the use afterwards.
    secret = enable_totp(_user("approver"))
    _sign_in(page, "approver", secret)
    page.goto("/break-glass/")
    page.click(f"a[href='/break-glass/{req.pk}/review/']")
    page.wait_for_selector("[data-testid=post-review-state]")
    _both(page, "b-3-post-review")
    page.select_option("select[name=outcome]", "justified")
    page.fill("textarea[name=comment]", "INC-2024 was real; the access matched it")
    page.click("text=Record the review")
    page.wait_for_selector(f"text=Your review of break-glass {req.reference} is recorded.")
    req.break_glass_review.refresh_from_db()
    assert (req.break_glass_review.reviewer, req.break_glass_review.outcome) == (
        _user("approver"),
        "justified",
    )
    page.goto(f"/break-glass/{req.pk}/review/")
    _both(page, "b-4-reviewed")


# --- (c) access review --------------------------------------------------------------------------------------


@pytest.fixture
def review_demo(standin, settings, tmp_path, worker_env, workers) -> str:  # noqa: F811
    """The demo behind the stand-in for IAM's last-accessed data (moto has none): everything else is moto."""
    settings.GATEHOUSE_REVIEW_MIN_AGE_DAYS = 30
    settings.GATEHOUSE_REVIEW_UNUSED_DAYS = 90
    return _demo(settings, tmp_path, standin.proxy.url, worker_env, workers)


def _old_viewer_grant(principal: str) -> Grant:
    """Set-up, not the walk: mateojackson's viewer access, approved and applied, live for 200 days now."""
    account = AwsAccount.objects.get(account_id=MANAGEMENT)
    draft = RequestDraft(
        principal=Principal.objects.get(name=principal),
        kind=RequestKind.PIPELINE,
        account=account,
        pipelines=[account.pipelines.get(name="my-pipeline")],
        level=AccessLevel.VIEWER,
        justification="on call for the payments release",
        duration_hours=8,
    )
    req = request_submit(requester=_user("requester"), draft=draft)
    request_approve(
        request_id=req.pk, reviewer=_user("approver"), second_factor=fresh_factor(_user("approver"))
    )
    grant = Grant.objects.get(request=req)
    reconcile(grant)
    then = timezone.now() - timedelta(days=200)
    force_update(Grant.objects.filter(pk=grant.pk), starts_at=then, applied_at=then)
    return grant


def test_walk_an_access_review_revokes_the_unused_access_in_aws(review_demo, standin, page):  # noqa: F811
    grant = _old_viewer_grant("mateojackson")
    standin.uses[MATEO] = [Use("codepipeline:GetPipeline", timezone.now() - timedelta(days=120))]
    assert _mateo_holds(review_demo)

    # 1. An admin starts the review from its page.
    admin_secret = enable_totp(_user("admin"))
    _sign_in(page, "admin", admin_secret)
    _nav(page, "Access reviews")
    page.click("text=Start an access review")
    page.wait_for_selector("[data-testid=item]")
    _both(page, "c-1-started")
    campaign_path = page.url.removeprefix(page.url.split("/access-reviews/")[0])

    # 2. The approver finds the item flagged unused (the worker read IAM's last use) and revokes it.
    _sign_in(page, "approver", enable_totp(_user("approver")))
    _nav(page, "Access reviews")
    _shows(page, campaign_path, "[data-testid=item][data-principal=mateojackson]", "revoke suggested")
    _both(page, "c-2-unused-flagged")
    card = page.locator("[data-testid=item][data-principal=mateojackson]")
    card.locator("textarea").fill("Not used since spring")
    card.locator("button[value=revoke]").click()
    page.wait_for_selector("text=revoked; the access is being removed from AWS")

    # 3. The worker takes it away: IAM holds the policy no more.
    wait_for(
        lambda: Grant.objects.get(pk=grant.pk).status == GrantStatus.REVOKED,
        timeout=90,
        what="the revoke applied by the worker",
    )
    assert not _mateo_holds(review_demo)
    assert (
        "gatehouse" not in iam_client(review_demo).list_user_policies(UserName="mateojackson")["PolicyNames"]
    )
    page.goto(campaign_path)
    _both(page, "c-3-revoked")


# --- (d) cross-account --------------------------------------------------------------------------------------


def test_walk_cross_account_access_becomes_a_role_that_trusts_the_outside_account(demo, page):
    # 1. The requester asks for viewer access on my-pipeline for an outside account, with an ExternalId.
    _sign_in(page, "requester")
    _nav(page, "New request")
    page.select_option("select[name=kind]", RequestKind.CROSS_ACCOUNT)
    _pick_account(page, MANAGEMENT)
    page.wait_for_selector("input[name=trusted_account_id]", state="visible")
    assert not page.is_visible(
        "select[name=principal]"
    )  # the outside party receives it: nobody else is asked
    _ask_for_viewer_on_my_pipeline(page, "Our release partner reads the pipeline state", for_mateo=False)
    page.fill("input[name=trusted_account_id]", OUTSIDE_ACCOUNT)
    page.fill("input[name=external_id]", OUTSIDE_EXTERNAL_ID)
    page.click("button[value=preview]")
    page.wait_for_selector("[data-testid=policy-summary]")
    _both(page, "d-1-preview")
    page.click("button[value=submit]")
    page.wait_for_selector("[data-testid=request-status]")
    req = AccessRequest.objects.get()
    assert req.kind == RequestKind.CROSS_ACCOUNT and req.trusted_account_id == OUTSIDE_ACCOUNT
    assert f"Outside account {OUTSIDE_ACCOUNT}" in (page.text_content("[data-testid=request-for]") or "")

    # 2. The approver reads the role and its trust policy, and approves.
    _sign_in(page, "approver", enable_totp(_user("approver")))
    page.goto(f"/review/{req.pk}/")
    page.wait_for_selector("[data-testid=change-document]")
    trust_shown = json.loads(page.locator("[data-testid=change-document]").first.text_content() or "")
    _both(page, "d-2-review")
    page.fill("textarea[name=comment]", "The partner's account, with its ExternalId")
    page.click("button[value=approve]")
    page.wait_for_selector("text=is now approved")

    # 3. The worker creates the role: read back, it trusts the outside account with the ExternalId, as shown.
    _active(req)
    role = iam_client(demo).get_role(RoleName=f"gatehouse-{req.reference}")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    trust = trust if isinstance(trust, dict) else json.loads(trust)
    assert trust == trust_shown
    [statement] = trust["Statement"]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{OUTSIDE_ACCOUNT}:root"}
    assert statement["Condition"]["StringEquals"]["sts:ExternalId"] == OUTSIDE_EXTERNAL_ID
    inline = iam_client(demo).get_role_policy(RoleName=role["RoleName"], PolicyName="gatehouse")
    assert permits([inline["PolicyDocument"]], "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    assert iam_client(demo).list_user_policies(UserName="mateojackson")["PolicyNames"] == []

    # 4. The requester sees it Active, with how the outside party uses it.
    _sign_in(page, "requester")
    _shows(page, f"/requests/{req.pk}/", "[data-testid=grant-status]", "Active")
    assert role["Arn"] in (page.text_content("[data-testid=access-usage]") or "")
    _both(page, "d-3-active")
