"""The organization docs/deploy.md is followed in, on a moto server, and the guide's commands run as written.

- ``Organization``: a management account (moto's default 123456789012) with an organization, a ``Platform`` unit
  holding the Gatehouse account and a ``Workloads`` unit holding one workload account; the workload account has
  the troubleshooting guide's pipeline, service roles and IAM users, plus a break-glass user tagged
  ``gatehouse:protected``; Identity Center (in the management account) has users, groups and permission sets.
- ``run_guide``: every ``sh`` block of docs/deploy.md (not those marked ``not-on-moto``) in order, in one bash
  session, from the repository's root, with the AWS CLI of ``.venv-deploy`` and the AWS profiles the guide names.
- ``apply_bucket_template``: what moto's CloudFormation leaves out of ``AWS::S3::Bucket`` (Object Lock, versioning,
  public access block) and ``AWS::S3::BucketPolicy`` (not implemented), applied through the S3 API from the
  template's own properties, so the bucket is the template's bucket.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import yaml

from accessrequests.devworld.demo_world import (
    DEMO_IAM_GROUP,
    PERMISSION_SETS,
    PIPELINE_SERVICE_POLICY,
    SERVICE_ROLE,
    SERVICE_ROLE_PATH,
)
from tests.conftest import ROOT

GUIDE = ROOT / "docs" / "deploy.md"
TEMPLATES = ROOT / "deploy" / "cloudformation"
DEPLOY_BIN = ROOT / ".venv-deploy" / "bin"
REGION = "us-east-1"
MANAGEMENT = "123456789012"
ORG_ACCESS_ROLE = "OrganizationAccountAccessRole"
PROTECTED_USER = "breakglass-admin"
PROTECTED_PERMISSION_SET = "AdministratorAccess"
LAUNCHER = "gatehouse-launcher"
_BLOCK = re.compile(r"^```sh([^\n]*)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def guide_blocks(path: Path = GUIDE) -> list[str]:
    """The ``sh`` blocks of the guide that run on moto, in order."""
    return [body for info, body in _BLOCK.findall(path.read_text()) if "not-on-moto" not in info]


def skipped_blocks(path: Path = GUIDE) -> list[str]:
    return [body for info, body in _BLOCK.findall(path.read_text()) if "not-on-moto" in info]


def cfn_yaml(text: str) -> Any:
    """Load a CloudFormation template (YAML with !Ref, !Sub, ... short forms as their long forms)."""

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader: yaml.Loader, suffix: str, node: yaml.Node) -> dict[str, Any]:
        name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if suffix == "GetAtt":
                value = str(value).split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
        return {name: value}

    Loader.add_multi_constructor("!", construct)
    return yaml.load(text, Loader=Loader)  # noqa: S506 - SafeLoader with CloudFormation's tags


def template(name: str) -> dict[str, Any]:
    return cfn_yaml((TEMPLATES / name).read_text())


def client(service: str, endpoint: str, **credentials: str) -> Any:
    return boto3.client(service, region_name=REGION, endpoint_url=endpoint, **credentials)


def session_credentials(answer: dict[str, Any]) -> dict[str, str]:
    creds = answer["Credentials"]
    return {
        "aws_access_key_id": creds["AccessKeyId"],
        "aws_secret_access_key": creds["SecretAccessKey"],
        "aws_session_token": creds["SessionToken"],
    }


def admin_in(endpoint: str, account: str) -> dict[str, str]:
    """Administrator credentials in a member account, as the organization's administrators have them."""
    sts = client("sts", endpoint)
    role = f"arn:aws:iam::{account}:role/{ORG_ACCESS_ROLE}"
    return session_credentials(sts.assume_role(RoleArn=role, RoleSessionName="platform-admin"))


@dataclass
class Organization:
    endpoint: str
    organization_id: str
    gatehouse: str
    workload: str
    platform_ou: str
    workloads_ou: str

    @property
    def launcher_arn(self) -> str:
        return f"arn:aws:iam::{self.gatehouse}:user/{LAUNCHER}"


def organization(endpoint: str) -> Organization:
    """The organization before the guide: accounts, units, and the workload the first grants are about."""
    org = client("organizations", endpoint)
    organization_id = org.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    root = org.list_roots()["Roots"][0]["Id"]
    units = {
        name: org.create_organizational_unit(ParentId=root, Name=name)["OrganizationalUnit"]["Id"]
        for name in ("Platform", "Workloads")
    }
    accounts = {}
    for name, unit in (("gatehouse", "Platform"), ("workload", "Workloads")):
        status = org.create_account(AccountName=name, Email=f"aws-{name}@example.com")["CreateAccountStatus"]
        accounts[name] = status["AccountId"]
        org.move_account(AccountId=status["AccountId"], SourceParentId=root, DestinationParentId=units[unit])
    made = Organization(
        endpoint=endpoint,
        organization_id=organization_id,
        gatehouse=accounts["gatehouse"],
        workload=accounts["workload"],
        platform_ou=units["Platform"],
        workloads_ou=units["Workloads"],
    )
    _launcher(made)
    _workload(made)
    _identity_center(endpoint)
    return made


def _launcher(org: Organization) -> None:
    """What runs Gatehouse in the test, in the Gatehouse account: may only assume the hub role."""
    iam = client("iam", org.endpoint, **admin_in(org.endpoint, org.gatehouse))
    iam.create_user(UserName=LAUNCHER)
    hub = f"arn:aws:iam::{org.gatehouse}:role/GatehouseHub"
    document = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "BecomeTheHub", "Effect": "Allow", "Action": "sts:AssumeRole", "Resource": hub}
        ],
    }
    iam.put_user_policy(UserName=LAUNCHER, PolicyName="launch-gatehouse", PolicyDocument=json.dumps(document))


def _trust(service: str) -> str:
    statement = {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def _workload(org: Organization) -> None:
    admin = admin_in(org.endpoint, org.workload)
    iam = client("iam", org.endpoint, **admin)
    service_role = iam.create_role(
        RoleName=SERVICE_ROLE,
        Path=SERVICE_ROLE_PATH,
        AssumeRolePolicyDocument=_trust("codepipeline.amazonaws.com"),
    )["Role"]["Arn"]
    iam.put_role_policy(RoleName=SERVICE_ROLE, PolicyName="demo", PolicyDocument=PIPELINE_SERVICE_POLICY)
    iam.create_group(GroupName=DEMO_IAM_GROUP)
    for name in ("mateojackson", "marymajor"):
        iam.create_user(UserName=name)
        iam.add_user_to_group(GroupName=DEMO_IAM_GROUP, UserName=name)
    iam.create_user(UserName=PROTECTED_USER, Tags=[{"Key": "gatehouse:protected", "Value": "true"}])
    # A managed policy of the account's own on a requester, as most people have: when a grant ends, Gatehouse reads
    # it too (GetPolicy, GetPolicyVersion) to confirm that nothing still allows what ended.
    team_policy = iam.create_policy(
        PolicyName="team-read-only",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "s3:ListAllMyBuckets", "Resource": "*"}],
            }
        ),
    )["Policy"]["Arn"]
    iam.attach_user_policy(UserName="mateojackson", PolicyArn=team_policy)
    s3 = client("s3", org.endpoint, **admin)
    bucket = f"artifacts-{org.workload}"
    s3.create_bucket(Bucket=bucket)
    stage = {"type": "S3", "location": bucket}
    client("codepipeline", org.endpoint, **admin).create_pipeline(
        pipeline={
            "name": "my-pipeline",
            "roleArn": service_role,
            "artifactStore": stage,
            "stages": [
                {
                    "name": "Source",
                    "actions": [
                        {
                            "name": "Source",
                            "actionTypeId": {
                                "category": "Source",
                                "owner": "AWS",
                                "provider": "S3",
                                "version": "1",
                            },
                            "configuration": {"S3Bucket": bucket, "S3ObjectKey": "source.zip"},
                            "outputArtifacts": [{"name": "src"}],
                        }
                    ],
                },
                {
                    "name": "Approve",
                    "actions": [
                        {
                            "name": "Approve",
                            "actionTypeId": {
                                "category": "Approval",
                                "owner": "AWS",
                                "provider": "Manual",
                                "version": "1",
                            },
                        }
                    ],
                },
            ],
            "version": 1,
        }
    )


def _identity_center(endpoint: str) -> None:
    sso = client("sso-admin", endpoint)
    instance = sso.list_instances()["Instances"][0]
    store = client("identitystore", endpoint)
    paulo = store.create_user(
        IdentityStoreId=instance["IdentityStoreId"],
        UserName="paulo.santos",
        DisplayName="Paulo Santos",
        Name={"GivenName": "Paulo", "FamilyName": "Santos"},
        Emails=[{"Value": "paulo.santos@example.com", "Type": "work", "Primary": True}],
    )["UserId"]
    group = store.create_group(IdentityStoreId=instance["IdentityStoreId"], DisplayName="pipeline-operators")
    store.create_group_membership(
        IdentityStoreId=instance["IdentityStoreId"], GroupId=group["GroupId"], MemberId={"UserId": paulo}
    )
    # An administrator permission set Gatehouse must never assign (docs/deploy.md, step 4).
    sso.create_permission_set(
        InstanceArn=instance["InstanceArn"],
        Name=PROTECTED_PERMISSION_SET,
        Description="Full administrator access",
        SessionDuration="PT1H",
        Tags=[{"Key": "gatehouse:protected", "Value": "true"}],
    )
    for name, description, duration, policy in PERMISSION_SETS:
        arn = sso.create_permission_set(
            InstanceArn=instance["InstanceArn"], Name=name, Description=description, SessionDuration=duration
        )["PermissionSet"]["PermissionSetArn"]
        sso.put_inline_policy_to_permission_set(
            InstanceArn=instance["InstanceArn"], PermissionSetArn=arn, InlinePolicy=policy
        )


def cli_environment(org: Organization, home: Path) -> dict[str, str]:
    """The AWS CLI profiles the guide names (``management``, ``gatehouse``), pointed at moto."""
    home.mkdir(parents=True, exist_ok=True)
    (home / "credentials").write_text(
        "[management]\naws_access_key_id = testing\naws_secret_access_key = testing\n"
    )
    (home / "config").write_text(
        f"[profile management]\nregion = {REGION}\n"
        f"[profile gatehouse]\nregion = {REGION}\nsource_profile = management\n"
        f"role_arn = arn:aws:iam::{org.gatehouse}:role/{ORG_ACCESS_ROLE}\n"
    )
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") and key not in {"VIRTUAL_ENV", "PYTHONPATH"}
    }
    env.update(
        {
            "PATH": f"{DEPLOY_BIN}:{env.get('PATH', '/usr/bin:/bin')}",
            "AWS_CONFIG_FILE": str(home / "config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(home / "credentials"),
            "AWS_ENDPOINT_URL": org.endpoint,
            "AWS_PAGER": "",
            "TARGET_OUS": org.workloads_ou,
            "HUB_TRUSTED_PRINCIPAL": org.launcher_arn,
        }
    )
    return env


def run_guide(env: dict[str, str], workdir: Path) -> subprocess.CompletedProcess[str]:
    """Every ``sh`` block of the guide in one bash session, from the repository's root; ``gatehouse.env`` (step 7)
    is written into ``workdir``."""
    script = "\n".join(guide_blocks()).replace("> gatehouse.env", f"> {workdir / 'gatehouse.env'}")
    return subprocess.run(
        ["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )


def settings_from(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {key.strip(): value.strip() for key, value in pairs}


def _resolve(value: Any, names: dict[str, str]) -> Any:
    """Ref and Sub over a template value, with the names the stack was given (enough for the bucket's)."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        return names[value["Ref"]]
    if isinstance(value, dict) and set(value) == {"Fn::Sub"}:
        return re.sub(r"\$\{([^}]+)\}", lambda m: names[m.group(1)], value["Fn::Sub"])
    if isinstance(value, dict):
        return {k: _resolve(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, names) for v in value]
    return value


def apply_bucket_template(
    endpoint: str, credentials: dict[str, str], *, bucket: str, hub_role_arn: str
) -> None:
    """What moto's CloudFormation does not apply of audit-bucket.yaml, applied through the S3 API."""
    resources = template("audit-bucket.yaml")["Resources"]
    props = resources["AuditBucket"]["Properties"]
    names = {
        "AuditBucket": bucket,
        "BucketName": bucket,
        "HubRoleArn": hub_role_arn,
        "AuditPrefix": "gatehouse-audit",
        "AWS::Partition": "aws",
        "RetentionDays": "365",
    }
    s3 = client("s3", endpoint, **credentials)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration=props["VersioningConfiguration"])
    rule = _resolve(props["ObjectLockConfiguration"]["Rule"], names)
    rule["DefaultRetention"]["Days"] = int(rule["DefaultRetention"]["Days"])
    s3.put_object_lock_configuration(
        Bucket=bucket, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
    )
    s3.put_public_access_block(
        Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
    )
    policy = _resolve(resources["AuditBucketPolicy"]["Properties"]["PolicyDocument"], names)
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(policy))
