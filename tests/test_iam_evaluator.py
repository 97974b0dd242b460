"""The deployment tests' IAM evaluator (accessrequests/policy/evaluate.py), operator by operator, against AWS's documented
rules; and against moto's evaluator where moto's is complete (no conditions, literal resources)."""

from __future__ import annotations

import json

import pytest
from moto.iam.access_control import IAMPolicy, PermissionResult

from accessrequests.policy.evaluate import (
    Request,
    UnsupportedCondition,
    arn_like,
    condition_holds,
    decide,
    without_statement,
)

ROLE = "arn:aws:iam::111111111111:role/gatehouse/p1/gatehouse-R1"
BOUNDARY = "arn:aws:iam::111111111111:policy/GatehouseBoundary"


def policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def allow(action: str, resource: str = "*", **extra) -> dict:
    return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}


def deny(action: str, resource: str = "*", **extra) -> dict:
    return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}


@pytest.mark.parametrize(
    "operator, wanted, context, holds",
    [
        ("StringEquals", "a", {"k": ["a"]}, True),
        ("StringEquals", "a", {"k": ["A"]}, False),  # values are case-sensitive
        ("StringEquals", "a", {"K": ["a"]}, True),  # keys are not
        ("StringEquals", "a", {}, False),  # a positive operator on a missing key is false
        ("StringNotEquals", "a", {}, True),  # a negated one is true
        ("StringNotEquals", "a", {"k": ["a"]}, False),
        ("StringNotEquals", ["a", "b"], {"k": ["c"]}, True),
        ("StringEqualsIfExists", "a", {}, True),
        ("StringEqualsIfExists", "a", {"k": ["b"]}, False),
        ("StringLike", "gate*", {"k": ["gatehouse-x"]}, True),
        ("StringLike", "gate?", {"k": ["gatehouse"]}, False),
        ("StringNotLike", "gate*", {"k": ["other"]}, True),
        ("ArnLike", "arn:aws:iam::*:role/X", {"k": ["arn:aws:iam::123456789012:role/X"]}, True),
        ("ArnLike", "arn:aws:iam::*:role/X", {"k": ["arn:aws:iam::1:x:role/X"]}, False),
        ("ArnNotLike", "arn:aws:iam::1:policy/gatehouse/*", {"k": ["arn:aws:iam::aws:policy/Admin"]}, True),
        ("ArnNotLike", "arn:aws:iam::1:policy/gatehouse/*", {}, True),
        ("ArnEquals", "arn:aws:iam::1:role/A", {"k": ["arn:aws:iam::1:role/A"]}, True),
        ("Bool", "false", {"k": ["true"]}, False),
        ("Bool", "true", {"k": ["TRUE"]}, True),
        ("ForAllValues:StringEquals", ["a", "b"], {"k": ["a", "b"]}, True),
        ("ForAllValues:StringEquals", ["a", "b"], {"k": ["a", "c"]}, False),
        ("ForAllValues:StringEquals", ["a"], {}, True),  # vacuously true without the key
        ("ForAnyValue:StringEquals", ["a"], {"k": ["c", "a"]}, True),
        ("ForAnyValue:StringEquals", ["a"], {}, False),
    ],
)
def test_condition_operator(operator, wanted, context, holds):
    assert condition_holds(operator, "k", wanted, context) is holds


def test_an_unknown_condition_operator_is_refused_rather_than_guessed():
    with pytest.raises(UnsupportedCondition):
        condition_holds("NumericLessThan", "k", "1", {"k": ["0"]})
    with pytest.raises(UnsupportedCondition):
        condition_holds("ForEach:StringEquals", "k", "1", {"k": ["0"]})


def test_arns_match_part_by_part_and_the_resource_part_may_hold_colons():
    assert arn_like("arn:aws:codepipeline:*:1:*", "arn:aws:codepipeline:us-east-1:1:my-pipeline/Stage/Act")
    assert not arn_like("arn:aws:codepipeline:*:1:*", "arn:aws:codepipeline:us-east-1:2:my-pipeline")
    assert arn_like("*", "anything")


def test_an_explicit_deny_beats_an_allow_and_is_named():
    decision = decide(
        Request("iam:PutRolePolicy", (ROLE,)),
        identity=[policy(allow("iam:*")), policy({**deny("iam:Put*", ROLE), "Sid": "NoSelf"})],
    )
    assert not decision.allowed and decision.denied_by == ("NoSelf",)


def test_nothing_is_allowed_without_an_allow():
    decision = decide(Request("iam:CreateAccessKey", ("arn:aws:iam::1:user/u",)), identity=[policy()])
    assert not decision.allowed and "no policy allows" in decision.reason


def test_a_permissions_boundary_caps_what_the_identity_policy_allows():
    identity = [policy(allow("*"))]
    boundary = policy(allow("codepipeline:*"))
    assert decide(Request("codepipeline:GetPipeline"), identity=identity, boundary=boundary).allowed
    capped = decide(Request("iam:CreateUser"), identity=identity, boundary=boundary)
    assert not capped.allowed and "boundary" in capped.reason


def test_every_resource_of_a_multi_resource_action_must_be_allowed():
    identity = [
        policy(
            allow("sso:CreateAccountAssignment", "arn:aws:sso:::instance/*"),
            allow("sso:CreateAccountAssignment", "arn:aws:sso:::account/*"),
        )
    ]
    resources = ("arn:aws:sso:::instance/i", "arn:aws:sso:::permissionSet/i/p", "arn:aws:sso:::account/1")
    assert not decide(Request("sso:CreateAccountAssignment", resources), identity=identity).allowed
    assert decide(Request("sso:CreateAccountAssignment", resources[::2]), identity=identity).allowed


def test_assume_role_needs_the_trust_policy_to_name_the_caller_with_its_conditions():
    hub = "arn:aws:iam::222222222222:role/GatehouseHub"
    trust = policy(
        {
            "Effect": "Allow",
            "Principal": {"AWS": hub},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"sts:ExternalId": "x" * 16, "aws:PrincipalOrgID": "o-abc"}},
        }
    )
    identity = [policy(allow("sts:AssumeRole", "arn:aws:iam::*:role/GatehouseProvisioner"))]
    target = ("arn:aws:iam::111111111111:role/GatehouseProvisioner",)
    context = {"sts:ExternalId": ["x" * 16], "aws:PrincipalOrgID": ["o-abc"]}
    assert decide(Request("sts:AssumeRole", target, context, (hub,)), identity=identity, trust=trust).allowed
    for wrong in ({**context, "sts:ExternalId": ["y" * 16]}, {"aws:PrincipalOrgID": ["o-abc"]}):
        assert not decide(
            Request("sts:AssumeRole", target, wrong, (hub,)), identity=identity, trust=trust
        ).allowed
    stranger = ("arn:aws:iam::333333333333:role/GatehouseHub",)
    assert not decide(
        Request("sts:AssumeRole", target, context, stranger), identity=identity, trust=trust
    ).allowed


def test_a_resource_policy_deny_applies_and_its_allow_suffices_in_its_own_account():
    bucket_policy = policy(
        {
            "Sid": "OnlyTheHubWrites",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::audit/*",
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": "arn:aws:iam::1:role/GatehouseHub"}},
        }
    )
    put = "s3:PutObject", ("arn:aws:s3:::audit/k",)
    hub = {"aws:PrincipalArn": ["arn:aws:iam::1:role/GatehouseHub"]}
    other = {"aws:PrincipalArn": ["arn:aws:iam::1:role/Admin"]}
    admin = [policy(allow("s3:*"))]
    assert decide(Request(*put, hub), identity=admin, resource_policy=bucket_policy).allowed
    assert decide(Request(*put, other), identity=admin, resource_policy=bucket_policy).denied_by == (
        "OnlyTheHubWrites",
    )


def test_removing_a_statement_by_sid_keeps_the_others():
    document = policy({**allow("a:B"), "Sid": "One"}, {**allow("c:D"), "Sid": "Two"})
    assert [s["Sid"] for s in without_statement(document, "One")["Statement"]] == ["Two"]


@pytest.mark.parametrize(
    "statement, action, resource",
    [
        (allow("iam:PutRolePolicy", ROLE), "iam:PutRolePolicy", ROLE),
        (allow("iam:Put*", "arn:aws:iam::1:role/*"), "iam:PutRolePolicy", ROLE),
        (allow("iam:PutRolePolicy", "arn:aws:iam::111111111111:role/gatehouse/*"), "iam:PutRolePolicy", ROLE),
        (deny("iam:PutRolePolicy", ROLE), "iam:PutRolePolicy", ROLE),
        (allow("codepipeline:*"), "iam:PutRolePolicy", ROLE),
        ({"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}, "iam:PutRolePolicy", ROLE),
    ],
)
def test_it_agrees_with_moto_where_moto_needs_no_conditions(statement, action, resource):
    moto = IAMPolicy(json.dumps(policy(statement))).is_action_permitted(action, resource)
    ours = decide(Request(action, (resource,)), identity=[policy(statement)])
    assert ours.allowed is (moto == PermissionResult.PERMITTED)


# --- what Gatehouse's session deny needs: dates on aws:TokenIssueTime, StringLike on aws:userid -------------

REVOKED_AT = "2025-03-01T12:00:00Z"


@pytest.mark.parametrize(
    "operator, wanted, context, holds",
    [
        ("DateLessThan", REVOKED_AT, {"aws:TokenIssueTime": ["2025-03-01T11:59:59Z"]}, True),
        ("DateLessThan", REVOKED_AT, {"aws:TokenIssueTime": ["2025-03-01T12:00:00Z"]}, False),
        ("DateLessThan", REVOKED_AT, {"aws:TokenIssueTime": ["2025-03-01T13:00:00+01:00"]}, False),
        ("DateLessThan", REVOKED_AT, {"aws:TokenIssueTime": ["2025-03-01T12:59:00+01:00"]}, True),
        ("DateLessThan", REVOKED_AT, {"aws:TokenIssueTime": ["1740830399"]}, True),  # epoch seconds
        ("DateLessThan", REVOKED_AT, {}, False),  # long-term access keys carry no issue time
        ("DateLessThanEquals", REVOKED_AT, {"aws:TokenIssueTime": [REVOKED_AT]}, True),
        ("DateGreaterThan", REVOKED_AT, {"aws:TokenIssueTime": ["2025-03-01T12:00:01Z"]}, True),
        ("DateGreaterThanEquals", REVOKED_AT, {"aws:TokenIssueTime": ["2025-03-01T11:00:00Z"]}, False),
        ("DateEquals", "2025-03-01T12:00:00.000Z", {"aws:TokenIssueTime": [REVOKED_AT]}, True),
        ("DateNotEquals", REVOKED_AT, {"aws:TokenIssueTime": [REVOKED_AT]}, False),
        ("DateNotEquals", REVOKED_AT, {}, True),
        ("DateLessThanIfExists", REVOKED_AT, {}, True),
    ],
)
def test_date_operators_compare_instants_whatever_their_notation(operator, wanted, context, holds):
    assert condition_holds(operator, "aws:TokenIssueTime", wanted, context) is holds


@pytest.mark.parametrize(
    "pattern, userid, holds",
    [
        ("AROAEXAMPLE:paulo.santos", "AROAEXAMPLE:paulo.santos", True),
        ("*:paulo.santos", "AROAOTHER:paulo.santos", True),
        ("*:paulo.santos", "AROAOTHER:paulo.santos2", False),
        ("*:paulo.santos", "AROAOTHER:akua.mansa", False),
        ("*:a${*}b", "AROA:a*b", True),  # ${*} is a literal star
        ("*:a${*}b", "AROA:axxb", False),
        ("*:a${?}", "AROA:a?", True),
        ("*:a${?}", "AROA:ab", False),
        ("*:${$}x", "AROA:$x", True),
    ],
)
def test_stringlike_on_aws_userid_matches_one_persons_sessions(pattern, userid, holds):
    assert condition_holds("StringLike", "aws:userid", pattern, {"aws:userid": [userid]}) is holds


def test_a_deny_for_sessions_issued_before_a_time_refuses_the_old_session_and_spares_a_new_one():
    grant = allow("codepipeline:GetPipeline", "arn:aws:codepipeline:us-east-1:1:p")
    ended = deny(
        "*",
        Condition={
            "DateLessThan": {"aws:TokenIssueTime": REVOKED_AT},
            "StringLike": {"aws:userid": "*:paulo.santos"},
            "StringEquals": {"aws:PrincipalAccount": "1"},
        },
    )
    documents = [policy(grant, ended)]

    def session(issued: str, who: str = "paulo.santos", account: str = "1") -> Request:
        context = {
            "aws:TokenIssueTime": [issued],
            "aws:userid": [f"AROAPS:{who}"],
            "aws:PrincipalAccount": [account],
        }
        return Request("codepipeline:GetPipeline", ("arn:aws:codepipeline:us-east-1:1:p",), context)

    assert not decide(session("2025-03-01T11:00:00Z"), identity=documents).allowed
    assert decide(session("2025-03-01T12:00:01Z"), identity=documents).allowed
    assert decide(session("2025-03-01T11:00:00Z", who="akua.mansa"), identity=documents).allowed
    assert decide(session("2025-03-01T11:00:00Z", account="2"), identity=documents).allowed
