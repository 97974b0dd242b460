"""The side paths, tried as an attacker would, against real AWS state on a moto server: each attack fails, and
AWS shows that it did (read back with boto3 and judged by moto's own IAM policy evaluator)."""

from __future__ import annotations

import json
from datetime import timedelta

import boto3
import pytest
from django.utils import timezone

from accessrequests.authz.permissions import NotAllowed
from accessrequests.catalog.sync import catalog_sync
from accessrequests.models import (
    AccessLevel,
    AccessRequest,
    ApprovalRule,
    Grant,
    GrantStatus,
    PassableRole,
    PermissionSet,
    Principal,
    PrincipalKind,
    RequestKind,
    RequestStatus,
)
from accessrequests.provisioning import engine as provisioning
from accessrequests.workflow.requests import RequestError, request_approve, request_submit
from tests.conftest import make_user
from tests.factories import fresh_factor
from tests.provisioning_support import (
    MANAGEMENT,
    MY_PIPELINE_ARN,
    REGION,
    PortalWorld,
    iam_client,
    permits,
    reconcile,
    status_of,
    user_policies,
)

pytestmark = [pytest.mark.moto, pytest.mark.django_db]


@pytest.fixture
def world(demo_world):
    return PortalWorld(demo_world)


def portal_roles(endpoint: str) -> list[str]:
    return [r["RoleName"] for r in iam_client(endpoint).list_roles(PathPrefix="/gatehouse/")["Roles"]]


# --- a cross-account role that trusts a principal of its own account ----------------------------------


def test_a_cross_account_role_cannot_trust_a_principal_of_its_own_account(world, aws):
    same_account = f"arn:aws:iam::{MANAGEMENT}:user/marymajor"
    with pytest.raises(RequestError, match="outside account"):
        world.approve(
            "mateojackson",
            kind=RequestKind.CROSS_ACCOUNT,
            level=AccessLevel.VIEWER,
            actions=[],
            trusted_principal_arn=same_account,
        )
    assert not AccessRequest.objects.exists()
    # A grant that reached the database some other way (an older release, a restored backup) is refused
    # when it is applied: no role is created.
    legit = world.approve_cross_account()
    req = legit.request
    AccessRequest.objects.filter(pk=req.pk).update(trusted_account_id="", trusted_principal_arn=same_account)
    outcome = reconcile(legit)
    assert legit.pk in outcome["failed"] and "outside" in outcome["failed"][legit.pk]
    assert status_of(legit) == GrantStatus.FAILED
    assert portal_roles(aws) == []


# --- a group grant approved by one of its members -----------------------------------------------------


def test_an_approver_in_the_group_cannot_approve_the_groups_grant(world, aws):
    group = Principal.objects.get(kind=PrincipalKind.IAM_GROUP, name="developers")
    member_approver = make_user("mary", "approvers")
    world.rule.approver_users.add(member_approver)
    Principal.objects.get(name="marymajor").users.add(member_approver)  # marymajor is in developers (AWS)
    req = request_submit(requester=world.requester, draft=world.draft(group))
    with pytest.raises(NotAllowed, match="would reach you"):
        request_approve(
            request_id=req.pk, reviewer=member_approver, second_factor=fresh_factor(member_approver)
        )
    iam = iam_client(aws)
    assert iam.list_group_policies(GroupName="developers")["PolicyNames"] == []
    assert not permits(user_policies(iam, "marymajor"), "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    # Someone outside the group may approve it, and then the group's members hold the access in AWS.
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    grant = Grant.objects.get(request=req)
    reconcile(grant)
    assert status_of(grant) == GrantStatus.ACTIVE, grant.last_error
    assert permits(user_policies(iam, "marymajor"), "codepipeline:GetPipeline", MY_PIPELINE_ARN)


# --- an editor grant that would pass a sensitive service role -----------------------------------------


def _mark_service_role_sensitive(endpoint: str) -> PassableRole:
    role = PassableRole.objects.get(arn=world_service_role())
    iam_client(endpoint).tag_role(RoleName=role.name, Tags=[{"Key": "gatehouse:sensitive", "Value": "true"}])
    catalog_sync()
    role.refresh_from_db()
    assert role.sensitive
    return role


def world_service_role() -> str:
    from accessrequests.models import Pipeline

    return Pipeline.objects.get(name="my-pipeline", region=REGION).role_arn


def test_an_editor_grant_cannot_pass_a_sensitive_service_role(world, aws):
    role_arn = world_service_role()
    queued = world.approve("mateojackson", level=AccessLevel.EDITOR, actions=[])  # approved while it was fine
    _mark_service_role_sensitive(aws)
    with pytest.raises(RequestError, match="sensitive"):
        world.approve("marymajor", level=AccessLevel.EDITOR, actions=[])
    outcome = reconcile(queued)  # the approved one is refused when applied
    assert queued.pk in outcome["failed"] and "sensitive" in outcome["failed"][queued.pk]
    iam = iam_client(aws)
    to_pipeline = {"iam:PassedToService": "codepipeline.amazonaws.com"}
    for user in ("mateojackson", "marymajor"):
        assert not permits(user_policies(iam, user), "iam:PassRole", role_arn, to_pipeline)
    assert not permits(user_policies(iam, "mateojackson"), "codepipeline:UpdatePipeline", MY_PIPELINE_ARN)


# --- an admin-equivalent permission set under a non-production rule -----------------------------------


def _administrator_access(endpoint: str, instance_arn: str) -> PermissionSet:
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=endpoint)
    arn = sso.create_permission_set(InstanceArn=instance_arn, Name="AdministratorAccess")["PermissionSet"][
        "PermissionSetArn"
    ]
    sso.attach_managed_policy_to_permission_set(
        InstanceArn=instance_arn,
        PermissionSetArn=arn,
        ManagedPolicyArn="arn:aws:iam::aws:policy/AdministratorAccess",
    )
    catalog_sync()
    return PermissionSet.objects.get(arn=arn)


def test_an_administrator_permission_set_needs_a_rule_that_opts_in(world, aws, client):
    instance_arn = world.seeded["identity_center"]["instance_arn"]
    admin_set = _administrator_access(aws, instance_arn)
    assert admin_set.is_privileged and "AdministratorAccess" in admin_set.risk_reasons[0]
    assert not PermissionSet.objects.get(name="CodePipelineReadOnly").is_privileged
    ask = {"kind": RequestKind.PERMISSION_SET, "permission_set": admin_set, "pipelines": [], "level": ""}
    with pytest.raises(RequestError, match="privileged permission set"):
        world.approve("paulo.santos", **ask)
    assert not AccessRequest.objects.exists()
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=aws)
    held = sso.list_account_assignments(
        InstanceArn=instance_arn, AccountId=MANAGEMENT, PermissionSetArn=admin_set.arn
    )
    assert held["AccountAssignments"] == []

    privileged = ApprovalRule.objects.create(
        name="Break-glass admin", priority=1, approvals_required=2, max_duration_hours=1,
        allow_privileged_permission_sets=True,
    )  # fmt: skip
    privileged.accounts.add(world.account)
    privileged.approver_users.add(world.approver)
    req = request_submit(
        requester=world.requester, draft=world.draft("paulo.santos", **ask, duration_hours=1)
    )
    assert req.rule == privileged and req.approvals_required == 2
    # The approver sees it in red, with the reason.
    from tests.conftest import sign_in_with_mfa

    sign_in_with_mfa(client, world.approver)
    page = client.get(f"/review/{req.pk}/").content.decode()
    assert 'data-testid="privileged"' in page and "AdministratorAccess is admin-equivalent" in page


# --- Gatehouse removes only what it created -----------------------------------------------------------


def _assignments(endpoint: str, instance_arn: str, permission_set: PermissionSet) -> set[str]:
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=endpoint)
    found = sso.list_account_assignments(
        InstanceArn=instance_arn, AccountId=MANAGEMENT, PermissionSetArn=permission_set.arn
    )["AccountAssignments"]
    return {a["PrincipalId"] for a in found}


def _assign_by_hand(
    endpoint: str, instance_arn: str, permission_set: PermissionSet, principal: Principal
) -> None:
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=endpoint)
    sso.create_account_assignment(
        InstanceArn=instance_arn, TargetId=MANAGEMENT, TargetType="AWS_ACCOUNT",
        PermissionSetArn=permission_set.arn, PrincipalType="USER", PrincipalId=principal.external_id,
    )  # fmt: skip


def test_revoke_keeps_an_identity_center_assignment_made_by_hand_before_the_grant(world, aws):
    instance_arn = world.seeded["identity_center"]["instance_arn"]
    read_only = PermissionSet.objects.get(name="CodePipelineReadOnly")
    paulo = world.principal("paulo.santos")
    _assign_by_hand(aws, instance_arn, read_only, paulo)
    grant = world.approve(
        "paulo.santos", kind=RequestKind.PERMISSION_SET, permission_set=read_only, pipelines=[], level=""
    )
    reconcile(grant)
    assert status_of(grant) == GrantStatus.ACTIVE and grant.details.get("already_held") is True
    provisioning.grant_revoke(grant_id=grant.pk, actor=world.requester)
    reconcile(grant)
    assert status_of(grant) == GrantStatus.REVOKED
    assert _assignments(aws, instance_arn, read_only) == {paulo.external_id}  # the hand-made one survives
    assert provisioning.drift_check()["drifted"] == 0


def test_drift_repair_keeps_an_identity_center_assignment_made_by_hand_after_a_grant(world, aws):
    instance_arn = world.seeded["identity_center"]["instance_arn"]
    operator = PermissionSet.objects.get(name="CodePipelineOperator")
    read_only = PermissionSet.objects.get(name="CodePipelineReadOnly")
    paulo = world.principal("paulo.santos")
    ask = {"kind": RequestKind.PERMISSION_SET, "pipelines": [], "level": ""}
    ours = world.approve("paulo.santos", permission_set=operator, **ask)
    reconcile(ours)
    assert _assignments(aws, instance_arn, operator) == {paulo.external_id}
    provisioning.grant_revoke(grant_id=ours.pk, actor=world.requester)
    reconcile(ours)
    assert _assignments(aws, instance_arn, operator) == set()  # ours: removed
    live = world.approve("paulo.santos", permission_set=read_only, **ask)  # keeps paulo under drift checks
    reconcile(live)
    _assign_by_hand(aws, instance_arn, operator, paulo)  # an administrator's decision, later
    counts = provisioning.drift_check()
    assert counts["drifted"] == 0 and counts["repaired"] == 0
    assert _assignments(aws, instance_arn, operator) == {paulo.external_id}
    assert _assignments(aws, instance_arn, read_only) == {paulo.external_id}


def test_revoke_and_drift_repair_keep_an_inline_policy_made_by_hand(world, aws):
    iam = iam_client(aws)
    team_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}]}  # fmt: skip
    iam.put_user_policy(UserName="mateojackson", PolicyName="team", PolicyDocument=json.dumps(team_policy))
    grant = world.approve("mateojackson")
    reconcile(grant)
    assert sorted(iam.list_user_policies(UserName="mateojackson")["PolicyNames"]) == ["gatehouse", "team"]
    iam.delete_user_policy(UserName="mateojackson", PolicyName="gatehouse")  # drift
    assert provisioning.drift_check()["repaired"] == 1
    provisioning.grant_revoke(grant_id=grant.pk, actor=world.requester)
    reconcile(grant)
    assert iam.list_user_policies(UserName="mateojackson")["PolicyNames"] == ["team"]


# --- the clock starts at approval ----------------------------------------------------------------------


def test_a_request_approved_after_its_window_is_refused_and_aws_is_untouched(world, aws, settings):
    req = request_submit(requester=world.requester, draft=world.draft("mateojackson"))
    AccessRequest.objects.filter(pk=req.pk).update(
        created_at=timezone.now() - timedelta(hours=settings.GATEHOUSE_PENDING_EXPIRY_HOURS + 1)
    )
    with pytest.raises(NotAllowed, match=f"waited more than {settings.GATEHOUSE_PENDING_EXPIRY_HOURS} hours"):
        request_approve(
            request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
        )
    req.refresh_from_db()
    assert req.status == RequestStatus.PENDING and not Grant.objects.exists()
    assert iam_client(aws).list_user_policies(UserName="mateojackson")["PolicyNames"] == []


def test_a_grant_runs_for_its_full_duration_from_approval(world, aws):
    req = request_submit(requester=world.requester, draft=world.draft("mateojackson", duration_hours=4))
    filed = timezone.now() - timedelta(hours=3)  # it waited three of its four hours for a reviewer
    AccessRequest.objects.filter(pk=req.pk).update(created_at=filed, starts_at=filed)
    before = timezone.now()
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    grant = Grant.objects.get(request=req)
    assert grant.starts_at >= before
    assert grant.expires_at - grant.starts_at == timedelta(hours=4)
    reconcile(grant)
    assert status_of(grant) == GrantStatus.ACTIVE
    assert provisioning.grants_expire_due(now=before + timedelta(hours=3, minutes=59)) == 0
    assert permits(
        user_policies(iam_client(aws), "mateojackson"), "codepipeline:GetPipeline", MY_PIPELINE_ARN
    )
