"""Tests for accessrequests.intake.parse: parsing the AccessDenied message an engineer pastes.

Pure functions, no database (tests/test_intake_e2e.py takes them through the web form and the API on moto). The
message shapes below are the ones AWS, the CLI, boto3 and the documentation
actually produce; the two CodePipeline guide messages are copied verbatim from "Troubleshooting AWS CodePipeline
identity and access" (docs.aws.amazon.com/codepipeline/latest/userguide/security_iam_troubleshoot.html).
"""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accessrequests.intake.parse import (
    EXPECTED,
    MAX_MESSAGE_CHARS,
    Denial,
    IntakeResult,
    ResourceRef,
    parse_access_denied,
    parse_pipeline_resource,
)
from accessrequests.policy.actions import canonical_action

ACCOUNT = "123456789012"


@pytest.fixture(autouse=True, scope="module")
def _action_catalog_loaded() -> None:
    """The parser spells actions as the IAM action catalog does; the catalog loads once per process (about 0.4 s),
    which is not the parsing the 100 ms budgets below measure."""
    canonical_action("codepipeline:GetPipeline")


PIPELINE_ARN = "arn:aws:codepipeline:us-east-1:123456789012:my-pipeline"
SCP_ARN = "arn:aws:organizations::999988887777:policy/o-a1b2c3d4e5/service_control_policy/p-abcd1234"

# Verbatim from the CodePipeline guide.
GUIDE_MATEOJACKSON = (
    "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
    "codepipeline:GetPipeline on resource: my-pipeline"
)
# Verbatim from the guide as the rendered page gives it: the ARN is broken across lines.
GUIDE_MARYMAJOR_BROKEN = (
    "User:\narn:aws\n:iam::123456789012\n:user/marymajor\nis not authorized to perform: iam:PassRole"
)
GUIDE_MARYMAJOR = "User: arn:aws:iam::123456789012:user/marymajor is not authorized to perform: iam:PassRole"
# The CodeDeploy guide breaks the same message after the slash instead.
CODEDEPLOY_MARYMAJOR = (
    "User: arn:aws:iam::123456789012:user/\nmarymajor\nis not authorized to perform: iam:PassRole"
)

MARY = {"principal_arn": "arn:aws:iam::123456789012:user/marymajor", "principal_type": "user"}
MARY_PASSROLE = {**MARY, "principal_name": "marymajor", "action": "iam:PassRole", "resource": None}
DEPLOYER = {
    "principal_arn": "arn:aws:iam::123456789012:role/Deployer",
    "principal_type": "role",
    "principal_name": "Deployer",
    "session_name": "ci-run-42",
    "original_principal": "arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42",
}

MESSAGES = [
    pytest.param(
        GUIDE_MATEOJACKSON,
        {
            "principal_arn": "arn:aws:iam::123456789012:user/mateojackson",
            "principal_type": "user",
            "principal_name": "mateojackson",
            "account_id": ACCOUNT,
            "partition": "aws",
            "session_name": None,
            "action": "codepipeline:GetPipeline",
            "service": "codepipeline",
            "resource": "my-pipeline",
            "explicit_deny": False,
            "policy_type": None,
            "operation": None,
            "error_code": None,
        },
        id="guide-mateojackson",
    ),
    pytest.param(GUIDE_MARYMAJOR_BROKEN, MARY_PASSROLE, id="guide-marymajor-line-broken"),
    pytest.param(GUIDE_MARYMAJOR, MARY_PASSROLE, id="guide-marymajor-one-line"),
    pytest.param(
        "User: arn:aws\n:iam::123456789012\n:user/marymajor is not authorized to perform: iam:PassRole",
        {**MARY_PASSROLE, "original_principal": "arn:aws:iam::123456789012:user/marymajor"},
        id="guide-marymajor-broken-inline",
    ),
    pytest.param(CODEDEPLOY_MARYMAJOR, MARY_PASSROLE, id="codedeploy-guide-broken-after-slash"),
    pytest.param(
        "An error occurred (AccessDeniedException) when calling the GetPipeline operation: User: "
        f"arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: codepipeline:GetPipeline "
        f"on resource: {PIPELINE_ARN} because no identity-based policy allows the codepipeline:GetPipeline "
        "action",
        {
            "resource": PIPELINE_ARN,
            "operation": "GetPipeline",
            "error_code": "AccessDeniedException",
            "policy_type": "identity-based",
            "explicit_deny": False,
        },
        id="cli-wrapper-implicit-identity-deny",
    ),
    pytest.param(
        "botocore.exceptions.ClientError: An error occurred (AccessDenied) when calling the "
        "StartPipelineExecution operation: User: arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42 "
        f"is not authorized to perform: codepipeline:StartPipelineExecution on resource: {PIPELINE_ARN}",
        {
            **DEPLOYER,
            "action": "codepipeline:StartPipelineExecution",
            "operation": "StartPipelineExecution",
            "error_code": "AccessDenied",
        },
        id="boto3-client-error-assumed-role",
    ),
    pytest.param(
        "User: arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Developer_0a1b2c3d4e5f6789/"
        "ana.silva@example.com is not authorized to perform: codepipeline:ListPipelines because no "
        "identity-based policy allows the codepipeline:ListPipelines action",
        {
            "principal_arn": "arn:aws:iam::123456789012:role/AWSReservedSSO_Developer_0a1b2c3d4e5f6789",
            "principal_name": "AWSReservedSSO_Developer_0a1b2c3d4e5f6789",
            "session_name": "ana.silva@example.com",
            "resource": None,
            "policy_type": "identity-based",
        },
        id="identity-center-role-no-resource",
    ),
    pytest.param(
        "User: arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42 is not authorized to perform: "
        f"codepipeline:DeletePipeline on resource: {PIPELINE_ARN} with an explicit deny in a service control "
        f"policy: {SCP_ARN}",
        {**DEPLOYER, "explicit_deny": True, "policy_type": "service control", "policy_arn": SCP_ARN},
        id="explicit-deny-scp-with-policy-arn",
    ),
    pytest.param(
        "User: arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42 is not authorized to perform: "
        f"codepipeline:DeletePipeline on resource: {PIPELINE_ARN} with an explicit deny in a service control "
        "policy",
        {**DEPLOYER, "explicit_deny": True, "policy_type": "service control", "policy_arn": None},
        id="explicit-deny-scp-without-policy-arn",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
        f"codepipeline:UpdatePipeline on resource: {PIPELINE_ARN} with an explicit deny in a permissions "
        "boundary",
        {"explicit_deny": True, "policy_type": "permissions boundary", "resource": PIPELINE_ARN},
        id="explicit-deny-permissions-boundary",
    ),
    pytest.param(
        "User: arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42 is not authorized to perform: "
        f"codepipeline:StopPipelineExecution on resource: {PIPELINE_ARN} with an explicit deny in a session "
        "policy",
        {**DEPLOYER, "explicit_deny": True, "policy_type": "session"},
        id="explicit-deny-session-policy",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
        f"codepipeline:DeletePipeline on resource: {PIPELINE_ARN} with an explicit deny in an identity-based "
        "policy: arn:aws:iam::123456789012:policy/DenyPipelineDeletes",
        {
            "explicit_deny": True,
            "policy_type": "identity-based",
            "policy_arn": "arn:aws:iam::123456789012:policy/DenyPipelineDeletes",
        },
        id="explicit-deny-identity-policy-with-arn",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
        f"codepipeline:GetPipeline on resource: {PIPELINE_ARN} with an explicit deny in a resource control "
        "policy",
        {"explicit_deny": True, "policy_type": "resource control"},
        id="explicit-deny-resource-control-policy",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
        "codepipeline:GetPipeline on resource: my-pipeline because no permissions boundary allows the "
        "codepipeline:GetPipeline action",
        {"explicit_deny": False, "policy_type": "permissions boundary", "resource": "my-pipeline"},
        id="implicit-deny-permissions-boundary",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
        "codepipeline:RetryStageExecution on resource: "
        "arn:aws:codepipeline:eu-west-1:123456789012:my-pipeline/Deploy",
        {"resource": "arn:aws:codepipeline:eu-west-1:123456789012:my-pipeline/Deploy"},
        id="stage-arn",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
        "codepipeline:PutApprovalResult on resource: "
        "arn:aws:codepipeline:eu-west-1:123456789012:my-pipeline/Approve/ManualApproval.",
        {
            "action": "codepipeline:PutApprovalResult",
            "resource": "arn:aws:codepipeline:eu-west-1:123456789012:my-pipeline/Approve/ManualApproval",
        },
        id="action-arn-ending-a-sentence",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:user/marymajor is not authorized to perform: iam:PassRole on "
        "resource: arn:aws:iam::123456789012:role/service-role/AWSCodePipelineServiceRole-us-east-1-demo",
        {
            **MARY,
            "action": "iam:PassRole",
            "service": "iam",
            "resource": "arn:aws:iam::123456789012:role/service-role/AWSCodePipelineServiceRole-us-east-1-demo",
        },
        id="passrole-role-arn-resource",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:user/dev/platform/mateojackson is not authorized to perform: "
        "codepipeline:GetPipelineState on resource: my-pipeline",
        {
            "principal_arn": "arn:aws:iam::123456789012:user/dev/platform/mateojackson",
            "principal_name": "mateojackson",
            "principal_type": "user",
        },
        id="user-with-path",
    ),
    pytest.param(
        "User: arn:aws-us-gov:iam::123456789012:role/Deployer is not authorized to perform: "
        "codepipeline:GetPipeline on resource: arn:aws-us-gov:codepipeline:us-gov-west-1:123456789012:gov-pipe",
        {
            "principal_arn": "arn:aws-us-gov:iam::123456789012:role/Deployer",
            "partition": "aws-us-gov",
            "principal_type": "role",
            "session_name": None,
        },
        id="gov-cloud-role",
    ),
    pytest.param(
        "User: arn:aws-cn:sts::123456789012:assumed-role/Deployer/ci-run-42 is not authorized to perform: "
        "codepipeline:GetPipeline on resource: arn:aws-cn:codepipeline:cn-north-1:123456789012:cn-pipe",
        {"principal_arn": "arn:aws-cn:iam::123456789012:role/Deployer", "partition": "aws-cn"},
        id="china-assumed-role",
    ),
    pytest.param(
        "2024-05-02T10:14:07Z ERROR deploy.py:88 pipeline call failed\n"
        'Traceback (most recent call last):\n  File "deploy.py", line 88, in main\n'
        "botocore.exceptions.ClientError: An error occurred (AccessDeniedException) when calling the "
        "ListPipelineExecutions operation: User: arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42 is "
        "not authorized to perform: codepipeline:ListPipelineExecutions on resource: my-pipeline\n"
        "2024-05-02T10:14:07Z INFO retrying in 5s",
        {
            **DEPLOYER,
            "resource": "my-pipeline",
            "operation": "ListPipelineExecutions",
            "error_code": "AccessDeniedException",
        },
        id="embedded-in-log-lines",
    ),
    pytest.param(
        '{"level": "error", "msg": "An error occurred (AccessDeniedException) when calling the GetPipeline '
        "operation: User: arn:aws\\n:sts::123456789012:assumed-role/Deployer/ci-run-42 is not authorized to "
        'perform: codepipeline:GetPipeline on resource: my-pipeline\\nTraceback: ...", "ts": 1714644847}',
        {**DEPLOYER, "resource": "my-pipeline", "operation": "GetPipeline"},
        id="json-escaped-with-newlines",
    ),
    pytest.param(
        '{"__type":"com.amazonaws.codepipeline#AccessDeniedException","message":"User: '
        "arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: codepipeline:GetPipeline "
        'on resource: my-pipeline"}',
        {"error_code": "AccessDeniedException", "resource": "my-pipeline", "operation": None},
        id="sdk-json-body",
    ),
    pytest.param(
        "ClientError('An error occurred (UnauthorizedOperation) when calling the GetPipeline operation: User: "
        "arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: codepipeline:GetPipeline "
        "on resource: my-pipeline')",
        {"error_code": "UnauthorizedOperation", "resource": "my-pipeline", "principal_name": "mateojackson"},
        id="python-repr-with-quotes",
    ),
    pytest.param(
        "User: arn:aws:sts::123456789012:federated-user/build-bot is not authorized to perform: "
        "codepipeline:GetPipeline on resource: my-pipeline",
        {
            "principal_arn": "arn:aws:sts::123456789012:federated-user/build-bot",
            "principal_type": "federated-user",
            "principal_name": "build-bot",
        },
        id="federated-user",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:root is not authorized to perform: codepipeline:DeletePipeline "
        f"on resource: {PIPELINE_ARN} with an explicit deny in a service control policy",
        {"principal_type": "root", "principal_name": "root", "explicit_deny": True},
        id="root-with-scp",
    ),
    pytest.param(
        "User: arn:aws:iam::123456789012:user/mateojackson\r\nis\u00a0not authorized to perform:\r\n"
        "codepipeline:\u200bGetPipeline on resource: my-pipeline\r\n",
        {"action": "codepipeline:GetPipeline", "resource": "my-pipeline"},
        id="windows-line-endings-nbsp-zero-width",
    ),
    pytest.param(
        "User: arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42 is not authorized to perform: "
        f"codepipeline:DeletePipeline on resource: {PIPELINE_ARN} with an explicit deny in a service control "
        "policy: arn:aws:organizations::999988887777\n:policy/o-a1b2c3d4e5/service_control_policy/p-abcd1234",
        {"policy_arn": SCP_ARN, "explicit_deny": True},
        id="policy-arn-broken-across-lines",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MESSAGES)
def test_it_parses_real_message_shapes(text: str, expected: dict[str, object]) -> None:
    result = parse_access_denied(text)

    assert result.ok, result.error
    assert result.error is None
    assert result.denial is not None
    fields = dataclasses.asdict(result.denial)
    assert {key: fields[key] for key in expected} == expected


def test_the_table_covers_at_least_twenty_shapes() -> None:
    assert len(MESSAGES) >= 20


def test_it_resolves_assumed_role_to_the_role_and_keeps_the_session() -> None:
    denial = parse_access_denied(
        "User: arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42 is not authorized to perform: "
        "codepipeline:GetPipeline on resource: my-pipeline"
    ).denial

    assert denial is not None
    assert denial.principal_arn == "arn:aws:iam::123456789012:role/Deployer"
    assert denial.original_principal == "arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42"
    assert denial.session_name == "ci-run-42"


def test_it_normalises_whitespace_inside_the_guide_arn() -> None:
    denial = parse_access_denied(GUIDE_MARYMAJOR_BROKEN).denial

    assert denial is not None
    assert denial.original_principal == "arn:aws:iam::123456789012:user/marymajor"


def test_a_missing_identity_grant_is_fixable_and_says_who_gets_it() -> None:
    denial = parse_access_denied(GUIDE_MATEOJACKSON).denial

    assert denial is not None
    assert denial.fixable
    assert "codepipeline:GetPipeline on my-pipeline" in denial.explanation
    assert "arn:aws:iam::123456789012:user/mateojackson" in denial.explanation


def test_an_explicit_scp_deny_is_not_fixable_and_names_the_policy_and_its_owner() -> None:
    denial = parse_access_denied(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
        f"codepipeline:DeletePipeline on resource: my-pipeline with an explicit deny in a service control "
        f"policy: {SCP_ARN}"
    ).denial

    assert denial is not None
    assert not denial.fixable
    assert SCP_ARN in denial.explanation
    assert "no grant can override" in denial.explanation
    assert "AWS Organizations administrator" in denial.explanation


def test_an_explicit_boundary_deny_points_at_the_boundary_owner() -> None:
    denial = parse_access_denied(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
        "codepipeline:UpdatePipeline on resource: my-pipeline with an explicit deny in a permissions boundary"
    ).denial

    assert denial is not None
    assert not denial.fixable
    assert "a permissions boundary blocks" in denial.explanation
    assert "who set the permissions boundary" in denial.explanation


def test_an_implicit_deny_from_a_boundary_is_not_fixable_by_a_grant() -> None:
    denial = parse_access_denied(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
        "codepipeline:GetPipeline because no permissions boundary allows the codepipeline:GetPipeline action"
    ).denial

    assert denial is not None
    assert not denial.explicit_deny
    assert not denial.fixable
    assert "would not help" in denial.explanation


def test_root_is_not_fixable_because_nothing_can_be_granted_to_it() -> None:
    denial = parse_access_denied(
        "User: arn:aws:iam::123456789012:root is not authorized to perform: codepipeline:GetPipeline"
    ).denial

    assert denial is not None
    assert not denial.fixable
    assert "only grant to IAM users and roles" in denial.explanation


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param("   \n\t ", id="whitespace"),
        pytest.param("The pipeline is broken again, can someone give me access please?", id="prose"),
        pytest.param(
            "User: arn:aws:iam::123456789012:user/mateojackson is not authorized", id="half-message"
        ),
        pytest.param(
            "An error occurred (AccessDenied) when calling the GetPipeline operation", id="wrapper-only"
        ),
        pytest.param("is not authorized to perform: codepipeline:GetPipeline", id="no-principal"),
    ],
)
def test_it_says_what_it_expected_for_unparseable_text(text: str) -> None:
    result = parse_access_denied(text)

    assert not result.ok
    assert result.denial is None
    assert result.error == EXPECTED
    assert "User: arn:aws:" in EXPECTED
    assert "is not authorized to perform:" in EXPECTED


def test_it_rejects_a_principal_that_is_not_an_iam_identity() -> None:
    result = parse_access_denied("User: anonymous is not authorized to perform: codepipeline:GetPipeline")

    assert not result.ok
    assert result.error is not None
    assert "'anonymous' is not an IAM user, role" in result.error


def test_it_asks_for_the_action_when_it_is_missing() -> None:
    result = parse_access_denied(
        "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform:"
    )

    assert result.error is not None
    assert "codepipeline:GetPipeline" in result.error


def test_it_refuses_text_longer_than_the_limit() -> None:
    result = parse_access_denied(GUIDE_MATEOJACKSON + " " * MAX_MESSAGE_CHARS)

    assert not result.ok
    assert (
        result.error == f"The message is longer than {MAX_MESSAGE_CHARS:,} characters; paste only the error."
    )


def test_it_takes_the_first_message_that_parses_when_there_are_several() -> None:
    text = "User: nobody is not authorized to perform: x:Y\n" + GUIDE_MATEOJACKSON + "\n" + GUIDE_MARYMAJOR
    denial = parse_access_denied(text).denial

    assert denial is not None
    assert denial.principal_name == "mateojackson"


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        ("my-pipeline", ResourceRef(None, None, "my-pipeline", None, None)),
        (PIPELINE_ARN, ResourceRef("us-east-1", ACCOUNT, "my-pipeline", None, None)),
        (
            "arn:aws:codepipeline:eu-west-1:123456789012:my-pipeline/Deploy",
            ResourceRef("eu-west-1", ACCOUNT, "my-pipeline", "Deploy", None),
        ),
        (
            "arn:aws-us-gov:codepipeline:us-gov-west-1:123456789012:my-pipeline/Approve/ManualApproval",
            ResourceRef("us-gov-west-1", ACCOUNT, "my-pipeline", "Approve", "ManualApproval"),
        ),
        ("arn:aws:iam::123456789012:role/service-role/AWSCodePipelineServiceRole", None),
        ("arn:aws:codepipeline:us-east-1:123456789012:actiontype:Custom/Build/Jenkins/1", None),
        ("*", None),
        ("", None),
        (None, None),
    ],
)
def test_it_reads_pipeline_stage_and_action_from_a_resource(
    resource: str | None, expected: ResourceRef | None
) -> None:
    assert parse_pipeline_resource(resource) == expected


# --- What AWS really emits: any case, IAM's short resources, every partition, ARNs a terminal wrapped ---

PARTITION_REGIONS = {
    "aws": "us-east-1",
    "aws-cn": "cn-north-1",
    "aws-us-gov": "us-gov-west-1",
    "aws-eusc": "eusc-de-east-1",
}


def _denial(text: str) -> Denial:
    result = parse_access_denied(text)
    assert result.denial is not None, result.error
    return result.denial


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("CODEPIPELINE:GetPipeline", "codepipeline:GetPipeline"),
        ("codepipeline:getpipeline", "codepipeline:GetPipeline"),
        ("CodePipeline:GETPIPELINESTATE", "codepipeline:GetPipelineState"),
        ("IAM:PassRole", "iam:PassRole"),
        ("iam:passrole", "iam:PassRole"),
        ("SNS:Publish", "sns:Publish"),
    ],
)
def test_an_action_is_spelled_as_the_catalog_spells_it_whatever_the_case_written(
    written: str, canonical: str
) -> None:
    denial = _denial(GUIDE_MATEOJACKSON.replace("codepipeline:GetPipeline", written))

    assert denial.action == canonical
    assert denial.service == canonical.split(":")[0]


def test_an_upper_case_codepipeline_action_is_fixable_and_an_unknown_one_is_still_named() -> None:
    assert _denial(GUIDE_MATEOJACKSON.replace("codepipeline:", "CODEPIPELINE:")).fixable
    misspelt = _denial(GUIDE_MATEOJACKSON.replace("codepipeline:GetPipeline", "CODEPIPELINE:GetPipelien"))
    assert misspelt.action == "codepipeline:GetPipelien" and not misspelt.fixable
    assert "Did you mean codepipeline:GetPipeline?" in misspelt.explanation


@pytest.mark.parametrize(
    ("principal", "resource", "expected"),
    [
        pytest.param(
            "arn:aws:iam::123456789012:user/marymajor",
            "role CodePipelineServiceRole",
            "arn:aws:iam::123456789012:role/CodePipelineServiceRole",
            id="role-name",
        ),
        pytest.param(
            "arn:aws:iam::123456789012:user/marymajor",
            "user marymajor",
            "arn:aws:iam::123456789012:user/marymajor",
            id="user-name",
        ),
        pytest.param(
            "arn:aws:iam::123456789012:user/marymajor",
            "group Deployers",
            "arn:aws:iam::123456789012:group/Deployers",
            id="group-name",
        ),
        pytest.param(
            "arn:aws:iam::123456789012:user/marymajor",
            "policy PipelineReaders",
            "arn:aws:iam::123456789012:policy/PipelineReaders",
            id="policy-name",
        ),
        pytest.param(
            "arn:aws:iam::123456789012:user/marymajor",
            "policy arn:aws:iam::aws:policy/AWSCodePipeline_FullAccess",
            "arn:aws:iam::aws:policy/AWSCodePipeline_FullAccess",
            id="policy-arn",
        ),
        pytest.param(
            "arn:aws-us-gov:sts::210987654321:assumed-role/Deployer/ci-run-42",
            "Role service-role/CodePipelineServiceRole",
            "arn:aws-us-gov:iam::210987654321:role/service-role/CodePipelineServiceRole",
            id="assumed-role-govcloud-role-with-path",
        ),
        pytest.param(
            "arn:aws-eusc:iam::123456789012:user/marymajor",
            "role CodePipelineServi\nceRole",
            "arn:aws-eusc:iam::123456789012:role/CodePipelineServi",
            id="wrapped-role-name",
        ),
    ],
)
def test_iams_short_resource_forms_are_arns_in_the_principals_account(
    principal: str, resource: str, expected: str
) -> None:
    denial = _denial(f"User: {principal} is not authorized to perform: iam:PassRole on resource: {resource}")

    assert denial.resource == expected
    assert denial.resource_readings[0] == expected


def test_a_pipeline_named_like_an_iam_kind_is_not_read_as_an_iam_resource() -> None:
    denial = _denial(GUIDE_MATEOJACKSON.replace("on resource: my-pipeline", "on resource: role"))

    assert denial.resource == "role"


@pytest.mark.parametrize("partition", list(PARTITION_REGIONS))
def test_every_partitions_arns_parse_user_assumed_role_resource_and_cli_wrapper(partition: str) -> None:
    region = PARTITION_REGIONS[partition]
    pipeline = f"arn:{partition}:codepipeline:{region}:123456789012:my-pipeline/Deploy"
    for code in ("AccessDenied", "AccessDeniedException"):
        denial = _denial(
            f"An error occurred ({code}) when calling the RetryStageExecution operation: User: "
            f"arn:{partition}:sts::123456789012:assumed-role/Deployer/ci-run-42 is not authorized to perform: "
            f"codepipeline:RetryStageExecution on resource: {pipeline} because no identity-based policy allows "
            "the codepipeline:RetryStageExecution action"
        )
        assert (denial.error_code, denial.operation) == (code, "RetryStageExecution")
        assert denial.principal_arn == f"arn:{partition}:iam::123456789012:role/Deployer"
        assert (denial.partition, denial.account_id, denial.session_name) == (partition, ACCOUNT, "ci-run-42")
        assert denial.resource == pipeline and denial.policy_type == "identity-based" and denial.fixable
        assert parse_pipeline_resource(denial.resource) == ResourceRef(
            region, ACCOUNT, "my-pipeline", "Deploy", None
        )

    user = _denial(
        f"User: arn:{partition}:iam::123456789012:user/dev/marymajor is not authorized to perform: iam:PassRole "
        f"on resource: arn:{partition}:iam::123456789012:role/service-role/CodePipelineServiceRole"
    )
    assert (user.principal_arn, user.principal_name) == (
        f"arn:{partition}:iam::123456789012:user/dev/marymajor",
        "marymajor",
    )
    assert user.resource == f"arn:{partition}:iam::123456789012:role/service-role/CodePipelineServiceRole"


def test_a_partition_aws_does_not_operate_is_refused() -> None:
    result = parse_access_denied(GUIDE_MATEOJACKSON.replace("arn:aws:", "arn:aws-moon:"))

    assert not result.ok
    assert result.error is not None and "is not an IAM user, role" in result.error


WRAPPED_SERVICE_ROLE = (
    "An error occurred (AccessDenied) when calling the CreatePipeline operation:\n"
    "User: arn:aws:iam::123456789012:user/marymajor is not authorized to perform: iam:PassRole on resource: "
    "arn:aws:iam::123456789012:role/service-\nrole/CodePipelineServiceRole"
)
WRAPPED_IN_THE_NAME = (
    "User: arn:aws:iam::123456789012:user/marymajor is not authorized to perform: iam:PassRole on resource: "
    "arn:aws:iam::123456789012:role/service-role/CodePipelineServi\nceRole because no identity-based policy "
    "allows the iam:PassRole action"
)
SERVICE_ROLE_ARN = "arn:aws:iam::123456789012:role/service-role/CodePipelineServiceRole"


@pytest.mark.parametrize(
    ("text", "first", "line"),
    [
        pytest.param(WRAPPED_SERVICE_ROLE, "arn:aws:iam::123456789012:role/service-", 2, id="after-a-hyphen"),
        pytest.param(
            WRAPPED_IN_THE_NAME,
            "arn:aws:iam::123456789012:role/service-role/CodePipelineServi",
            1,
            id="inside-the-name",
        ),
    ],
)
def test_a_wrapped_arn_comes_with_its_joined_reading_and_the_line_it_was_cut_at(
    text: str, first: str, line: int
) -> None:
    resource = _denial(text).resource_text

    assert resource is not None and resource.wrapped
    assert resource.readings == (first, SERVICE_ROLE_ARN)
    assert resource.line == line and resource.ends_line
    assert resource.on_line == first


def test_a_wrapped_arn_followed_by_the_reason_is_read_whole_and_the_reason_is_kept() -> None:
    denial = _denial(
        WRAPPED_IN_THE_NAME.replace(
            "because no identity-based policy allows the iam:PassRole action",
            "with an explicit deny in a service control policy",
        )
    )

    assert denial.resource == SERVICE_ROLE_ARN  # AWS puts nothing between a resource and its reason
    assert denial.explicit_deny and denial.policy_type == "service control" and not denial.fixable
    assert SERVICE_ROLE_ARN in denial.explanation


def test_a_line_after_the_resource_that_holds_more_than_one_word_is_not_joined() -> None:
    denial = _denial(GUIDE_MATEOJACKSON + "\n2024-05-02T10:14:07Z INFO retrying in 5s")

    assert denial.resource_readings == ("my-pipeline",)


def test_the_guides_line_broken_arn_still_reads_as_one_principal_with_no_resource() -> None:
    denial = _denial(GUIDE_MARYMAJOR_BROKEN)

    assert denial.principal_arn == "arn:aws:iam::123456789012:user/marymajor"
    assert denial.resource is None and denial.resource_readings == ()


# --- Robustness: the parser sees raw user input, so it must never raise and never stall. ---

FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,  # timed by hand below, as the issue asks for one explicit 100 ms assertion
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
)
FRAGMENTS = [
    "arn:aws:",
    "arn:aws\n:",
    "User: ",
    "User:",
    " ",
    "\n",
    "\t",
    "\\n",
    "\\\\",
    "is not authorized to perform: ",
    "is not authorized to perform: a:b on resource: ",
    "on resource: arn",
    " :/ ",
    "with an explicit deny in a ",
    "because no ",
    "An error occurred (",
    "arn:aws:iam::123456789012:user/",
    "a",
]


def _parse_quickly(text: str) -> IntakeResult:
    started = time.perf_counter()
    result = parse_access_denied(text)
    elapsed = time.perf_counter() - started

    assert isinstance(result, IntakeResult)
    assert result.ok != (result.error is not None)
    assert elapsed < 0.1, f"{elapsed * 1000:.1f} ms for {len(text):,} characters"
    return result


def _repeat_to(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


huge_fragments = st.builds(
    _repeat_to,
    st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=5).map("".join),
    st.one_of(st.integers(1, MAX_MESSAGE_CHARS), st.integers(MAX_MESSAGE_CHARS, 1_000_000)),
)

VALID_MESSAGES = [
    (GUIDE_MATEOJACKSON, "arn:aws:iam::123456789012:user/mateojackson", "codepipeline:GetPipeline"),
    (GUIDE_MARYMAJOR_BROKEN, "arn:aws:iam::123456789012:user/marymajor", "iam:PassRole"),
    (
        "User: arn:aws:sts::123456789012:assumed-role/Deployer/ci-run-42 is not authorized to perform: "
        f"codepipeline:GetPipeline on resource: {PIPELINE_ARN} because no identity-based policy allows the "
        "codepipeline:GetPipeline action.",
        "arn:aws:iam::123456789012:role/Deployer",
        "codepipeline:GetPipeline",
    ),
]


@FUZZ_SETTINGS
@given(st.text(max_size=1_000_000))
def test_it_never_raises_on_arbitrary_text(text: str) -> None:
    _parse_quickly(text)


@FUZZ_SETTINGS
@given(huge_fragments)
def test_it_stays_fast_on_huge_repeated_fragments(text: str) -> None:
    result = _parse_quickly(text)

    if len(text) > MAX_MESSAGE_CHARS:
        assert not result.ok


@FUZZ_SETTINGS
@given(st.text(max_size=5_000), st.sampled_from(VALID_MESSAGES), st.text(max_size=5_000))
def test_it_finds_a_valid_message_embedded_in_junk(
    before: str, message: tuple[str, str, str], after: str
) -> None:
    text, principal_arn, action = message

    result = _parse_quickly(f"{before}\n{text}\n{after}")

    assert result.denial is not None, result.error
    assert result.denial.principal_arn == principal_arn
    assert result.denial.action == action


@pytest.mark.parametrize("fragment", FRAGMENTS)
@pytest.mark.parametrize("size", [MAX_MESSAGE_CHARS, 1_000_000])
def test_it_stays_fast_on_each_fragment_repeated_to_the_limit_and_beyond(fragment: str, size: int) -> None:
    _parse_quickly(_repeat_to(fragment, size))
