"""One reading of ARNs for the whole portal: every partition AWS operates parses the same way in the ARN reader,
the policy builder, the catalog's ARN formats, the request form's trusted principal and the AWS adapters."""

from __future__ import annotations

import pytest

from accessrequests.aws.client import account_of
from accessrequests.core import arns
from accessrequests.policy.actions import resource_fits_action
from accessrequests.policy.documents import (
    PolicyError,
    arn_account,
    check_document,
    cross_account_trust_policy,
    pass_role_statement,
    pipeline_statements,
    render,
)

PARTITION_REGIONS = {
    "aws": "us-east-1",
    "aws-cn": "cn-northwest-1",
    "aws-us-gov": "us-gov-east-1",
    "aws-eusc": "eusc-de-east-1",
}
PARTITIONS = list(PARTITION_REGIONS)
ACCOUNT = "123456789012"
OTHER = "210987654321"


@pytest.mark.parametrize("partition", PARTITIONS)
def test_every_partitions_arns_are_read_by_the_one_reader(partition: str) -> None:
    role = f"arn:{partition}:iam::{ACCOUNT}:role/service-role/CodePipelineServiceRole"
    pipeline = f"arn:{partition}:codepipeline:{PARTITION_REGIONS[partition]}:{ACCOUNT}:my-pipeline/Deploy"

    parsed = arns.parse(role)
    assert parsed == arns.Arn(partition, "iam", "", ACCOUNT, "role/service-role/CodePipelineServiceRole")
    assert (parsed.iam_kind, parsed.name, str(parsed)) == ("role", "CodePipelineServiceRole", role)
    assert arns.parse(pipeline) == arns.Arn(
        partition, "codepipeline", PARTITION_REGIONS[partition], ACCOUNT, "my-pipeline/Deploy"
    )
    assert arns.account_of(role) == arn_account(role) == account_of(role) == ACCOUNT
    assert arns.is_role_arn(role) and arns.is_role_or_user_arn(f"arn:{partition}:iam::{ACCOUNT}:user/mary")
    assert arns.iam_arn(partition=partition, account=ACCOUNT, kind="role", name="service-role/X") == (
        f"arn:{partition}:iam::{ACCOUNT}:role/service-role/X"
    )


@pytest.mark.parametrize(
    "text",
    [
        f"arn:aws-moon:iam::{ACCOUNT}:role/X",
        f"arn:azure:iam::{ACCOUNT}:role/X",
        f"arn:aws:iam::{ACCOUNT}:role/X with spaces",
        "arn:aws:iam::12345:role/X",
        f"arn:aws:iam::{ACCOUNT}",
        "arn:aws:codepipeline:moon-1:123456789012:p",
        "",
        None,
    ],
)
def test_what_is_not_an_arn_of_a_partition_aws_operates_is_refused_everywhere(text: str | None) -> None:
    assert arns.parse(text) is None
    assert arns.account_of(text) == arn_account(text or "") == ""
    assert not arns.is_role_arn(text)
    with pytest.raises(ValueError):
        account_of(text or "")


@pytest.mark.parametrize("partition", PARTITIONS)
def test_the_policy_builder_takes_every_partitions_roles_pipelines_and_trusted_principals(
    partition: str,
) -> None:
    region = PARTITION_REGIONS[partition]
    role = f"arn:{partition}:iam::{ACCOUNT}:role/service-role/CodePipelineServiceRole"

    statements = pipeline_statements(
        partition=partition,
        region=region,
        account_id=ACCOUNT,
        pipelines=["my-pipeline"],
        actions=["codepipeline:UpdatePipeline"],
        pass_role_arns=[role],
    )

    assert check_document(render(statements)) == []
    assert statements[0]["Resource"] == [f"arn:{partition}:codepipeline:{region}:{ACCOUNT}:my-pipeline"]
    assert pass_role_statement(role_arn=role)["Resource"] == [role]
    assert resource_fits_action("iam:PassRole", role)
    trusted = f"arn:{partition}:iam::{OTHER}:role/Deployer"
    trust = cross_account_trust_policy(
        trusted_principal_arn=trusted, partition=partition, role_account_id=ACCOUNT
    )
    assert trust["Statement"][0]["Principal"] == {"AWS": trusted}


def test_a_role_cannot_trust_a_principal_of_another_partition() -> None:
    with pytest.raises(PolicyError, match="in the aws-cn partition; a role in aws can only trust"):
        cross_account_trust_policy(trusted_principal_arn=f"arn:aws-cn:iam::{OTHER}:role/Deployer")


@pytest.mark.django_db
@pytest.mark.parametrize("partition", PARTITIONS)
def test_the_request_form_takes_an_outside_principal_of_every_partition(partition: str) -> None:
    from accessrequests.views.forms import RequestForm
    from tests.conftest import make_user

    form = RequestForm(
        {"trusted_principal_arn": f"arn:{partition}:iam::{OTHER}:role/Deployer"}, user=make_user("u")
    )
    form.is_valid()
    assert "trusted_principal_arn" not in form.errors
    wrong = RequestForm(
        {"trusted_principal_arn": f"arn:aws-moon:iam::{OTHER}:role/Deployer"}, user=make_user("v")
    )
    wrong.is_valid()
    assert "trusted_principal_arn" in wrong.errors
