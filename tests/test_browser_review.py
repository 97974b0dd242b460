"""The approver's screen is the truth, for each of the four kinds, in a real Chromium at 1280 and 390 px: what the
review page says AWS will get is what AWS holds after the approval is applied by a real worker (read back from
moto), and a second request for the same principal shows only what that principal holds in AWS."""

from __future__ import annotations

import json

import boto3
import pytest

from accessrequests.models import AccessLevel, Grant, GrantStatus, PermissionSet, RequestKind
from accessrequests.policy import documents as policy
from accessrequests.workflow.requests import request_submit
from tests.conftest import enable_totp, screenshot, totp_code, wait_for
from tests.provisioning_support import (
    MANAGEMENT,
    OUTSIDE_ACCOUNT,
    REGION,
    PortalWorld,
    admin_credentials,
    aws_env,
    iam_client,
    use_credentials,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.moto,
    pytest.mark.worker,
    pytest.mark.django_db(transaction=True),
]
PASSWORD = "correct-horse-battery"


def _pretty(document) -> str:
    document = document if isinstance(document, dict) else json.loads(document)
    return json.dumps(json.loads(policy.render(policy.coalesce(policy.as_statements(document)))), indent=2)


@pytest.fixture
def portal(demo_world, aws, worker_env, workers, monkeypatch, page):
    world = PortalWorld(demo_world)
    secret = enable_totp(world.approver)
    env = aws_env(worker_env, aws)
    use_credentials(monkeypatch, env, admin_credentials(aws))
    workers.start(env)
    page.goto("/accounts/login/")
    page.fill("input[name=login]", "approver")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.fill("input[name=code]", totp_code(secret))
    page.click("button[type=submit]")
    page.wait_for_selector("[data-testid=current-user]")
    world.page = page
    return world


def _file(world, principal: str, **fields):
    return request_submit(requester=world.requester, draft=world.draft(principal, **fields))


def _review(world, req, name: str) -> dict[str, str]:
    """Open the review page at both widths (screenshots), read what it says, and approve it."""
    page = world.page
    page.goto(f"/review/{req.pk}/")
    page.wait_for_selector("[data-testid=change-summary]")
    shown = {
        "summary": page.text_content("[data-testid=change-summary]") or "",
        "after": page.text_content("[data-testid=policy-after]")
        if page.locator("[data-testid=policy-after]").count()
        else "",
        "documents": [d.text_content() for d in page.locator("[data-testid=change-document]").all()],
        "recipients": page.text_content("[data-testid=recipients]") or "",
    }
    screenshot(page, f"review-{name}-1280")
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    screenshot(page, f"review-{name}-390")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.fill("textarea[name=comment]", "checked against the change shown")
    page.click("button[value=approve]")
    page.wait_for_selector("text=is now approved")
    return shown


def _applied(req) -> Grant:
    grant = Grant.objects.get(request=req)
    wait_for(
        lambda: Grant.objects.get(pk=grant.pk).status == GrantStatus.ACTIVE,
        timeout=90,
        what="the grant applied",
    )
    return Grant.objects.get(pk=grant.pk)


def test_a_pipeline_grant_adds_exactly_what_the_review_showed(portal, aws):
    req = _file(portal, "mateojackson", level=AccessLevel.OPERATOR, actions=[])
    shown = _review(portal, req, "pipeline")
    assert "mateojackson" in shown["recipients"]
    _applied(req)
    held = iam_client(aws).get_user_policy(UserName="mateojackson", PolicyName="gatehouse")["PolicyDocument"]
    assert _pretty(held) == shown["after"].strip()
    # The next request for mateojackson starts from what AWS holds now.
    later = _file(portal, "mateojackson", level=AccessLevel.EDITOR, actions=[])
    portal.page.goto(f"/review/{later.pk}/")
    diff = portal.page.text_content("[data-testid=policy-diff]") or ""
    assert "codepipeline:StartPipelineExecution" in diff and "+" not in [
        line[:1] for line in diff.splitlines() if "StartPipelineExecution" in line
    ]


def test_a_pass_role_grant_adds_exactly_what_the_review_showed(portal, aws):
    role = portal.role("CodePipelineServiceRole")
    req = _file(
        portal, "marymajor", kind=RequestKind.PASS_ROLE, pass_role=role, pipelines=[], level="", actions=[]
    )
    shown = _review(portal, req, "pass-role")
    assert "iam:PassedToService" in shown["after"] and role.arn in shown["after"]
    _applied(req)
    held = iam_client(aws).get_user_policy(UserName="marymajor", PolicyName="gatehouse")["PolicyDocument"]
    assert _pretty(held) == shown["after"].strip()


def test_a_permission_set_grant_is_the_assignment_the_review_showed(portal, aws):
    read_only = PermissionSet.objects.get(name="CodePipelineReadOnly")
    ask = {"kind": RequestKind.PERMISSION_SET, "pipelines": [], "level": ""}
    req = _file(portal, "paulo.santos", permission_set=read_only, **ask)
    shown = _review(portal, req, "permission-set")
    assert shown["summary"].startswith(
        "Assigns the permission set CodePipelineReadOnly to Identity Center user Paulo Santos"
    )
    assert '"codepipeline:Get*"' in "".join(shown["documents"])
    _applied(req)
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=aws)
    held = sso.list_account_assignments(
        InstanceArn=portal.seeded["identity_center"]["instance_arn"],
        AccountId=MANAGEMENT,
        PermissionSetArn=read_only.arn,
    )["AccountAssignments"]
    assert [a["PrincipalId"] for a in held] == [portal.principal("paulo.santos").external_id]
    later = _file(
        portal, "paulo.santos", permission_set=PermissionSet.objects.get(name="CodePipelineOperator"), **ask
    )
    portal.page.goto(f"/review/{later.pk}/")
    page_text = portal.page.text_content("main") or ""
    assert f"Holds in account {MANAGEMENT} now: CodePipelineReadOnly" in " ".join(page_text.split())


def test_a_cross_account_grant_is_the_role_the_review_showed_and_nothing_on_the_principal(portal, aws):
    req = _file(
        portal, "mateojackson", kind=RequestKind.CROSS_ACCOUNT, level=AccessLevel.VIEWER, actions=[],
        trusted_account_id=OUTSIDE_ACCOUNT, external_id="partner-42",
    )  # fmt: skip
    shown = _review(portal, req, "cross-account")
    trust, permissions_text, usage = shown["documents"]
    assert f"any principal of account {OUTSIDE_ACCOUNT}" in shown["recipients"]
    assert "capped by the permissions boundary GatehouseBoundary" in shown["summary"]
    _applied(req)
    iam = iam_client(aws)
    role = iam.get_role(RoleName=f"gatehouse-{req.reference}")["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"].endswith(":policy/GatehouseBoundary")
    held_trust = role["AssumeRolePolicyDocument"]
    assert json.loads(trust) == (held_trust if isinstance(held_trust, dict) else json.loads(held_trust))
    inline = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="gatehouse")["PolicyDocument"]
    assert _pretty(inline) == permissions_text.strip()
    assert role["Arn"] in usage
    # A request for mateojackson afterwards shows what mateojackson holds: none of the role's statements.
    later = _file(portal, "mateojackson")
    portal.page.goto(f"/review/{later.pk}/")
    assert iam.list_user_policies(UserName="mateojackson")["PolicyNames"] == []
    before = (portal.page.text_content("[data-testid=policy-diff]") or "").splitlines()
    assert not [
        line for line in before if line.startswith(" ") and "codepipeline" in line
    ]  # nothing held today
