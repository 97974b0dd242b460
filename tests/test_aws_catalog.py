"""The AWS layer against a real moto server: the demo world, the catalog reads and the client factory."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from accessrequests.aws import catalog
from accessrequests.aws import client as client_module
from accessrequests.aws.catalog import trusts_service
from accessrequests.aws.client import Ping, assumed_credentials, client, error_details, is_access_denied, ping
from accessrequests.aws.motoserver import enable_iam_auth, free_port
from accessrequests.devworld.demo_world import seed_demo_world

MANAGEMENT = "123456789012"


def _without_secrets(summary: dict[str, Any]) -> dict[str, Any]:
    summary = copy.deepcopy(summary)
    for key in summary["access_keys"].values():
        key["secret_access_key"] = None
    summary["created"] = []
    return summary


def _production(summary: dict[str, Any]) -> dict[str, Any]:
    return next(account for account in summary["accounts"] if account["name"] == "production")


def _roles_by_name(account_id: str, role_arn: str | None = None) -> dict[str, catalog.Role]:
    return {role.name: role for role in catalog.list_roles(account_id=account_id, role_arn=role_arn)}


# --- demo world ---


@pytest.mark.moto
def test_seeding_twice_creates_nothing_new(aws):
    first = seed_demo_world()
    second = seed_demo_world()

    assert first["created"]
    assert second["created"] == []
    assert _without_secrets(second) == _without_secrets(first)
    # AWS reveals a secret access key once: the first run has it, the re-run only names the same key.
    assert all(key["secret_access_key"] for key in first["access_keys"].values())
    assert all(key["secret_access_key"] is None for key in second["access_keys"].values())
    assert set(first["access_keys"]) == {"mateojackson", "marymajor"}


@pytest.mark.moto
def test_rotating_access_keys_shows_new_secrets_and_keeps_one_key(demo_world):
    rotated = seed_demo_world(rotate_access_keys=True)

    for user, key in rotated["access_keys"].items():
        assert key["secret_access_key"]
        assert key["access_key_id"] != demo_world["access_keys"][user]["access_key_id"]
        keys = client("iam").list_access_keys(UserName=user)["AccessKeyMetadata"]
        assert [k["AccessKeyId"] for k in keys] == [key["access_key_id"]]


@pytest.mark.moto
def test_it_refuses_to_seed_without_an_endpoint(aws, settings, monkeypatch):
    settings.AWS_ENDPOINT_URL = None
    monkeypatch.delenv("AWS_ENDPOINT_URL")

    with pytest.raises(RuntimeError, match="real AWS"):
        seed_demo_world()


# --- catalog reads ---


@pytest.mark.moto
def test_it_lists_the_organization_accounts(demo_world):
    accounts = {account.id: account for account in catalog.list_accounts()}

    production = _production(demo_world)
    assert set(accounts) == {MANAGEMENT, production["id"]}
    assert accounts[production["id"]].name == "production"


@pytest.mark.moto
def test_it_falls_back_to_its_own_account_without_organizations(aws):
    assert catalog.list_accounts() == [catalog.Account(id=MANAGEMENT, name=MANAGEMENT)]


@pytest.mark.moto
def test_it_lists_pipelines_in_both_regions_with_stages_role_and_tags(demo_world):
    us = {p.name: p for p in catalog.list_pipelines(account_id=MANAGEMENT, region="us-east-1")}
    eu = {p.name: p for p in catalog.list_pipelines(account_id=MANAGEMENT, region="eu-west-1")}

    assert set(us) == {"my-pipeline", "web-frontend", "data-etl"}
    assert set(eu) == {"web-frontend-eu"}
    pipeline = us["my-pipeline"]
    assert pipeline.arn == f"arn:aws:codepipeline:us-east-1:{MANAGEMENT}:my-pipeline"
    assert pipeline.role_arn == f"arn:aws:iam::{MANAGEMENT}:role/service-role/CodePipelineServiceRole"
    assert [stage.name for stage in pipeline.stages] == ["Source", "Build", "Approve", "Deploy"]
    assert pipeline.stages[2].actions == (catalog.PipelineAction(name="ManualApproval", category="Approval"),)
    assert pipeline.tags == {"team": "platform", "environment": "staging"}
    assert eu["web-frontend-eu"].arn.startswith("arn:aws:codepipeline:eu-west-1:")


@pytest.mark.moto
def test_it_reads_the_second_account_through_its_provisioning_role(demo_world):
    production = _production(demo_world)

    pipelines = catalog.list_pipelines(
        account_id=production["id"], region="us-east-1", role_arn=production["provisioning_role_arn"]
    )
    # account_id alone assumes the conventional provisioning role there.
    same = catalog.list_pipelines(account_id=production["id"], region="us-east-1")

    assert [p.arn for p in pipelines] == [
        f"arn:aws:codepipeline:us-east-1:{production['id']}:payments-release"
    ]
    assert same == pipelines
    # The management account's pipelines are not visible from the production account.
    assert "my-pipeline" not in {p.name for p in pipelines}


@pytest.mark.moto
def test_it_tells_which_roles_trust_codepipeline(demo_world):
    roles = _roles_by_name(MANAGEMENT)

    assert roles["CodePipelineServiceRole"].trusts_codepipeline
    assert roles["CodePipelineServiceRole"].path == "/service-role/"
    assert roles["CodePipelineDeployRole"].trusts_codepipeline  # list of services + condition
    assert not roles["LambdaExecutionRole"].trusts_codepipeline
    assert not roles["LegacyPipelineRole"].trusts_codepipeline  # explicit Deny
    production = _production(demo_world)
    production_roles = _roles_by_name(production["id"], production["provisioning_role_arn"])
    assert production_roles["CodePipelineServiceRole"].trusts_codepipeline
    assert not production_roles["GatehouseProvisioner"].trusts_codepipeline


@pytest.mark.moto
def test_it_reads_the_sensitive_tag(demo_world):
    roles = _roles_by_name(MANAGEMENT)

    assert roles["CodePipelineBreakGlassRole"].trusts_codepipeline
    assert roles["CodePipelineBreakGlassRole"].sensitive
    assert roles["CodePipelineBreakGlassRole"].tags == {"gatehouse:sensitive": "true"}
    assert not roles["CodePipelineServiceRole"].sensitive


@pytest.mark.moto
def test_it_lists_identity_center_permission_sets_users_and_groups(demo_world):
    instance = catalog.identity_center()

    assert instance is not None
    assert instance.instance_arn == demo_world["identity_center"]["instance_arn"]
    permission_sets = {p.name: p for p in catalog.list_permission_sets(instance.instance_arn)}
    assert set(permission_sets) == {"CodePipelineReadOnly", "CodePipelineOperator"}
    assert permission_sets["CodePipelineOperator"].session_duration == "PT4H"
    users = catalog.list_ic_users(instance.identity_store_id)
    assert [(u.user_name, u.display_name, u.email) for u in users] == [
        ("akua.mansa", "Akua Mansa", "akua.mansa@example.com"),
        ("paulo.santos", "Paulo Santos", "paulo.santos@example.com"),
    ]
    groups = catalog.list_ic_groups(instance.identity_store_id)
    assert [g.display_name for g in groups] == ["pipeline-operators", "release-managers"]


# --- trust policies (pure) ---


def _doc(*statements: dict[str, Any]) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": list(statements)}


ALLOW_CODEPIPELINE = {
    "Effect": "Allow",
    "Principal": {"Service": "codepipeline.amazonaws.com"},
    "Action": "sts:AssumeRole",
}
DENY_CODEPIPELINE = {**ALLOW_CODEPIPELINE, "Effect": "Deny"}


@pytest.mark.parametrize(
    ("document", "trusted"),
    [
        pytest.param(_doc(ALLOW_CODEPIPELINE), True, id="service as a string"),
        pytest.param(
            _doc(
                {
                    **ALLOW_CODEPIPELINE,
                    "Principal": {"Service": ["ec2.amazonaws.com", "codepipeline.amazonaws.com"]},
                }
            ),
            True,
            id="service in a list",
        ),
        pytest.param(
            _doc({**ALLOW_CODEPIPELINE, "Action": ["sts:TagSession", "sts:AssumeRole"]}), True, id="actions"
        ),
        pytest.param(_doc({**ALLOW_CODEPIPELINE, "Action": "sts:*"}), True, id="action wildcard"),
        pytest.param(
            _doc({**ALLOW_CODEPIPELINE, "Condition": {"StringEquals": {"aws:SourceAccount": MANAGEMENT}}}),
            True,
            id="confused-deputy condition",
        ),
        pytest.param(json.dumps(_doc(ALLOW_CODEPIPELINE)), True, id="JSON text"),
        pytest.param("%7B%22Statement%22%3A%5B%5D%7D", False, id="URL-encoded, empty"),
        pytest.param({"Statement": ALLOW_CODEPIPELINE}, True, id="a single statement object"),
        pytest.param(
            _doc({**ALLOW_CODEPIPELINE, "Principal": {"Service": "lambda.amazonaws.com"}}), False, id="other"
        ),
        pytest.param(_doc({**ALLOW_CODEPIPELINE, "Principal": "*"}), False, id="everyone is not the service"),
        pytest.param(_doc({**ALLOW_CODEPIPELINE, "Action": "sts:TagSession"}), False, id="not AssumeRole"),
        pytest.param(_doc(ALLOW_CODEPIPELINE, DENY_CODEPIPELINE), False, id="explicit deny wins"),
        pytest.param(
            _doc(ALLOW_CODEPIPELINE, {**DENY_CODEPIPELINE, "Principal": "*"}), False, id="deny everyone"
        ),
        pytest.param(
            _doc(
                ALLOW_CODEPIPELINE,
                {**DENY_CODEPIPELINE, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            ),
            True,
            id="conditional deny",
        ),
        pytest.param(
            _doc(
                ALLOW_CODEPIPELINE,
                {
                    "Effect": "Deny",
                    "NotPrincipal": {"Service": "codebuild.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                },
            ),
            False,
            id="deny all but another service",
        ),
        pytest.param("not json", False, id="unreadable"),
    ],
)
def test_trust_policy_verdicts(document, trusted):
    assert trusts_service(document) is trusted


# --- client factory ---


@pytest.mark.moto
def test_the_client_factory_points_at_the_endpoint_with_adaptive_retries(aws):
    codepipeline = client("codepipeline", region="eu-west-1")

    assert codepipeline.meta.endpoint_url == aws
    assert codepipeline.meta.region_name == "eu-west-1"
    assert codepipeline.meta.config.retries["mode"] == "adaptive"
    assert codepipeline.meta.config.retries["total_max_attempts"] > 3
    assert "gatehouse" in codepipeline.meta.config.user_agent_extra
    assert codepipeline.list_pipelines()["pipelines"] == []


@pytest.mark.moto
def test_the_client_factory_assumes_roles_once_per_role(aws):
    role_arn = "arn:aws:iam::210987654321:role/GatehouseProvisioner"

    identity = client("sts", role_arn=role_arn).get_caller_identity()

    assert identity["Account"] == "210987654321"
    assert (
        identity["Arn"] == "arn:aws:sts::210987654321:assumed-role/GatehouseProvisioner/gatehouse-provisioner"
    )
    assert assumed_credentials(role_arn) is assumed_credentials(role_arn)  # cached, not re-assumed
    with pytest.raises(ValueError, match="not in account"):
        client("iam", role_arn=role_arn, account_id=MANAGEMENT)


@pytest.mark.moto
def test_credentials_are_renewed_shortly_before_they_expire(aws, monkeypatch):
    role_arn = "arn:aws:iam::210987654321:role/GatehouseProvisioner"
    first = assumed_credentials(role_arn)
    assert assumed_credentials(role_arn) is first
    # Pretend the clock reached the refresh margin: 4 minutes of validity left.
    clock = SimpleNamespace(time=lambda: first.expires_at - client_module.CREDENTIALS_REFRESH_MARGIN + 60)
    monkeypatch.setattr(client_module, "time", clock)

    renewed = assumed_credentials(role_arn)

    assert renewed.access_key_id != first.access_key_id
    assert renewed.expires_at >= first.expires_at


@pytest.mark.moto
def test_ping_reports_the_account_and_a_dead_endpoint(aws, settings, monkeypatch):
    assert ping() == Ping(ok=True, endpoint=aws, account_id=MANAGEMENT)

    dead = f"http://127.0.0.1:{free_port()}"
    settings.AWS_ENDPOINT_URL = dead
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    answer = ping(timeout=1)

    assert not answer.ok
    assert answer.endpoint == dead
    assert "EndpointConnectionError" in answer.error


# --- IAM authorization on the moto server ---


def _as(summary: dict[str, Any], user: str, endpoint: str) -> Any:
    key = summary["access_keys"][user]
    return boto3.client(
        "codepipeline",
        region_name="us-east-1",
        endpoint_url=endpoint,
        aws_access_key_id=key["access_key_id"],
        aws_secret_access_key=key["secret_access_key"],
        config=Config(retries={"mode": "standard", "max_attempts": 1}),
    )


@pytest.mark.moto
def test_moto_enforces_iam_for_the_demo_users(aws, demo_world):
    # An admin made before authorization is on: with it on, the dummy keys are refused too.
    iam = client("iam")
    iam.create_user(UserName="test-admin")
    iam.put_user_policy(
        UserName="test-admin",
        PolicyName="admin",
        PolicyDocument=json.dumps(_doc({"Effect": "Allow", "Action": "*", "Resource": "*"})),
    )
    made = iam.create_access_key(UserName="test-admin")["AccessKey"]
    admin = boto3.client(
        "iam",
        region_name="us-east-1",
        endpoint_url=aws,
        aws_access_key_id=made["AccessKeyId"],
        aws_secret_access_key=made["SecretAccessKey"],
    )
    mateo = _as(demo_world, "mateojackson", aws)
    enable_iam_auth(aws)

    with pytest.raises(ClientError) as refused:
        mateo.list_pipelines()
    assert is_access_denied(refused.value)
    code, message = error_details(refused.value)
    assert code == "AccessDenied"
    assert message == (
        f"User: arn:aws:iam::{MANAGEMENT}:user/mateojackson is not authorized to perform: codepipeline:ListPipelines"
    )

    # moto checks CodePipeline calls against Resource "*" only, so the grant names "*" (as AWS requires for
    # ListPipelines anyway).
    admin.put_user_policy(
        UserName="mateojackson",
        PolicyName="gatehouse",
        PolicyDocument=json.dumps(
            _doc({"Effect": "Allow", "Action": "codepipeline:ListPipelines", "Resource": "*"})
        ),
    )
    assert {p["name"] for p in mateo.list_pipelines()["pipelines"]} >= {"my-pipeline"}

    admin.delete_user_policy(UserName="mateojackson", PolicyName="gatehouse")
    with pytest.raises(ClientError) as refused_again:
        mateo.list_pipelines()
    assert is_access_denied(refused_again.value)
