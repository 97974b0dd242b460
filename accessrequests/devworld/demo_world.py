"""A small, believable AWS world on a moto server, for ``make demo`` and the tests.

It follows the AWS CodePipeline troubleshooting guide: account 123456789012 (moto's default account, and the
account in the guide) with ``my-pipeline`` and the IAM users ``mateojackson`` and ``marymajor``; a second
"production" account reached by assuming a role (the two are tagged ``environment`` development and production
in Organizations); service roles that do and do not trust codepipeline; and an IAM Identity Center instance with
users, groups and permission sets.

:func:`seed_demo_world` is idempotent: every object is looked up before it is created, so a second run creates
nothing and returns the same summary (except access-key secrets, which AWS only reveals once).

moto facts this module relies on (moto 5.1):

- Organizations: ``CreateAccount`` succeeds at once with a random 12-digit id and, like AWS, creates
  ``OrganizationAccountAccessRole`` in the new account trusting the management account.
- STS: ``AssumeRole`` into ``arn:aws:iam::<other>:role/X`` returns keys that moto serves from account
  ``<other>`` (see ``client.py``), which is how the second account is seeded and read.
- CodePipeline ``CreatePipeline`` needs >= 2 stages and a ``roleArn`` of an existing role in the same account
  whose trust policy statements *all* have ``Principal.Service`` and name ``codepipeline.amazonaws.com`` as a
  plain string (moto indexes ``Principal["Service"]`` of every statement; a list of services is not
  recognised). The artifact bucket is not checked, but we create it anyway so the world is consistent.
- SSO Admin: ``CreateInstance`` is not implemented; every account and region gets one ACTIVE instance that
  ``ListInstances`` returns. Identity Store accepts any store id and refuses duplicate user and group names
  (ConflictException), but not duplicate group memberships, nor duplicate permission-set names: we check.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Any

from botocore.exceptions import ClientError

from accessrequests.aws import catalog
from accessrequests.aws.client import client, endpoint_url
from accessrequests.aws.motoserver import seed_random

logger = logging.getLogger(__name__)

PRIMARY_REGION = "us-east-1"
SECOND_REGION = "eu-west-1"
PRODUCTION_ACCOUNT_NAME = "production"
PRODUCTION_ACCOUNT_EMAIL = "aws-production@example.com"
ORG_ACCESS_ROLE = "OrganizationAccountAccessRole"
PROVISIONING_ROLE = "GatehouseProvisioner"
# The permissions boundary every role Gatehouse creates carries (settings GATEHOUSE_PERMISSIONS_BOUNDARY), made in
# each demo account as member-provisioning-role.yaml makes it in a real member account.
BOUNDARY_POLICY = "GatehouseBoundary"
SERVICE_ROLE = "CodePipelineServiceRole"
SERVICE_ROLE_PATH = "/service-role/"
DEMO_IAM_USERS = ("mateojackson", "marymajor")
DEMO_IAM_GROUP = "developers"
# Each account's environment, as a tag in Organizations: what Gatehouse routes by (it guesses nothing from names).
ENVIRONMENT_TAG = "environment"
WORLD_SEED = 12  # moto's random generator, seeded before the world is created (see _Seeder.organization)


def _trust(*services: str, condition: dict[str, Any] | None = None) -> dict[str, Any]:
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": services[0] if len(services) == 1 else list(services)},
        "Action": "sts:AssumeRole",
    }
    if condition:
        statement["Condition"] = condition
    return {"Version": "2012-10-17", "Statement": [statement]}


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


PIPELINE_SERVICE_POLICY = _policy(
    {
        "Effect": "Allow",
        "Action": ["s3:GetObject", "s3:PutObject", "s3:GetBucketVersioning"],
        "Resource": "arn:aws:s3:::gatehouse-demo-artifacts-*",
    },
    {"Effect": "Allow", "Action": ["codebuild:StartBuild", "codebuild:BatchGetBuilds"], "Resource": "*"},
)

# What the portal's worker needs in every account it provisions: write the portal-owned inline policies and
# read the catalog. (Identity Center writes happen in the management account with the hub's credentials.)
PROVISIONER_POLICY = _policy(
    {
        "Effect": "Allow",
        "Action": [
            "iam:GetRole",
            "iam:ListRoles",
            "iam:ListRoleTags",
            "iam:GetUserPolicy",
            "iam:PutUserPolicy",
            "iam:DeleteUserPolicy",
            "iam:GetRolePolicy",
            "iam:PutRolePolicy",
            "iam:DeleteRolePolicy",
            "iam:GetGroupPolicy",
            "iam:PutGroupPolicy",
            "iam:DeleteGroupPolicy",
            "iam:CreateRole",
            "iam:UpdateAssumeRolePolicy",
            "codepipeline:ListPipelines",
            "codepipeline:GetPipeline",
            "codepipeline:ListTagsForResource",
        ],
        "Resource": "*",
    }
)


def boundary_document(account_id: str) -> str:
    """deploy/cloudformation/member-provisioning-role.yaml's boundary in ``account_id``: CodePipeline work and
    passing roles to CodePipeline, nothing more."""
    return _policy(
        {
            "Sid": "PipelineWork",
            "Effect": "Allow",
            "Action": "codepipeline:*",
            "Resource": f"arn:aws:codepipeline:*:{account_id}:*",
        },
        {
            "Sid": "PipelineActionsWithoutAResource",
            "Effect": "Allow",
            "Action": ["codepipeline:List*", "codepipeline:GetActionType"],
            "Resource": "*",
        },
        {
            "Sid": "PassRolesToCodePipelineOnly",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": f"arn:aws:iam::{account_id}:role/*",
            "Condition": {"StringEquals": {"iam:PassedToService": "codepipeline.amazonaws.com"}},
        },
    )


def _roles_for_management(account_id: str) -> list[dict[str, Any]]:
    return [
        {
            "name": SERVICE_ROLE,
            "path": SERVICE_ROLE_PATH,
            "trust": _trust("codepipeline.amazonaws.com"),
            "policy": PIPELINE_SERVICE_POLICY,
            "description": "Service role of the demo pipelines",
        },
        {
            # A list of services plus a confused-deputy condition: still trusts codepipeline.
            "name": "CodePipelineDeployRole",
            "trust": _trust(
                "codepipeline.amazonaws.com",
                "cloudformation.amazonaws.com",
                condition={"StringEquals": {"aws:SourceAccount": account_id}},
            ),
            "description": "Deploy role passed to CodePipeline and CloudFormation",
        },
        {
            "name": "LambdaExecutionRole",
            "trust": _trust("lambda.amazonaws.com"),
            "description": "Does not trust codepipeline: cannot be requested for iam:PassRole",
        },
        {
            "name": "CodePipelineBreakGlassRole",
            "trust": _trust("codepipeline.amazonaws.com"),
            "tags": {"gatehouse:sensitive": "true"},
            "description": "Trusts codepipeline but is sensitive: never handed out",
        },
        {
            # An unconditional Deny of the service beats the Allow: does not trust codepipeline.
            "name": "LegacyPipelineRole",
            "trust": {
                "Version": "2012-10-17",
                "Statement": [
                    _trust("codepipeline.amazonaws.com")["Statement"][0],
                    {
                        "Effect": "Deny",
                        "Principal": {"Service": "codepipeline.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    },
                ],
            },
            "description": "Retired: its trust policy denies codepipeline",
        },
    ]


def _roles_for_member(management_account_id: str) -> list[dict[str, Any]]:
    return [
        {
            "name": SERVICE_ROLE,
            "path": SERVICE_ROLE_PATH,
            "trust": _trust("codepipeline.amazonaws.com"),
            "policy": PIPELINE_SERVICE_POLICY,
            "description": "Service role of the production pipelines",
        },
        {
            "name": PROVISIONING_ROLE,
            "trust": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": f"arn:aws:iam::{management_account_id}:root"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "policy": PROVISIONER_POLICY,
            "description": "Assumed by Gatehouse to provision grants in this account",
        },
    ]


# --- pipeline declarations ---


def _action(name: str, category: str, provider: str, owner: str = "AWS", **kw: Any) -> dict[str, Any]:
    return {
        "name": name,
        "actionTypeId": {"category": category, "owner": owner, "provider": provider, "version": "1"},
        "runOrder": 1,
        **kw,
    }


def _source_stage(repo: str) -> dict[str, Any]:
    return {
        "name": "Source",
        "actions": [
            _action(
                "Source",
                "Source",
                "CodeStarSourceConnection",
                configuration={"FullRepositoryId": f"example/{repo}", "BranchName": "main"},
                outputArtifacts=[{"name": "SourceOutput"}],
            )
        ],
    }


def _build_stage(project: str) -> dict[str, Any]:
    return {
        "name": "Build",
        "actions": [
            _action(
                "Build",
                "Build",
                "CodeBuild",
                configuration={"ProjectName": project},
                inputArtifacts=[{"name": "SourceOutput"}],
                outputArtifacts=[{"name": "BuildOutput"}],
            )
        ],
    }


def _approval_stage() -> dict[str, Any]:
    return {
        "name": "Approve",
        "actions": [
            _action("ManualApproval", "Approval", "Manual", configuration={"CustomData": "Release to prod?"})
        ],
    }


def _deploy_stage(stack: str) -> dict[str, Any]:
    return {
        "name": "Deploy",
        "actions": [
            _action(
                "Deploy",
                "Deploy",
                "CloudFormation",
                configuration={"ActionMode": "CREATE_UPDATE", "StackName": stack},
                inputArtifacts=[{"name": "BuildOutput"}],
            )
        ],
    }


def _pipelines_for(account: str) -> list[dict[str, Any]]:
    """The demo pipelines (region, name, stages, tags) of the "management" or the "production" account."""
    if account == "management":
        return [
            {
                "region": PRIMARY_REGION,
                "name": "my-pipeline",
                "stages": [
                    _source_stage("my-app"),
                    _build_stage("my-app"),
                    _approval_stage(),
                    _deploy_stage("my-app"),
                ],
                "tags": {"team": "platform", "environment": "staging"},
            },
            {
                "region": PRIMARY_REGION,
                "name": "web-frontend",
                "stages": [_source_stage("web"), _build_stage("web"), _deploy_stage("web")],
                "tags": {"team": "web", "environment": "staging"},
            },
            {
                "region": PRIMARY_REGION,
                "name": "data-etl",
                "stages": [_source_stage("etl"), _build_stage("etl")],
                "tags": {"team": "data", "environment": "staging"},
            },
            {
                "region": SECOND_REGION,
                "name": "web-frontend-eu",
                "stages": [_source_stage("web"), _build_stage("web"), _deploy_stage("web-eu")],
                "tags": {"team": "web", "environment": "staging"},
            },
        ]
    return [
        {
            "region": PRIMARY_REGION,
            "name": "payments-release",
            "stages": [
                _source_stage("payments"),
                _build_stage("payments"),
                _approval_stage(),
                _deploy_stage("payments"),
            ],
            "tags": {"team": "payments", "environment": "production"},
        }
    ]


# --- Identity Center ---

IC_USERS = (("paulo.santos", "Paulo", "Santos"), ("akua.mansa", "Akua", "Mansa"))
IC_GROUPS = (
    ("pipeline-operators", "Start, retry and approve pipelines", ("paulo.santos", "akua.mansa")),
    ("release-managers", "Approve production releases", ("akua.mansa",)),
)
_READ = ["codepipeline:Get*", "codepipeline:List*"]
PERMISSION_SETS = (
    (
        "CodePipelineReadOnly",
        "View pipelines and their executions",
        "PT1H",
        _policy({"Effect": "Allow", "Action": _READ, "Resource": "*"}),
    ),
    (
        "CodePipelineOperator",
        "Run, retry and approve pipelines",
        "PT4H",
        _policy(
            {
                "Effect": "Allow",
                "Action": [
                    *_READ,
                    "codepipeline:StartPipelineExecution",
                    "codepipeline:StopPipelineExecution",
                    "codepipeline:RetryStageExecution",
                    "codepipeline:PutApprovalResult",
                ],
                "Resource": "*",
            }
        ),
    ),
)


# --- seeding steps ---


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class _Seeder:
    """Create-if-missing helpers that record what they created."""

    def __init__(self) -> None:
        self.created: list[str] = []

    def organization(self) -> tuple[str, str]:
        """Make sure an organization and the production account exist; return (management, production) ids."""
        organizations = client("organizations")
        try:
            management = organizations.describe_organization()["Organization"]["MasterAccountId"]
        except ClientError as exc:
            if _code(exc) != "AWSOrganizationsNotInUseException":
                raise
            # A fresh server: seed its random generator first, so the world gets the same ids on every moto
            # server (make demo rebuilds it on each start and finds the ids its database knows).
            seed_random(endpoint_url() or "", WORLD_SEED)
            management = organizations.create_organization(FeatureSet="ALL")["Organization"][
                "MasterAccountId"
            ]
            self.created.append(f"organization of {management}")
        production = next(
            (
                account["Id"]
                for page in organizations.get_paginator("list_accounts").paginate()
                for account in page["Accounts"]
                if account["Name"] == PRODUCTION_ACCOUNT_NAME
            ),
            None,
        )
        if production is None:
            status = organizations.create_account(
                AccountName=PRODUCTION_ACCOUNT_NAME, Email=PRODUCTION_ACCOUNT_EMAIL
            )["CreateAccountStatus"]
            # moto answers SUCCEEDED at once; real AWS would need DescribeCreateAccountStatus polling, but the
            # demo world only ever runs against moto (see seed_demo_world).
            if status.get("State") != "SUCCEEDED":
                raise RuntimeError(f"creating the production account did not succeed: {status}")
            self.created.append(f"account {PRODUCTION_ACCOUNT_NAME} {status['AccountId']}")
            production = status["AccountId"]
        self.environment_tag(organizations, management, "development")
        self.environment_tag(organizations, production, "production")
        return management, production

    def environment_tag(self, organizations: Any, account_id: str, environment: str) -> None:
        """Tag an account with its environment, unless it has an environment tag already (someone trying the
        demo may have changed it: a re-run keeps theirs)."""
        tags = organizations.list_tags_for_resource(ResourceId=account_id).get("Tags", [])
        if any(tag["Key"] == ENVIRONMENT_TAG for tag in tags):
            return
        organizations.tag_resource(
            ResourceId=account_id, Tags=[{"Key": ENVIRONMENT_TAG, "Value": environment}]
        )
        self.created.append(f"tag {ENVIRONMENT_TAG}={environment} on account {account_id}")

    def role(self, iam: Any, spec: dict[str, Any]) -> str:
        try:
            arn = iam.get_role(RoleName=spec["name"])["Role"]["Arn"]
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
            arn = iam.create_role(
                RoleName=spec["name"],
                Path=spec.get("path", "/"),
                AssumeRolePolicyDocument=json.dumps(spec["trust"]),
                Description=spec.get("description", ""),
            )["Role"]["Arn"]
            self.created.append(f"role {arn}")
        # Tags and inline policies are overwritten with the same values: idempotent by nature.
        if spec.get("tags"):
            iam.tag_role(
                RoleName=spec["name"], Tags=[{"Key": k, "Value": v} for k, v in spec["tags"].items()]
            )
        if spec.get("policy"):
            iam.put_role_policy(RoleName=spec["name"], PolicyName="demo", PolicyDocument=spec["policy"])
        return str(arn)

    def boundary(self, iam: Any, account_id: str) -> None:
        arn = f"arn:aws:iam::{account_id}:policy/{BOUNDARY_POLICY}"
        try:
            iam.get_policy(PolicyArn=arn)
            return
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
        iam.create_policy(
            PolicyName=BOUNDARY_POLICY,
            PolicyDocument=boundary_document(account_id),
            Description="Gatehouse-created roles can act on CodePipeline and pass roles to CodePipeline, nothing more.",
        )
        self.created.append(f"policy {arn}")

    def bucket(self, s3: Any, name: str, region: str) -> None:
        try:
            s3.head_bucket(Bucket=name)
            return
        except ClientError as exc:
            if _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise
        # us-east-1 is the one region that refuses an explicit LocationConstraint.
        extra = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
        s3.create_bucket(Bucket=name, **extra)
        self.created.append(f"bucket {name}")

    def pipeline(
        self, *, account_id: str, role_arn: str | None, service_role_arn: str, spec: dict[str, Any]
    ) -> str:
        region = spec["region"]
        codepipeline = client("codepipeline", region=region, role_arn=role_arn)
        arn = f"arn:aws:codepipeline:{region}:{account_id}:{spec['name']}"
        tags = [{"key": k, "value": v} for k, v in spec["tags"].items()]
        try:
            codepipeline.get_pipeline(name=spec["name"])
        except ClientError as exc:
            if _code(exc) != "PipelineNotFoundException":
                raise
            bucket = f"gatehouse-demo-artifacts-{account_id}-{region}"
            self.bucket(client("s3", region=region, role_arn=role_arn), bucket, region)
            codepipeline.create_pipeline(
                pipeline={
                    "name": spec["name"],
                    "roleArn": service_role_arn,
                    "artifactStore": {"type": "S3", "location": bucket},
                    "stages": spec["stages"],
                    "version": 1,
                },
                tags=tags,
            )
            self.created.append(f"pipeline {arn}")
            return arn
        codepipeline.tag_resource(resourceArn=arn, tags=tags)
        return arn

    def iam_users(self, iam: Any, *, rotate_keys: bool) -> dict[str, dict[str, str | None]]:
        try:
            iam.get_group(GroupName=DEMO_IAM_GROUP)
        except ClientError as exc:
            if _code(exc) != "NoSuchEntity":
                raise
            iam.create_group(GroupName=DEMO_IAM_GROUP)
            self.created.append(f"group {DEMO_IAM_GROUP}")
        keys: dict[str, dict[str, str | None]] = {}
        for name in DEMO_IAM_USERS:
            try:
                iam.get_user(UserName=name)
            except ClientError as exc:
                if _code(exc) != "NoSuchEntity":
                    raise
                iam.create_user(UserName=name, Tags=[{"Key": "gatehouse:demo", "Value": "true"}])
                self.created.append(f"user {name}")
            iam.add_user_to_group(GroupName=DEMO_IAM_GROUP, UserName=name)  # a no-op when already a member
            existing = iam.list_access_keys(UserName=name)["AccessKeyMetadata"]
            if rotate_keys:
                for key in existing:
                    iam.delete_access_key(UserName=name, AccessKeyId=key["AccessKeyId"])
                existing = []
            if existing:
                # AWS shows a secret only when the key is made: a re-run can name the key, not its secret.
                keys[name] = {"access_key_id": existing[0]["AccessKeyId"], "secret_access_key": None}
            else:
                made = iam.create_access_key(UserName=name)["AccessKey"]
                self.created.append(f"access key of {name}")
                keys[name] = {
                    "access_key_id": made["AccessKeyId"],
                    "secret_access_key": made["SecretAccessKey"],
                }
        return keys

    def identity_center(self) -> dict[str, Any]:
        sso_admin = client("sso-admin", region=PRIMARY_REGION)
        instance = catalog.identity_center(region=PRIMARY_REGION)
        if instance is None:
            raise RuntimeError("the AWS endpoint has no Identity Center instance")
        store = client("identitystore", region=PRIMARY_REGION)
        store_id = instance.identity_store_id

        users = {u.user_name: u.user_id for u in catalog.list_ic_users(store_id, region=PRIMARY_REGION)}
        for user_name, given, family in IC_USERS:
            if user_name not in users:
                users[user_name] = store.create_user(
                    IdentityStoreId=store_id,
                    UserName=user_name,
                    DisplayName=f"{given} {family}",
                    Name={"GivenName": given, "FamilyName": family},
                    Emails=[{"Value": f"{user_name}@example.com", "Type": "work", "Primary": True}],
                )["UserId"]
                self.created.append(f"identity center user {user_name}")

        groups = {g.display_name: g.group_id for g in catalog.list_ic_groups(store_id, region=PRIMARY_REGION)}
        for group_name, description, members in IC_GROUPS:
            if group_name not in groups:
                groups[group_name] = store.create_group(
                    IdentityStoreId=store_id, DisplayName=group_name, Description=description
                )["GroupId"]
                self.created.append(f"identity center group {group_name}")
            current = {
                m["MemberId"]["UserId"]
                for page in store.get_paginator("list_group_memberships").paginate(
                    IdentityStoreId=store_id, GroupId=groups[group_name]
                )
                for m in page["GroupMemberships"]
            }
            for member in members:
                if users[member] not in current:
                    store.create_group_membership(
                        IdentityStoreId=store_id,
                        GroupId=groups[group_name],
                        MemberId={"UserId": users[member]},
                    )
                    self.created.append(f"membership {member} in {group_name}")

        permission_sets = {
            p.name: p.arn for p in catalog.list_permission_sets(instance.instance_arn, region=PRIMARY_REGION)
        }
        for name, description, duration, policy in PERMISSION_SETS:
            if name not in permission_sets:
                permission_sets[name] = sso_admin.create_permission_set(
                    InstanceArn=instance.instance_arn,
                    Name=name,
                    Description=description,
                    SessionDuration=duration,
                )["PermissionSet"]["PermissionSetArn"]
                self.created.append(f"permission set {name}")
            sso_admin.put_inline_policy_to_permission_set(
                InstanceArn=instance.instance_arn, PermissionSetArn=permission_sets[name], InlinePolicy=policy
            )
        return {
            "region": PRIMARY_REGION,
            "instance_arn": instance.instance_arn,
            "identity_store_id": store_id,
            "users": dict(sorted(users.items())),
            "groups": dict(sorted(groups.items())),
            "permission_sets": dict(sorted(permission_sets.items())),
        }


def world_fingerprint(world: dict[str, Any]) -> str:
    """A digest of the ids the portal keeps for a seeded world (accounts, IAM users, the Identity Center instance,
    its users, groups and permission sets): equal for two moto servers exactly when a database made against one
    is true of the other."""
    center = world["identity_center"]
    ids = {
        "accounts": sorted(account["id"] for account in world["accounts"]),
        "iam_users": sorted(world["iam_users"]),
        "identity_center": [center["instance_arn"], center["identity_store_id"]],
        "ic": sorted(
            [*center["users"].values(), *center["groups"].values(), *center["permission_sets"].values()]
        ),
    }
    return hashlib.sha256(json.dumps(ids, sort_keys=True).encode()).hexdigest()


def seed_demo_world(*, rotate_access_keys: bool = False) -> dict[str, Any]:
    """Create the demo AWS world on the moto server at ``AWS_ENDPOINT_URL``; return what exists.

    Refuses to run without an endpoint: the demo world must never be written into a real AWS account.
    ``rotate_access_keys`` replaces the IAM users' access keys so their secrets can be shown again.

    The summary: ``accounts`` (id, name, provisioning_role_arn — None for the management account, which the
    hub's own credentials reach), ``pipelines``, ``roles``, ``iam_users``, ``access_keys`` (per user: id and,
    only when created in this run, the secret), ``identity_center`` (instance, users, groups, permission sets)
    and ``created`` (what this run created; empty on a re-run).
    """
    if not endpoint_url():
        raise RuntimeError("AWS_ENDPOINT_URL is not set: refusing to seed the demo world into real AWS")
    seeder = _Seeder()
    management, production = seeder.organization()
    # The production account is reached like any member account: through the role Organizations created.
    production_seed_role = f"arn:aws:iam::{production}:role/{ORG_ACCESS_ROLE}"

    iam = client("iam")
    roles = [seeder.role(iam, spec) for spec in _roles_for_management(management)]
    service_role = next(arn for arn in roles if arn.endswith(f"/{SERVICE_ROLE}"))
    prod_iam = client("iam", role_arn=production_seed_role)
    prod_roles = [seeder.role(prod_iam, spec) for spec in _roles_for_member(management)]
    prod_service_role = next(arn for arn in prod_roles if arn.endswith(f"/{SERVICE_ROLE}"))
    prod_provisioner = next(arn for arn in prod_roles if arn.endswith(f"/{PROVISIONING_ROLE}"))
    seeder.boundary(iam, management)
    seeder.boundary(prod_iam, production)

    pipelines = [
        seeder.pipeline(account_id=management, role_arn=None, service_role_arn=service_role, spec=spec)
        for spec in _pipelines_for("management")
    ] + [
        seeder.pipeline(
            account_id=production,
            role_arn=production_seed_role,
            service_role_arn=prod_service_role,
            spec=spec,
        )
        for spec in _pipelines_for("production")
    ]

    access_keys = seeder.iam_users(iam, rotate_keys=rotate_access_keys)
    identity_center = seeder.identity_center()

    if seeder.created:
        logger.info("demo world: created %d objects", len(seeder.created))
    return {
        "endpoint_url": endpoint_url(),
        "accounts": [
            {"id": management, "name": "management", "provisioning_role_arn": None},
            {"id": production, "name": PRODUCTION_ACCOUNT_NAME, "provisioning_role_arn": prod_provisioner},
        ],
        "pipelines": sorted(pipelines),
        "roles": sorted(roles + prod_roles),
        "iam_users": [f"arn:aws:iam::{management}:user/{name}" for name in DEMO_IAM_USERS],
        "access_keys": access_keys,
        "identity_center": identity_center,
        "created": seeder.created,
    }
