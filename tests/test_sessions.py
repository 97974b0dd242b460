"""Access ends when Gatehouse says it ends, for every delivery, on a moto server.

For each kind a real session is obtained from moto's STS before the revoke (an assumed role; for Identity
Center, the permission set's role in the account, assumed under the person's user name as Identity Center
names its sessions), the grant is revoked through the services, and the policies read back from moto are
judged for that session with the condition-aware evaluator (moto's own ignores conditions): refused. A
session issued after a new grant is allowed. The deny Gatehouse kept for older sessions disappears by
itself once the longest of them has expired: the clock is moved in the database and the beat sweeper runs.
"""

from __future__ import annotations

import json
import urllib.parse
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from django.utils import timezone

from accessrequests.models import (
    AccessEnd,
    AccessLevel,
    AuditEvent,
    EndState,
    FenceKind,
    Grant,
    GrantStatus,
    PermissionSet,
    Principal,
    RequestKind,
)
from accessrequests.policy.evaluate import Request, decide
from accessrequests.provisioning import engine as provisioning
from accessrequests.provisioning import session_fences
from accessrequests.provisioning.sessions import access_end_reconcile, access_ends_sweep
from tests.conftest import wait_for
from tests.provisioning_support import (
    MANAGEMENT,
    MY_PIPELINE_ARN,
    OUTSIDE_ACCOUNT,
    OUTSIDE_EXTERNAL_ID,
    REGION,
    PortalWorld,
    iam_client,
    reconcile,
    status_of,
    user_policies,
)

pytestmark = [pytest.mark.moto, pytest.mark.django_db]

ROLE_NAME = "release-engineer"
GET_PIPELINE = ("codepipeline:GetPipeline", MY_PIPELINE_ARN)


@pytest.fixture
def world(demo_world, aws):
    # An IAM role people assume (federated, say): a principal the catalog sync finds like any other.
    iam_client(aws).create_role(
        RoleName=ROLE_NAME,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{MANAGEMENT}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
        MaxSessionDuration=7200,
    )
    return PortalWorld(demo_world)


# --- sessions, as AWS hands them out, and what the evaluated policies say about them ----------------------


class Session:
    """Temporary credentials from moto's STS, with the condition keys AWS puts on every call they sign."""

    def __init__(self, endpoint: str, credentials: dict[str, Any], duration: int):
        self.endpoint = endpoint
        self.credentials = credentials
        self.expires_at = credentials["Expiration"].astimezone(UTC)
        self.issued_at = self.expires_at - timedelta(seconds=duration)
        who = self.client("sts").get_caller_identity()
        self.userid, self.account = who["UserId"], who["Account"]

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=self.endpoint,
            aws_access_key_id=self.credentials["AccessKeyId"],
            aws_secret_access_key=self.credentials["SecretAccessKey"],
            aws_session_token=self.credentials["SessionToken"],
        )

    def context(self) -> dict[str, list[str]]:
        return {
            "aws:TokenIssueTime": [session_fences.iso(self.issued_at)],
            "aws:userid": [self.userid],
            "aws:PrincipalAccount": [self.account],
        }

    def allowed(
        self, documents: list[Any], action: str = GET_PIPELINE[0], resource: str = GET_PIPELINE[1]
    ) -> bool:
        return decide(Request(action, (resource,), self.context()), identity=documents).allowed


def assume(endpoint: str, role_arn: str, name: str, duration: int = 3600, **extra: str) -> Session:
    sts = boto3.client("sts", region_name=REGION, endpoint_url=endpoint)
    answer = sts.assume_role(RoleArn=role_arn, RoleSessionName=name, DurationSeconds=duration, **extra)
    return Session(endpoint, answer["Credentials"], duration)


def _loaded(document: Any) -> dict[str, Any]:
    return json.loads(urllib.parse.unquote(document)) if isinstance(document, str) else document


def role_policies(endpoint: str, name: str) -> list[dict[str, Any]]:
    """Every identity policy of a role as moto holds it (none when the role is gone)."""
    iam = iam_client(endpoint)
    try:
        names = iam.list_role_policies(RoleName=name)["PolicyNames"]
    except iam.exceptions.NoSuchEntityException:
        return []
    documents = [iam.get_role_policy(RoleName=name, PolicyName=n)["PolicyDocument"] for n in names]
    for attached in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]:
        version = iam.get_policy(PolicyArn=attached["PolicyArn"])["Policy"]["DefaultVersionId"]
        documents.append(
            iam.get_policy_version(PolicyArn=attached["PolicyArn"], VersionId=version)["PolicyVersion"][
                "Document"
            ]
        )
    return [_loaded(d) for d in documents]


def permission_set_policies(world: PortalWorld, endpoint: str, arn: str) -> list[dict[str, Any]]:
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=endpoint)
    inline = sso.get_inline_policy_for_permission_set(
        InstanceArn=world.seeded["identity_center"]["instance_arn"], PermissionSetArn=arn
    )["InlinePolicy"]
    return [json.loads(inline)] if inline else []


def permission_set_role(endpoint: str, name: str) -> str:
    """The role Identity Center keeps in the account for a permission set (moto does not make it)."""
    answer = iam_client(endpoint).create_role(
        RoleName=f"AWSReservedSSO_{name}_0123456789abcdef",
        Path="/aws-reserved/sso.amazonaws.com/",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Federated": f"arn:aws:iam::{MANAGEMENT}:saml-provider/AWSSSO"},
                        "Action": "sts:AssumeRoleWithSAML",
                    }
                ],
            }
        ),
    )
    return answer["Role"]["Arn"]


def end_of(grant: Grant) -> AccessEnd:
    """The grant's end, after its task ran (the tests run it here; a worker runs it in production)."""
    end = AccessEnd.objects.get(grant=grant)
    access_end_reconcile(access_end_id=end.pk)
    end.refresh_from_db()
    return end


def revoke(world: PortalWorld, grant: Grant) -> AccessEnd:
    provisioning.grant_revoke(grant_id=grant.pk, actor=world.requester)
    reconcile(grant)
    assert status_of(grant) == GrantStatus.REVOKED, grant.last_error
    return end_of(grant)


def apply(world: PortalWorld, principal: str, **fields: Any) -> Grant:
    grant = world.approve(principal, **fields)
    reconcile(grant)
    assert status_of(grant) == GrantStatus.ACTIVE, grant.last_error
    return grant


def after_the_end(end: AccessEnd) -> None:
    """A session issued after the end as AWS counts it (a policy's dates are whole seconds): wait for that
    second to begin, not for a fixed time."""
    cutoff = session_fences.cutoff(end.ended_at)
    wait_for(lambda: timezone.now() >= cutoff, timeout=5, interval=0.05, what="the second after the end")


def move_clock_past(end: AccessEnd) -> None:
    """Everything about this end happened as long ago as the longest session it covers."""
    assert end.sessions_until is not None
    shift = end.sessions_until - end.ended_at + timedelta(seconds=1)
    AccessEnd.objects.filter(pk=end.pk).update(
        ended_at=end.ended_at - shift, sessions_until=end.sessions_until - shift
    )


# --- IAM inline policy on a role principal ----------------------------------------------------------------


def test_a_role_principals_older_sessions_are_refused_and_stay_refused_when_the_access_is_granted_again(
    world, aws
):
    role_arn = f"arn:aws:iam::{MANAGEMENT}:role/{ROLE_NAME}"
    grant = apply(world, ROLE_NAME)
    old = assume(aws, role_arn, "person@example.com")
    assert old.allowed(role_policies(aws, ROLE_NAME))

    end = revoke(world, grant)
    assert end.state == EndState.CONFIRMED and end.confirmed_at is not None, end.outcome
    assert end.fence_kind == FenceKind.IAM_ROLE and end.fence_target == ROLE_NAME
    # Kept exactly as long as the role lets a session live (MaxSessionDuration 7200 s).
    assert end.sessions_until == end.ended_at + timedelta(seconds=7200)
    assert old.expires_at <= end.sessions_until
    assert not old.allowed(role_policies(aws, ROLE_NAME))

    # The same access granted again: a session issued after the end has it, the one issued before does not.
    after_the_end(end)
    apply(world, ROLE_NAME)
    new = assume(aws, role_arn, "person@example.com")
    documents = role_policies(aws, ROLE_NAME)
    assert new.allowed(documents)
    assert not old.allowed(documents)
    # Only what the grant gave is denied: the deny names GetPipeline on my-pipeline, nothing else.
    fence = iam_client(aws).get_role_policy(RoleName=ROLE_NAME, PolicyName="gatehouse-ended-sessions")
    assert [
        (s["Effect"], s["Action"], s["Resource"]) for s in _loaded(fence["PolicyDocument"])["Statement"]
    ] == [("Deny", ["codepipeline:GetPipeline"], MY_PIPELINE_ARN)]

    # Once the longest session issued before the end has expired, the sweeper removes the deny itself.
    assert access_ends_sweep()["denies_removed"] == 0
    move_clock_past(end)
    assert access_ends_sweep()["denies_removed"] == 1
    assert (
        "gatehouse-ended-sessions"
        not in iam_client(aws).list_role_policies(RoleName=ROLE_NAME)["PolicyNames"]
    )
    assert access_ends_sweep()["denies_removed"] == 0  # idempotent
    assert AuditEvent.objects.filter(action="grant.sessions_deny_removed", object_id=str(grant.pk)).exists()
    assert AuditEvent.objects.filter(action="grant.end_confirmed", object_id=str(grant.pk)).exists()


def test_a_deny_someone_removes_is_put_back_and_nothing_else_is_touched(world, aws):
    iam = iam_client(aws)
    iam.put_role_policy(
        RoleName=ROLE_NAME,
        PolicyName="team-policy",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}],
            }
        ),
    )
    end = revoke(world, apply(world, ROLE_NAME))
    iam.delete_role_policy(RoleName=ROLE_NAME, PolicyName="gatehouse-ended-sessions")
    AccessEnd.objects.filter(pk=end.pk).update(fence_checked_at=end.ended_at - timedelta(hours=1))
    assert access_ends_sweep()["denies_repaired"] == 1
    assert sorted(iam.list_role_policies(RoleName=ROLE_NAME)["PolicyNames"]) == [
        "gatehouse-ended-sessions",
        "team-policy",
    ]
    assert AuditEvent.objects.filter(action="drift.repaired").exists()


# --- IAM inline policy on a user principal ----------------------------------------------------------------


def test_an_iam_users_session_is_refused_when_its_policy_goes_and_no_deny_is_needed(world, aws):
    keys = world.seeded["access_keys"]["mateojackson"]
    grant = apply(world, "mateojackson")
    sts = boto3.client(
        "sts",
        region_name=REGION,
        endpoint_url=aws,
        aws_access_key_id=keys["access_key_id"],
        aws_secret_access_key=keys["secret_access_key"],
    )
    old = Session(aws, sts.get_session_token(DurationSeconds=3600)["Credentials"], 3600)
    iam = iam_client(aws)
    assert old.allowed(user_policies(iam, "mateojackson"))

    end = revoke(world, grant)
    # AWS evaluates a user's sessions against the user's policies at each call: the removal ends them.
    assert end.state == EndState.CONFIRMED and end.fence_kind == FenceKind.NONE, end.outcome
    assert not old.allowed(user_policies(iam, "mateojackson"))

    after_the_end(end)
    apply(world, "mateojackson")
    new = Session(aws, sts.get_session_token(DurationSeconds=3600)["Credentials"], 3600)
    assert new.allowed(user_policies(iam, "mateojackson"))
    assert access_ends_sweep() == {"checked": 0, "denies_removed": 0, "denies_repaired": 0, "errors": 0}


# --- portal-owned cross-account role ----------------------------------------------------------------------


def test_a_cross_account_roles_sessions_end_with_the_role_and_a_new_grant_is_another_role(world, aws):
    grant = world.approve_cross_account()
    reconcile(grant)
    grant.refresh_from_db()
    old_role = grant.details["role_arn"]
    old = assume(aws, old_role, "partner", ExternalId=OUTSIDE_EXTERNAL_ID)
    old_name = old_role.rsplit("/", 1)[-1]
    assert old.allowed(role_policies(aws, old_name))

    end = revoke(world, grant)
    assert end.state == EndState.CONFIRMED and "no longer exists" in end.outcome
    assert end.fence_kind == FenceKind.NONE  # a deleted role's sessions are allowed nothing
    assert role_policies(aws, old_name) == [] and not old.allowed(role_policies(aws, old_name))

    again = world.approve_cross_account()
    reconcile(again)
    again.refresh_from_db()
    assert again.details["role_arn"] != old_role  # named after its own request: no older session reaches it
    new = assume(aws, again.details["role_arn"], "partner", ExternalId=OUTSIDE_EXTERNAL_ID)
    assert new.allowed(role_policies(aws, again.details["role_arn"].rsplit("/", 1)[-1]))
    assert OUTSIDE_ACCOUNT in json.dumps(
        iam_client(aws).get_role(RoleName=again.details["role_arn"].rsplit("/", 1)[-1])["Role"][
            "AssumeRolePolicyDocument"
        ]
    )


# --- Identity Center: a shared permission set -------------------------------------------------------------


def test_a_shared_permission_sets_session_of_the_person_is_refused_until_it_would_have_expired(
    world, aws, settings
):
    settings.GATEHOUSE_END_SHARED_SET_SESSIONS = (
        True  # the deployment lets Gatehouse add its deny to shared sets
    )
    permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
    original = permission_set_policies(world, aws, permission_set.arn)
    role_arn = permission_set_role(aws, permission_set.name)
    fields = {
        "kind": RequestKind.PERMISSION_SET,
        "permission_set": permission_set,
        "pipelines": [],
        "level": "",
    }
    grant = apply(world, "paulo.santos", **fields)
    old = assume(aws, role_arn, "paulo.santos")  # Identity Center names the session after the user
    colleague = assume(aws, role_arn, "akua.mansa")  # someone else who holds the set in the account
    assert old.allowed(original) and colleague.allowed(original)

    end = revoke(world, grant)
    assert end.state == EndState.CONFIRMED, end.outcome
    assert end.fence_kind == FenceKind.PERMISSION_SET and end.fence_target == permission_set.arn
    assert end.sessions_until == end.ended_at + timedelta(hours=1)  # the set's session duration, PT1H
    documents = permission_set_policies(world, aws, permission_set.arn)
    assert not old.allowed(documents)
    assert colleague.allowed(documents)  # scoped to the person whose grant ended
    # The administrator's statements are all still there, untouched; Gatehouse only added its own.
    assert [
        s for s in documents[0]["Statement"] if not s.get("Sid", "").startswith("GatehouseEnded")
    ] == original[0]["Statement"]

    after_the_end(end)
    apply(world, "paulo.santos", **fields)
    new = assume(aws, role_arn, "paulo.santos")
    documents = permission_set_policies(world, aws, permission_set.arn)
    assert new.allowed(documents) and not old.allowed(documents)

    move_clock_past(end)
    assert access_ends_sweep()["denies_removed"] == 1
    assert permission_set_policies(world, aws, permission_set.arn) == original


def test_a_shared_sets_older_session_is_left_to_expire_and_said_so_where_the_deployment_forbids_the_deny(
    world, aws
):
    """The default: Gatehouse writes nothing to a set it did not create, and the end says until when a session
    issued before may last."""
    permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
    original = permission_set_policies(world, aws, permission_set.arn)
    grant = apply(
        world,
        "paulo.santos",
        kind=RequestKind.PERMISSION_SET,
        permission_set=permission_set,
        pipelines=[],
        level="",
    )
    end = revoke(world, grant)
    assert end.fence_kind == FenceKind.NONE and end.fence == []
    assert "GATEHOUSE_END_SHARED_SET_SESSIONS" in end.residual
    assert end.sessions_until == end.ended_at + timedelta(hours=1)
    assert permission_set_policies(world, aws, permission_set.arn) == original


def test_a_person_who_still_holds_the_set_through_a_group_keeps_their_session(world, aws, settings):
    settings.GATEHOUSE_END_SHARED_SET_SESSIONS = True
    permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
    fields = {
        "kind": RequestKind.PERMISSION_SET,
        "permission_set": permission_set,
        "pipelines": [],
        "level": "",
    }
    apply(world, "pipeline-operators", **fields)  # paulo.santos is a member
    grant = apply(world, "paulo.santos", **fields)
    end = revoke(world, grant)
    assert end.fence_kind == FenceKind.NONE and end.fence == []
    assert end.state == EndState.HELD_ELSEWHERE and "Gatehouse did not create" in end.outcome


# --- Identity Center: a portal-owned permission set -------------------------------------------------------


def test_a_portal_permission_sets_older_session_is_refused_and_a_newer_one_has_the_new_grant(world, aws):
    paulo = Principal.objects.get(name="paulo.santos")
    grant = apply(world, "paulo.santos", level=AccessLevel.CUSTOM, actions=["codepipeline:GetPipeline"])
    arn = grant.details["permission_set_arn"]
    role_arn = permission_set_role(aws, f"GH-{paulo.pk}-{MANAGEMENT}")
    old = assume(aws, role_arn, "paulo.santos")
    assert old.allowed(permission_set_policies(world, aws, arn))

    end = revoke(world, grant)
    assert end.state == EndState.CONFIRMED, end.outcome
    assert end.fence_kind == FenceKind.PORTAL_PERMISSION_SET
    documents = permission_set_policies(world, aws, arn)
    assert not old.allowed(documents)
    assert all(s["Effect"] == "Deny" for s in documents[0]["Statement"])  # nothing of the grant is left

    after_the_end(end)
    apply(world, "paulo.santos", level=AccessLevel.CUSTOM, actions=["codepipeline:GetPipeline"])
    new = assume(aws, role_arn, "paulo.santos")
    documents = permission_set_policies(world, aws, arn)
    assert new.allowed(documents) and not old.allowed(documents)

    move_clock_past(end)
    assert access_ends_sweep()["denies_removed"] == 1
    statements = permission_set_policies(world, aws, arn)[0]["Statement"]
    assert [s["Effect"] for s in statements] == ["Allow"]
    assert new.allowed(permission_set_policies(world, aws, arn))


def test_a_portal_permission_set_whose_last_grant_ends_keeps_no_policy_once_its_deny_is_gone(world, aws):
    grant = apply(world, "paulo.santos", level=AccessLevel.CUSTOM, actions=["codepipeline:GetPipeline"])
    arn = grant.details["permission_set_arn"]
    end = revoke(world, grant)
    move_clock_past(end)
    access_ends_sweep()
    assert permission_set_policies(world, aws, arn) == []


# --- expiry takes the same path ---------------------------------------------------------------------------


def test_an_expired_grant_ends_its_sessions_the_same_way(world, aws):
    role_arn = f"arn:aws:iam::{MANAGEMENT}:role/{ROLE_NAME}"
    grant = apply(world, ROLE_NAME)
    old = assume(aws, role_arn, "person@example.com")
    Grant.objects.filter(pk=grant.pk).update(expires_at=timezone.now())
    assert provisioning.grants_expire_due() == 1
    reconcile(grant)
    assert status_of(grant) == GrantStatus.EXPIRED
    end = end_of(grant)
    assert end.state == EndState.CONFIRMED and end.fence_kind == FenceKind.IAM_ROLE
    assert not old.allowed(role_policies(aws, ROLE_NAME))
    assert datetime.now(UTC) < end.sessions_until


# --- SCIM deactivation ------------------------------------------------------------------------------------


def test_a_person_deactivated_over_scim_loses_every_live_grant_and_its_sessions(world, aws, settings):
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from accessrequests.workflow.requests import request_approve, request_submit
    from tests.factories import fresh_factor

    settings.GATEHOUSE_SCIM_TOKEN = "scim-token-for-tests-0123456789abcdef"
    settings.GATEHOUSE_END_SHARED_SET_SESSIONS = True
    scim = Client(HTTP_AUTHORIZATION=f"Bearer {settings.GATEHOUSE_SCIM_TOKEN}")
    created = scim.post(
        "/scim/v2/Users",
        data=json.dumps(
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                "userName": "paulo.santos@example.com",
                "emails": [{"primary": True, "value": "paulo.santos@example.com", "type": "work"}],
                "active": True,
            }
        ),
        content_type="application/scim+json",
    )
    assert created.status_code == 201, created.content
    paulo_user = User.objects.get(username="paulo.santos@example.com")
    paulo_user.groups.add(Group.objects.get_or_create(name="requesters")[0])
    for name in ("paulo.santos", "mateojackson"):
        Principal.objects.get(name=name).users.add(paulo_user)
    permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
    role_arn = permission_set_role(aws, permission_set.name)

    def granted(principal: str, **fields: Any) -> Grant:
        req = request_submit(requester=paulo_user, draft=world.draft(principal, **fields))
        request_approve(
            request_id=req.pk,
            reviewer=world.approver,
            second_factor=fresh_factor(world.approver),
            comment="ok",
        )
        grant = Grant.objects.get(request=req)
        reconcile(grant)
        assert status_of(grant) == GrantStatus.ACTIVE, grant.last_error
        return grant

    assigned = granted(
        "paulo.santos", kind=RequestKind.PERMISSION_SET, permission_set=permission_set, pipelines=[], level=""
    )
    on_iam = granted("mateojackson")
    someone_elses = apply(world, "marymajor")  # asked for by another person: not theirs to lose
    session = assume(aws, role_arn, "paulo.santos")
    assert session.allowed(permission_set_policies(world, aws, permission_set.arn))

    answer = scim.patch(
        f"/scim/v2/Users/{created.json()['id']}",
        data=json.dumps(
            {
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": False}}],
            }
        ),
        content_type="application/scim+json",
    )
    assert answer.status_code == 200, answer.content
    assert status_of(assigned) == status_of(on_iam) == GrantStatus.REVOKING
    assert status_of(someone_elses) == GrantStatus.ACTIVE
    offboarded = AuditEvent.objects.get(action="identity.user_offboarded")
    assert offboarded.after["grants_ended"] == 2
    for grant in (assigned, on_iam):
        reconcile(grant)
        assert status_of(grant) == GrantStatus.REVOKED
        assert end_of(grant).state == EndState.CONFIRMED
    assert not session.allowed(permission_set_policies(world, aws, permission_set.arn))
    assert "gatehouse" not in iam_client(aws).list_user_policies(UserName="mateojackson")["PolicyNames"]
    assert (
        AuditEvent.objects.filter(action="grant.revoke_requested", object_id=str(assigned.pk))
        .get()
        .after["reason"]
        .startswith("paulo.santos@example.com was deactivated")
    )
