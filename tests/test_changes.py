"""What the review says changes in AWS is what AWS gets, for each of the four kinds (moto, read back after the
grant is applied), and a later review of the same principal shows only what lives on that principal."""

from __future__ import annotations

import json

import boto3
import pytest

from accessrequests.models import AccessLevel, Grant, GrantStatus, PermissionSet, RequestKind
from accessrequests.policy import documents as policy
from accessrequests.workflow.changes import change_for
from accessrequests.workflow.requests import request_approve, request_submit
from tests.factories import fresh_factor
from tests.provisioning_support import (
    MANAGEMENT,
    OUTSIDE_ACCOUNT,
    REGION,
    PortalWorld,
    iam_client,
    reconcile,
    status_of,
)

pytestmark = [pytest.mark.moto, pytest.mark.django_db]


@pytest.fixture
def world(demo_world):
    return PortalWorld(demo_world)


def _approve_and_apply(world, req) -> Grant:
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    grant = Grant.objects.get(request=req)
    reconcile(grant)
    assert status_of(grant) == GrantStatus.ACTIVE, grant.last_error
    return grant


def _file(world, principal="mateojackson", **fields):
    return request_submit(requester=world.requester, draft=world.draft(principal, **fields))


def _held_by_user(endpoint: str, user: str) -> str:
    """The Gatehouse policy of an IAM user as AWS holds it, in the page's form (coalesced, pretty)."""
    iam = iam_client(endpoint)
    document = iam.get_user_policy(UserName=user, PolicyName="gatehouse")["PolicyDocument"]
    document = document if isinstance(document, dict) else json.loads(document)
    return json.dumps(json.loads(policy.render(policy.coalesce(policy.as_statements(document)))), indent=2)


@pytest.mark.parametrize("kind", ["pipeline", "pass_role"])
def test_an_iam_policy_change_is_exactly_what_aws_holds_after_approval(world, aws, kind):
    fields = (
        {"kind": RequestKind.PASS_ROLE, "pass_role": world.role("CodePipelineServiceRole"), "pipelines": [], "level": "", "actions": []}
        if kind == "pass_role"
        else {"level": AccessLevel.OPERATOR, "actions": []}
    )  # fmt: skip
    first = _approve_and_apply(world, _file(world))  # GetPipeline is already held
    req = _file(world, **fields)
    change = change_for(req)
    assert change.source == "aws" and "IAM user mateojackson" in change.target
    assert "codepipeline:GetPipeline" in change.before
    added = "\n".join(line for css, line in change.lines if css == "diff-add")
    assert ("iam:PassRole" if kind == "pass_role" else "codepipeline:StartPipelineExecution") in added
    _approve_and_apply(world, req)
    assert _held_by_user(aws, "mateojackson") == change.after
    assert first.pk != req.pk


def test_a_cross_account_grant_is_shown_as_its_role_and_never_as_part_of_the_principal(world, aws):
    req = request_submit(
        requester=world.requester,
        draft=world.draft(
            "mateojackson", kind=RequestKind.CROSS_ACCOUNT, level=AccessLevel.VIEWER, actions=[],
            trusted_account_id=OUTSIDE_ACCOUNT, external_id="partner-42",
        ),
    )  # fmt: skip
    change = change_for(req)
    assert change.before is None  # the requester's own principal does not change
    assert (
        f"arn:aws:iam::{MANAGEMENT}:role/gatehouse/p{req.principal_id}/gatehouse-{req.reference}"
        in change.target
    )
    trust, permissions_text, usage = (doc.body for doc in change.documents)
    assert change.recipients[0].label.startswith(f"any principal of account {OUTSIDE_ACCOUNT}")
    grant = _approve_and_apply(world, req)
    role = iam_client(aws).get_role(RoleName=f"gatehouse-{req.reference}")["Role"]
    held_trust = role["AssumeRolePolicyDocument"]
    held_trust = held_trust if isinstance(held_trust, dict) else json.loads(held_trust)
    assert json.loads(trust) == held_trust
    inline = iam_client(aws).get_role_policy(RoleName=role["RoleName"], PolicyName="gatehouse")[
        "PolicyDocument"
    ]
    inline = inline if isinstance(inline, dict) else json.loads(inline)
    assert json.loads(permissions_text) == json.loads(
        policy.render(policy.coalesce(policy.as_statements(inline)))
    )
    assert role["Arn"] in usage and grant.details["role_arn"] == role["Arn"]
    # A later request for mateojackson shows only what lives on mateojackson: none of the role's statements.
    later = change_for(_file(world))
    assert later.before == ""  # nothing held today
    assert iam_client(aws).list_user_policies(UserName="mateojackson")["PolicyNames"] == []


def test_a_permission_set_change_is_the_assignment_and_a_second_one_is_truly_no_change(world, aws):
    read_only = PermissionSet.objects.get(name="CodePipelineReadOnly")
    ask = {"kind": RequestKind.PERMISSION_SET, "permission_set": read_only, "pipelines": [], "level": ""}
    req = _file(world, "paulo.santos", **ask)
    change = change_for(req)
    assert change.before is None and not change.no_change
    assert (
        change.summary
        == f"Assigns the permission set CodePipelineReadOnly to Identity Center user Paulo Santos in account {MANAGEMENT}."
    )
    assert '"codepipeline:Get*"' in "".join(doc.body for doc in change.documents)
    _approve_and_apply(world, req)
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=aws)
    held = sso.list_account_assignments(
        InstanceArn=world.seeded["identity_center"]["instance_arn"],
        AccountId=MANAGEMENT,
        PermissionSetArn=read_only.arn,
    )["AccountAssignments"]
    assert [a["PrincipalId"] for a in held] == [world.principal("paulo.santos").external_id]
    # Akua holds the same set by hand (an administrator's assignment): a request for it changes nothing.
    akua = world.principal("akua.mansa")
    sso.create_account_assignment(
        InstanceArn=world.seeded["identity_center"]["instance_arn"], TargetId=MANAGEMENT, TargetType="AWS_ACCOUNT",
        PermissionSetArn=read_only.arn, PrincipalType="USER", PrincipalId=akua.external_id,
    )  # fmt: skip
    again = change_for(_file(world, "akua.mansa", **ask))
    assert again.no_change and again.summary.startswith(
        "No change: Identity Center user Akua Mansa already holds"
    )


def test_an_identity_center_group_change_is_its_gatehouse_permission_set_and_names_its_members(world, aws):
    req = _file(world, "pipeline-operators", level=AccessLevel.VIEWER, actions=[])
    change = change_for(req)
    assert "permission set GH-" in change.target and change.before == ""
    assert {r.label for r in change.recipients} >= {
        "Identity Center user Paulo Santos",
        "Identity Center user Akua Mansa",
    }
    grant = _approve_and_apply(world, req)
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=aws)
    inline = sso.get_inline_policy_for_permission_set(
        InstanceArn=world.seeded["identity_center"]["instance_arn"],
        PermissionSetArn=grant.details["permission_set_arn"],
    )["InlinePolicy"]
    assert (
        json.dumps(
            json.loads(policy.render(policy.coalesce(policy.as_statements(json.loads(inline))))), indent=2
        )
        == change.after
    )


def test_when_aws_cannot_be_read_the_page_says_so_and_shows_what_gatehouse_applied(world, aws, settings):
    _approve_and_apply(world, _file(world))
    settings.AWS_ENDPOINT_URL = "http://127.0.0.1:9"  # AWS is down
    from accessrequests.aws.reuse import forget_clients

    forget_clients()
    change = change_for(_file(world, level=AccessLevel.OPERATOR, actions=[]))
    assert change.source == "gatehouse" and "could not be read" in change.source_note
    assert "codepipeline:GetPipeline" in change.before
