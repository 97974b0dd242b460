"""The scale world's AWS half: an organization of thousands of accounts on a moto server.

``manage.py seed_scale`` uses it (with ``scale_history`` for the database half) to measure the catalog sync, the
pickers and the busy pages at the size of a real organization (``bench/scale.py``):

- :func:`seed_aws` builds on a moto server (never real AWS: it refuses without ``AWS_ENDPOINT_URL``) an
  Organization with units and member accounts, each with its provisioning role, a CodePipeline service role and
  pipelines, plus Identity Center users, groups and permission sets. What exists is found by name and skipped,
  so a second run creates nothing; accounts are filled ``concurrency`` at a time (moto serves each HTTP request
  on its own thread).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from botocore.exceptions import ClientError

from accessrequests.aws.client import client, endpoint_url

HUB_ACCOUNT = "123456789012"
PROVISIONING_ROLE = "GatehouseProvisioner"
SERVICE_ROLE = "CodePipelineServiceRole"
TOP_UNITS = ("Workloads", "Platform", "Data", "Sandbox", "Security")
ENVIRONMENTS = ("prod", "staging", "dev")
SCALE_JUSTIFICATION = "scale world"

Log = Callable[[str], None]


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _trust(principal: dict[str, Any]) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": principal, "Action": "sts:AssumeRole"}],
        }
    )


def _pipeline(name: str, role_arn: str, bucket: str) -> dict[str, Any]:
    def action(action_name: str, category: str, provider: str, **extra: Any) -> dict[str, Any]:
        return {
            "name": action_name,
            "actionTypeId": {"category": category, "owner": "AWS", "provider": provider, "version": "1"},
            "runOrder": 1,
            "configuration": extra.pop("configuration", {}),
            **extra,
        }

    return {
        "name": name,
        "roleArn": role_arn,
        "artifactStore": {"type": "S3", "location": bucket},
        "stages": [
            {
                "name": "Source",
                "actions": [
                    action(
                        "Source",
                        "Source",
                        "S3",
                        configuration={"S3Bucket": bucket, "S3ObjectKey": "source.zip"},
                        outputArtifacts=[{"name": "src"}],
                    )
                ],
            },
            {"name": "Approve", "actions": [action("Approve", "Approval", "Manual")]},
        ],
        "version": 1,
    }


def _units(organizations: Any, root: str, per_top: int) -> list[str]:
    """Five top units with ``per_top`` team units under each (found by name, created when missing)."""

    def children(parent: str) -> dict[str, str]:
        return {
            unit["Name"]: unit["Id"]
            for page in organizations.get_paginator("list_organizational_units_for_parent").paginate(
                ParentId=parent
            )
            for unit in page["OrganizationalUnits"]
        }

    leaves = []
    top = children(root)
    for name in TOP_UNITS:
        if name not in top:
            top[name] = organizations.create_organizational_unit(ParentId=root, Name=name)[
                "OrganizationalUnit"
            ]["Id"]
        below = children(top[name])
        for i in range(per_top):
            team = f"{name.lower()}-team-{i:02d}"
            if team not in below:
                below[team] = organizations.create_organizational_unit(ParentId=top[name], Name=team)[
                    "OrganizationalUnit"
                ]["Id"]
            leaves.append(below[team])
    return leaves


def _in_account(service: str, account_id: str, region: str | None = None) -> Any:
    """A client whose calls moto files under ``account_id``, named in moto's ``x-moto-account-id`` header.

    Seeding only, and only against moto: it saves the AssumeRole per account and moto's search for the account
    of an assumed-role key (``moto.iam.models.get_account_id_from`` scans every account; at 3,000 accounts three
    probes gave 8.7, 4.4 and 21.1 ms per call with the scan against 6.4, 4.1 and 4.8 ms with the header, see
    BENCHMARKS.md). The portal itself always reaches an account the production way (STS AssumeRole, then the
    temporary key).
    """

    made = client(service, region=region)

    def name_account(request: Any, **_: Any) -> None:
        request.headers["x-moto-account-id"] = account_id

    made.meta.events.register("before-sign", name_account)
    return made


def _fill_account(account_id: str, pipelines: int, region: str) -> int:
    """The account's provisioning and service roles and its pipelines; returns how many AWS writes it made."""
    iam = _in_account("iam", account_id)
    writes = 0
    service_role = f"arn:aws:iam::{account_id}:role/{SERVICE_ROLE}"
    for name, trust in (
        (PROVISIONING_ROLE, {"AWS": f"arn:aws:iam::{HUB_ACCOUNT}:root"}),
        (SERVICE_ROLE, {"Service": "codepipeline.amazonaws.com"}),
    ):
        try:
            iam.create_role(RoleName=name, AssumeRolePolicyDocument=_trust(trust))
            writes += 1
        except ClientError as exc:
            if _code(exc) != "EntityAlreadyExists":
                raise
    codepipeline = _in_account("codepipeline", account_id, region)
    have = {
        item["name"]
        for page in codepipeline.get_paginator("list_pipelines").paginate()
        for item in page["pipelines"]
    }
    for i in range(pipelines):
        name = f"svc-{i:02d}-deploy"
        if name in have:
            continue
        codepipeline.create_pipeline(
            pipeline=_pipeline(name, service_role, f"artifacts-{account_id}"),
            tags=[{"key": "team", "value": f"team-{i % 7}"}],
        )
        writes += 1
    return writes


def seed_aws(
    *,
    accounts: int,
    pipelines_per_account: int,
    units_per_top: int = 6,
    ic_users: int = 300,
    ic_groups: int = 30,
    permission_sets: int = 10,
    concurrency: int = 8,
    region: str = "us-east-1",
    log: Log = print,
) -> dict[str, Any]:
    """Build (or complete) the scale organization on the moto server; returns counts and seconds per step."""
    if not endpoint_url():
        raise RuntimeError("the scale world is seeded only into a moto server: set AWS_ENDPOINT_URL")
    timings: dict[str, float] = {}
    organizations = client("organizations")
    started = time.perf_counter()
    try:
        organizations.describe_organization()
    except ClientError as exc:
        if _code(exc) != "AWSOrganizationsNotInUseException":
            raise
        organizations.create_organization(FeatureSet="ALL")
    root = organizations.list_roots()["Roots"][0]["Id"]
    leaves = _units(organizations, root, units_per_top)
    timings["units"] = time.perf_counter() - started

    started = time.perf_counter()
    existing = {
        item["Name"]: item["Id"]
        for page in organizations.get_paginator("list_accounts").paginate()
        for item in page["Accounts"]
    }
    wanted = [f"scale-{i:05d}-{ENVIRONMENTS[i % len(ENVIRONMENTS)]}" for i in range(accounts)]
    missing = [(i, name) for i, name in enumerate(wanted) if name not in existing]

    def environment(i: int) -> list[dict[str, str]]:
        # Gatehouse routes by the environment tag (it guesses nothing from names): prod, staging, dev in turn.
        return [{"Key": "environment", "Value": ENVIRONMENTS[i % len(ENVIRONMENTS)]}]

    def create(item: tuple[int, str]) -> tuple[str, str]:
        i, name = item
        account_id = organizations.create_account(
            AccountName=name, Email=f"{name}@example.com", Tags=environment(i)
        )["CreateAccountStatus"]["AccountId"]
        organizations.move_account(
            AccountId=account_id, SourceParentId=root, DestinationParentId=leaves[i % len(leaves)]
        )
        return name, account_id

    def tag(item: tuple[int, str]) -> None:
        # Accounts of a world seeded before accounts carried the tag get it now (tagging again changes nothing).
        i, name = item
        organizations.tag_resource(ResourceId=existing[name], Tags=environment(i))

    earlier = [(i, name) for i, name in enumerate(wanted) if name in existing]
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(tag, earlier))
        for name, account_id in pool.map(create, missing):
            existing[name] = account_id
    timings["accounts"] = time.perf_counter() - started
    log(
        f"organization: {len(leaves)} team units, {len(missing)} accounts created ({timings['accounts']:.1f}s)"
    )

    started = time.perf_counter()
    ids = [existing[name] for name in wanted]
    done = 0
    writes = 0
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for made in pool.map(lambda a: _fill_account(a, pipelines_per_account, region), ids):
            writes += made
            done += 1
            if done % 250 == 0:
                log(f"  {done} of {len(ids)} accounts filled ({time.perf_counter() - started:.0f}s)")
    timings["pipelines"] = time.perf_counter() - started
    log(f"accounts: {writes} roles and pipelines created ({timings['pipelines']:.1f}s)")

    started = time.perf_counter()
    ic = _identity_center(ic_users, ic_groups, permission_sets, region)
    timings["identity_center"] = time.perf_counter() - started
    return {
        "accounts": len(ids),
        "created_accounts": len(missing),
        "aws_writes": writes,
        **ic,
        "seconds": timings,
    }


def _identity_center(users: int, groups: int, permission_sets: int, region: str) -> dict[str, int]:
    sso = client("sso-admin", region=region)
    instances = sso.list_instances()["Instances"]
    if not instances:
        raise RuntimeError("moto has no Identity Center instance")
    instance, store = instances[0]["InstanceArn"], instances[0]["IdentityStoreId"]
    identitystore = client("identitystore", region=region)
    have_users = {
        u["UserName"]: u["UserId"]
        for page in identitystore.get_paginator("list_users").paginate(IdentityStoreId=store)
        for u in page["Users"]
    }
    for i in range(users):
        name = f"engineer{i:04d}"
        if name not in have_users:
            have_users[name] = identitystore.create_user(
                IdentityStoreId=store,
                UserName=name,
                DisplayName=f"Engineer {i:04d}",
                Name={"GivenName": "Engineer", "FamilyName": f"{i:04d}"},
                Emails=[{"Value": f"{name}@example.com", "Primary": True}],
            )["UserId"]
    have_groups = {
        g["DisplayName"]: g["GroupId"]
        for page in identitystore.get_paginator("list_groups").paginate(IdentityStoreId=store)
        for g in page["Groups"]
    }
    for i in range(groups):
        name = f"team-{i:02d}"
        if name not in have_groups:
            group_id = identitystore.create_group(IdentityStoreId=store, DisplayName=name)["GroupId"]
            for j in range(i, users, groups):
                identitystore.create_group_membership(
                    IdentityStoreId=store,
                    GroupId=group_id,
                    MemberId={"UserId": have_users[f"engineer{j:04d}"]},
                )
    have_sets = {
        sso.describe_permission_set(InstanceArn=instance, PermissionSetArn=arn)["PermissionSet"]["Name"]
        for page in sso.get_paginator("list_permission_sets").paginate(InstanceArn=instance)
        for arn in page["PermissionSets"]
    }
    for i in range(permission_sets):
        name = f"PipelineViewer{i:02d}"
        if name not in have_sets:
            arn = sso.create_permission_set(InstanceArn=instance, Name=name, SessionDuration="PT1H")[
                "PermissionSet"
            ]["PermissionSetArn"]
            sso.attach_managed_policy_to_permission_set(
                InstanceArn=instance,
                PermissionSetArn=arn,
                ManagedPolicyArn="arn:aws:iam::aws:policy/AWSCodePipeline_ReadOnlyAccess",
            )
    return {"ic_users": users, "ic_groups": groups, "permission_sets": permission_sets}
