"""Least-privilege IAM policy building for Gatehouse: pure functions, no Django, no boto3.

The worker computes a principal's *desired* policy from every grant that should be live, then writes it
whole (see DESIGN.md, "Provisioning: desired state"). That only works if the same grants always produce the
same bytes, so everything here is deterministic: statements are coalesced, sorted, given content-derived
Sids and rendered as minified JSON with sorted keys.

Security invariants enforced here (and re-checked by `check_document` before anything is sent to AWS):
- `Resource: "*"` only for actions AWS defines without a resource (ListPipelines, ListActionTypes, ...);
  everything else gets the narrowest ARN AWS allows: pipeline, stage or action.
- iam:PassRole only on one named role ARN, always with `iam:PassedToService`.
- A policy that does not fit IAM's size limits is spilled into portal-owned managed policies or refused with
  a clear reason; it is never truncated.

Catalog lookups (action names, access levels, resource types) live in `accessrequests.policy.actions`;
the names other code uses are re-exported here.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from accessrequests.core import arns
from accessrequests.policy.actions import (
    ACCESS_LEVELS,
    ACTIONS_NEEDING_PASS_ROLE,
    LEVEL_ORDER,
    LEVELS_NEEDING_PASS_ROLE,
    PASSROLE_ACTION,
    PolicyError,
    ResourceKind,
    as_list,
    canonical_action,
    level_for_action,
    needs_pass_role,
    resource_kind,
    statement_problems,
    validate_actions,
)

__all__ = [
    "ACCESS_LEVELS",
    "ACTIONS_NEEDING_PASS_ROLE",
    "INLINE_LIMITS",
    "LEVELS_NEEDING_PASS_ROLE",
    "LEVEL_ORDER",
    "MANAGED_POLICIES_PER_PRINCIPAL",
    "MANAGED_POLICY_LIMIT",
    "PERMISSION_SET_INLINE_LIMIT",
    "PolicyError",
    "PolicyPlan",
    "PolicySizeError",
    "ResourceKind",
    "arn_account",
    "as_statements",
    "assert_valid",
    "check_document",
    "coalesce",
    "cross_account_trust_policy",
    "level_for_action",
    "needs_pass_role",
    "pass_role_statement",
    "permission_set_document",
    "pipeline_arn",
    "pipeline_statements",
    "plan_documents",
    "policy_size",
    "render",
    "validate_actions",
]

VERSION = "2012-10-17"
CODEPIPELINE_SERVICE = "codepipeline.amazonaws.com"

# IAM quotas, in characters with whitespace not counted. The inline limits are per entity, for all its
# inline policies together.
INLINE_LIMITS: dict[str, int] = {"user": 2048, "group": 5120, "role": 10240}
MANAGED_POLICY_LIMIT = 6144
MANAGED_POLICIES_PER_PRINCIPAL = 10  # the default quota; it can be raised to 20
# Also 32,768 bytes, which minified JSON of 10,240 non-whitespace characters never reaches.
PERMISSION_SET_INLINE_LIMIT = 10240

_REGION = re.compile(arns.REGION)
_ACCOUNT = re.compile(arns.ACCOUNT)
# CodePipeline's own rule for pipeline, stage and action names.
_CODEPIPELINE_NAME = re.compile(r"[A-Za-z0-9.@\-_]{1,100}")
_SERVICE_PRINCIPAL = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*\.amazonaws\.com(?:\.cn)?")
_EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")


class PolicySizeError(PolicyError):
    """The desired policy does not fit IAM's limits, even spilled into managed policies."""

    def __init__(self, message: str, *, size: int, limit: int) -> None:
        super().__init__(message)
        self.size = size
        self.limit = limit


@dataclass(frozen=True)
class PolicyPlan:
    """The documents to write for one principal. `PolicyPlan(None, ())` means: delete what the portal owns."""

    inline: str | None
    managed: tuple[str, ...] = ()


# --- building statements -------------------------------------------------------------------------------


def _check_partition(partition: str) -> None:
    if partition not in arns.PARTITIONS:
        raise PolicyError(f"Unknown AWS partition {partition!r}; AWS has {', '.join(arns.PARTITIONS)}.")


def _check_location(partition: str, region: str, account_id: str) -> None:
    _check_partition(partition)
    if not isinstance(region, str) or not _REGION.fullmatch(region):
        raise PolicyError(f"{region!r} is not an AWS region name such as eu-west-1.")
    if not isinstance(account_id, str) or not _ACCOUNT.fullmatch(account_id):
        raise PolicyError(f"{account_id!r} is not a 12-digit AWS account id.")


def _check_name(what: str, name: str) -> str:
    if not isinstance(name, str) or not _CODEPIPELINE_NAME.fullmatch(name):
        raise PolicyError(
            f"{name!r} is not a valid {what} name: CodePipeline allows 1 to 100 letters, digits and . @ - _"
        )
    return name


def pipeline_arn(*, partition: str = "aws", region: str, account_id: str, pipeline: str) -> str:
    """The ARN of one pipeline, after checking every part."""
    _check_location(partition, region, account_id)
    return f"arn:{partition}:codepipeline:{region}:{account_id}:{_check_name('pipeline', pipeline)}"


def pipeline_statements(
    *,
    partition: str = "aws",
    region: str,
    account_id: str,
    pipelines: Sequence[str],
    actions: Sequence[str],
    stage: str | None = None,
    action_name: str | None = None,
    pass_role_arns: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Allow `actions` on `pipelines`, each on the narrowest resource AWS authorises it against.

    Pipeline-level actions get the pipeline ARNs; stage-level ones `PIPELINE/STAGE` (or `PIPELINE/*` when no
    stage is named); action-level ones `PIPELINE/STAGE/ACTION` with `*` for a part not named; actions without
    a resource get `"*"`. Each role in `pass_role_arns` adds its own PassRole statement.
    """
    _check_location(partition, region, account_id)
    if isinstance(pipelines, str) or isinstance(actions, str):
        raise PolicyError("pipelines and actions must be lists of names, not one string.")
    names = list(dict.fromkeys(_check_name("pipeline", p) for p in pipelines))
    if stage is not None:
        _check_name("stage", stage)
    if action_name is not None:
        _check_name("action", action_name)

    by_kind: dict[ResourceKind, list[str]] = {}
    for action in validate_actions(actions):
        kind = resource_kind(action)
        if kind is None:
            raise PolicyError(
                f"{action} applies to action types, webhooks or job workers, not to pipelines; "
                "Gatehouse cannot grant it."
            )
        by_kind.setdefault(kind, []).append(action)
    if not names and set(by_kind) - {ResourceKind.NONE}:
        raise PolicyError("Name at least one pipeline: these actions only work on specific pipelines.")

    base = [f"arn:{partition}:codepipeline:{region}:{account_id}:{name}" for name in names]
    resources = {
        ResourceKind.NONE: ["*"],
        ResourceKind.PIPELINE: base,
        ResourceKind.STAGE: [f"{arn}/{stage or '*'}" for arn in base],
        ResourceKind.ACTION: [f"{arn}/{stage or '*'}/{action_name or '*'}" for arn in base],
    }
    statements: list[dict[str, Any]] = [
        {"Effect": "Allow", "Action": sorted(kind_actions), "Resource": resources[kind]}
        for kind, kind_actions in by_kind.items()
    ]
    for role_arn in dict.fromkeys(pass_role_arns):
        statement = pass_role_statement(role_arn=role_arn)
        # CodePipeline can only use a service role from the pipeline's own account.
        role = arns.parse(role_arn)
        if role is not None and (role.partition, role.account) != (partition, account_id):
            raise PolicyError(f"{role_arn} is not in account {account_id}, so its pipelines cannot use it.")
        statements.append(statement)
    return statements


def pass_role_statement(*, role_arn: str, service: str = CODEPIPELINE_SERVICE) -> dict[str, Any]:
    """Allow passing exactly one role, and only to `service`."""
    if not isinstance(role_arn, str) or "*" in role_arn or "?" in role_arn:
        raise PolicyError(f"iam:PassRole needs one named role, not {role_arn!r}.")
    if not arns.is_role_arn(role_arn):
        raise PolicyError(f"{role_arn!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME).")
    if not isinstance(service, str) or not _SERVICE_PRINCIPAL.fullmatch(service):
        raise PolicyError(f"{service!r} is not an AWS service principal such as {CODEPIPELINE_SERVICE}.")
    return {
        "Effect": "Allow",
        "Action": [PASSROLE_ACTION],
        "Resource": [role_arn],
        "Condition": {"StringEquals": {"iam:PassedToService": service}},
    }


def as_statements(document: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The statements of a policy document as a list (IAM allows a single statement object too)."""
    found = document.get("Statement", [])
    return [dict(s) for s in (found if isinstance(found, list) else [found]) if isinstance(s, Mapping)]


def arn_account(arn: str) -> str:
    """The account id field of an ARN (``arn:PARTITION:SERVICE:REGION:ACCOUNT:...``), or "" if there is none."""
    return arns.account_of(arn)


def cross_account_trust_policy(
    *,
    trusted_account_id: str | None = None,
    trusted_principal_arn: str | None = None,
    external_id: str | None = None,
    partition: str = "aws",
    role_account_id: str | None = None,
) -> dict[str, Any]:
    """The trust policy of a portal-owned role that an outside account or principal may assume.

    Exactly one of `trusted_account_id` (its root, i.e. whoever that account's admins allow) and
    `trusted_principal_arn` (one IAM role or user). `external_id` is for third parties (confused deputy).
    Returns the whole document, with the same deterministic Sid as `render` would give.
    """
    if (trusted_account_id is None) == (trusted_principal_arn is None):
        raise PolicyError("Name either the trusted account or the trusted principal, not both or neither.")
    _check_partition(partition)
    if trusted_account_id is not None:
        if not _ACCOUNT.fullmatch(trusted_account_id):
            raise PolicyError(f"{trusted_account_id!r} is not a 12-digit AWS account id.")
        principal = f"arn:{partition}:iam::{trusted_account_id}:root"
    else:
        trusted = arns.parse(trusted_principal_arn)
        if (
            trusted is None
            or trusted.iam_kind not in ("root", "role", "user")
            or not arns.account_of(str(trusted))
        ):
            # Session ARNs (sts::...:assumed-role/...) change with every session; trust the role instead.
            raise PolicyError(
                f"{trusted_principal_arn!r} is not an IAM role, user or account root ARN; "
                "for an assumed-role session, name its role (arn:aws:iam::ACCOUNT:role/NAME)."
            )
        if trusted.partition != partition:
            # IAM never lets a role be assumed from another partition: such a trust policy would admit nobody.
            raise PolicyError(
                f"{trusted_principal_arn} is in the {trusted.partition} partition; a role in {partition} can only "
                f"trust principals of {partition}."
            )
        principal = str(trusted)
    if role_account_id is not None and arn_account(principal) == role_account_id:
        # A role that trusts its own account's principals is not cross-account access: it would hand a
        # same-account principal access its own approvals never covered.
        raise PolicyError(
            f"A cross-account role in {role_account_id} trusts only principals outside it, not {principal}."
        )
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"AWS": principal},
        "Action": ["sts:AssumeRole"],
    }
    if external_id is not None:
        if not _EXTERNAL_ID.fullmatch(external_id):
            raise PolicyError("The external id must be 2 to 1,224 letters, digits or + = , . @ : / - _.")
        statement["Condition"] = {"StringEquals": {"sts:ExternalId": external_id}}
    return {"Version": VERSION, "Statement": coalesce([statement])}


# --- coalescing and rendering --------------------------------------------------------------------------


def _canonical_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _normalise_condition(condition: Mapping[str, Any]) -> dict[str, Any]:
    # Condition values are sets to IAM: ["b", "a"], ["a", "b"] and "a" vs ["a"] must compare equal.
    normalised: dict[str, Any] = {}
    for operator, tests in condition.items():
        operator_tests: dict[str, Any] = {}
        for key, value in tests.items():
            values = sorted(set(as_list(value)), key=str)
            operator_tests[key] = values[0] if len(values) == 1 else values
        if operator_tests:
            normalised[operator] = operator_tests
    return normalised


def _normalise(statement: Mapping[str, Any]) -> dict[str, Any]:
    if "Effect" not in statement:
        raise PolicyError(f"Statement has no Effect: {statement!r}")
    normalised = {key: value for key, value in statement.items() if key != "Sid"}  # Sids are recomputed
    for key in ("Action", "NotAction"):
        if key in normalised:
            normalised[key] = sorted({canonical_action(a) or a for a in as_list(normalised[key])})
    for key in ("Resource", "NotResource"):
        if key in normalised:
            normalised[key] = sorted(set(as_list(normalised[key])))
    if "Condition" in normalised:
        normalised["Condition"] = _normalise_condition(normalised["Condition"])
        if not normalised["Condition"]:
            del normalised["Condition"]
    return normalised


def _merge_on(statements: list[dict[str, Any]], field: str) -> list[dict[str, Any]]:
    """Merge statements that are identical except for `field`, taking the union of `field`."""
    groups: dict[str, dict[str, Any]] = {}
    for statement in statements:
        rest = {key: value for key, value in statement.items() if key != field}
        # A statement without `field` (e.g. NotAction, or no Resource in a trust policy) merges only with
        # its exact duplicates.
        group_key = _canonical_json([field in statement, rest])
        if group_key in groups and field in statement:
            merged = groups[group_key]
            merged[field] = sorted(set(merged[field]) | set(statement[field]))
        else:
            groups.setdefault(group_key, dict(statement))
    return list(groups.values())


def _sid(statement: Mapping[str, Any]) -> str:
    # Derived from the content, not the position, so adding one grant does not renumber every other
    # statement in the approver's diff.
    return "GH" + hashlib.sha256(_canonical_json(statement).encode()).hexdigest()[:10]


def coalesce(statements: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Merge, deduplicate and sort statements; give each a deterministic Sid.

    Two merges are exact (they grant the same action x resource pairs): statements with the same Effect,
    resources and condition get the union of their actions; statements with the same Effect, actions and
    condition get the union of their resources. Alternating them until nothing changes gives a result that
    depends only on the set of statements, never on their order.
    """
    current = [_normalise(s) for s in statements]
    while True:
        merged = _merge_on(_merge_on(current, "Action"), "Resource")
        if len(merged) == len(current):
            break
        current = merged
    ordered = sorted(merged, key=_canonical_json)
    result: list[dict[str, Any]] = []
    seen: set[str] = set()
    for statement in ordered:
        sid = _sid(statement)
        while sid in seen:  # a 40-bit collision; stay deterministic rather than emit duplicate Sids
            sid = _sid({"Sid": sid, **statement})
        seen.add(sid)
        result.append({"Sid": sid, **statement})
    return result


def _render_coalesced(statements: list[dict[str, Any]]) -> str:
    return _canonical_json({"Version": VERSION, "Statement": statements})


def render(statements: Iterable[Mapping[str, Any]]) -> str:
    """The minified, deterministic policy document: same statements in any order -> identical bytes."""
    return _render_coalesced(coalesce(statements))


def pretty(statements: Iterable[Mapping[str, Any]]) -> str:
    """The document ``render`` makes, indented for a page; "" when there are no statements."""
    statements = list(statements)
    return json.dumps(json.loads(render(statements)), indent=2) if statements else ""


@dataclass(frozen=True)
class Allowance:
    """One statement of a policy in words, for the pages that show a policy: which actions, on which resources,
    under which conditions. Pages put these above the JSON so the resource, the line an approver most needs,
    is read first and whole."""

    effect: str
    actions: list[str]
    resources: list[str]  # "*" for actions AWS defines without a resource
    conditions: list[str]  # e.g. "iam:PassedToService = codepipeline.amazonaws.com"

    @property
    def by_service(self) -> list[tuple[str, list[str]]]:
        """The actions grouped by service, names without the prefix: [("codepipeline", ["GetPipeline", …])]."""
        groups: dict[str, list[str]] = {}
        for action in self.actions:
            service, _, name = action.partition(":")
            groups.setdefault(service, []).append(name or service)
        return list(groups.items())


_OPERATORS = {"StringEquals": "=", "StringLike": "matches", "ArnEquals": "=", "ArnLike": "matches"}


def in_words(statements: Iterable[Mapping[str, Any]]) -> list[Allowance]:
    """The statements, coalesced as AWS gets them, one Allowance each."""
    found = []
    for statement in coalesce(statements):
        conditions = [
            f"{key} {_OPERATORS.get(operator, operator)} {', '.join(str(v) for v in as_list(value))}"
            for operator, pairs in (statement.get("Condition") or {}).items()
            for key, value in pairs.items()
        ]
        found.append(
            Allowance(
                effect=str(statement["Effect"]),
                actions=list(statement.get("Action") or statement.get("NotAction") or []),
                resources=list(statement.get("Resource") or statement.get("NotResource") or []),
                conditions=conditions,
            )
        )
    return found


# --- sizes ---------------------------------------------------------------------------------------------


def policy_size(document_json: str) -> int:
    """The size IAM counts against its quotas: characters, whitespace excluded."""
    return sum(1 for char in document_json if not char.isspace())


def _split(statement: dict[str, Any], limit: int) -> list[dict[str, Any]]:
    """Split one statement that alone exceeds `limit` into exact parts (by resources, then actions)."""
    if policy_size(_render_coalesced([{"Sid": _sid(statement), **statement}])) <= limit:
        return [statement]
    for field in ("Resource", "Action"):
        values = statement.get(field)
        if isinstance(values, list) and len(values) > 1:
            half = len(values) // 2
            return [
                *_split({**statement, field: values[:half]}, limit),
                *_split({**statement, field: values[half:]}, limit),
            ]
    size = policy_size(_render_coalesced([statement]))
    raise PolicySizeError(
        f"One statement alone would be {size:,} characters, more than a managed policy's {limit:,}.",
        size=size,
        limit=limit,
    )


def _pack(statements: list[dict[str, Any]], limit: int, max_documents: int) -> list[str] | None:
    """First-fit, in the coalesced (sorted) order, so the same statements always give the same documents.

    Returns None as soon as more than `max_documents` would be needed.
    """
    bins: list[list[dict[str, Any]]] = []
    for statement in statements:
        bare = {key: value for key, value in statement.items() if key != "Sid"}
        for piece in _split(bare, limit):
            for contents in bins:
                if policy_size(render([*contents, piece])) <= limit:
                    contents.append(piece)
                    break
            else:
                bins.append([piece])
                if len(bins) > max_documents:
                    return None
    return [render(contents) for contents in bins]


def plan_documents(
    statements: Iterable[Mapping[str, Any]],
    *,
    principal_type: str,
    spare_managed_slots: int = MANAGED_POLICIES_PER_PRINCIPAL,
    inline_used_by_others: int = 0,
) -> PolicyPlan:
    """Decide which documents to write for an IAM user, group or role.

    IAM's inline limit is on the sum of all the entity's inline policies, so ``inline_used_by_others`` (the
    size of inline policies the portal does not own) comes off it. If the coalesced document fits what is left
    it is the one inline policy. Otherwise the
    inline policy is dropped (`inline=None`) and *all* statements go into portal-owned managed policies of at
    most 6,144 characters, at most `spare_managed_slots` of them. Keeping nothing inline when spilling means
    one grant lives in exactly one kind of document, and the inline quota (shared with any inline policies
    others wrote) is left alone. Raises PolicySizeError if even that is not enough; never truncates.
    """
    if principal_type not in INLINE_LIMITS:
        expected = ", ".join(INLINE_LIMITS)
        raise PolicyError(f"Unknown principal type {principal_type!r}; expected one of {expected}.")
    merged = coalesce(statements)
    if not merged:
        return PolicyPlan(None, ())
    document = _render_coalesced(merged)
    size = policy_size(document)
    inline_limit = INLINE_LIMITS[principal_type]
    if size <= inline_limit - inline_used_by_others:
        return PolicyPlan(document, ())

    managed = _pack(merged, MANAGED_POLICY_LIMIT, spare_managed_slots)
    if managed is None:
        if spare_managed_slots <= 0:
            spill = "no managed policy slot is free"
        else:
            plural = "policies" if spare_managed_slots != 1 else "policy"
            verb = "are" if spare_managed_slots != 1 else "is"
            spill = f"{spare_managed_slots} managed {plural} of {MANAGED_POLICY_LIMIT:,} {verb} not enough"
        others = (
            f" ({inline_used_by_others:,} of them taken by inline policies the portal does not own)"
            if inline_used_by_others
            else ""
        )
        raise PolicySizeError(
            f"The policy for this IAM {principal_type} would be {size:,} characters; "
            f"an IAM {principal_type}'s inline policies are limited to {inline_limit:,}{others} and {spill}.",
            size=size,
            limit=inline_limit,
        )
    return PolicyPlan(None, tuple(managed))


def permission_set_document(statements: Iterable[Mapping[str, Any]]) -> str:
    """The inline policy of an Identity Center permission set (limit 10,240 characters)."""
    merged = coalesce(statements)
    if not merged:
        raise PolicyError("A permission set's inline policy needs at least one statement; delete it instead.")
    document = _render_coalesced(merged)
    size = policy_size(document)
    if size > PERMISSION_SET_INLINE_LIMIT:
        raise PolicySizeError(
            f"The permission set's inline policy would be {size:,} characters; "
            f"the limit is {PERMISSION_SET_INLINE_LIMIT:,}.",
            size=size,
            limit=PERMISSION_SET_INLINE_LIMIT,
        )
    return document


# --- checks before sending -----------------------------------------------------------------------------

# parliament reports LOW for style (Resource "*" on list actions, unknown actions it has no data for yet);
# MEDIUM and above mean the policy is wrong or dangerous.
_PARLIAMENT_PROBLEM_SEVERITIES = frozenset({"MEDIUM", "HIGH", "CRITICAL"})


# parliament (1.6) knows the aws, aws-cn, aws-us-gov and aws-iso partitions and regions shaped like us-east-1 only,
# and calls every other ARN invalid (aws-eusc's eusc-de-east-1, aws-iso-b's us-isob-east-1).
_PARLIAMENT_PARTITIONS = ("aws", "aws-cn", "aws-us-gov", "aws-iso")
_PARLIAMENT_UNKNOWN_PARTITION = re.compile(
    r'"arn:(?:'
    + "|".join(re.escape(p) for p in arns.PARTITIONS if p not in _PARLIAMENT_PARTITIONS)
    + r"):(?P<service>[a-z0-9-]+):(?P<region>[a-z0-9-]*):"
)


def _as_parliament_knows_it(document_json: str) -> str:
    """The document with ARNs of partitions parliament does not know rewritten into the commercial partition's
    shape, so that it lints everything else about them; the portal's own checks read the real ARNs."""
    return _PARLIAMENT_UNKNOWN_PARTITION.sub(
        lambda m: f'"arn:aws:{m["service"]}:{"us-east-1" if m["region"] else ""}:', document_json
    )


def _parliament_problems(document_json: str, *, trust_policy: bool) -> list[str]:
    # Imported here: parliament loads its own IAM database and a deprecated pkg_resources at import time,
    # which every Django process would otherwise pay for even if it never checks a policy.
    import parliament

    problems = []
    for finding in parliament.analyze_policy_string(_as_parliament_knows_it(document_json)).findings:
        parliament.enhance_finding(finding)  # fills in severity and title from parliament's config.yaml
        if finding.severity not in _PARLIAMENT_PROBLEM_SEVERITIES:
            continue
        # parliament only knows identity policies: it calls every statement without Resource malformed.
        # A trust policy's statements name a Principal instead and must not have a Resource.
        missing_resource = (
            finding.issue == "MALFORMED" and "neither Resource nor NotResource" in finding.detail
        )
        if trust_policy and missing_resource:
            continue
        problems.append(f"parliament {finding.severity} {finding.issue}: {finding.title}. {finding.detail}")
    return problems


def check_document(document_json: str, *, lint: bool = True) -> list[str]:
    """Everything wrong with a policy document before it is sent to AWS; an empty list means OK.

    Checks the portal's own rules (known actions, every resource is an ARN the action is authorised against,
    `"*"` only for actions without a resource, PassRole only with iam:PassedToService) and then parliament,
    whose MEDIUM, HIGH and CRITICAL findings count. Documents whose statements all name a Principal are
    checked as trust policies.
    """
    try:
        document = json.loads(document_json)
    except (TypeError, ValueError) as error:
        return [f"not valid JSON: {error}"]
    if not isinstance(document, Mapping):
        return ["the document is not a JSON object"]
    problems: list[str] = []
    if document.get("Version") != VERSION:
        problems.append(f"Version must be {VERSION}")
    statements = as_list(document.get("Statement", []))
    if not statements:
        return [*problems, "the document has no statements"]
    with_principal = [isinstance(s, Mapping) and "Principal" in s for s in statements]
    trust_policy = all(with_principal)
    if any(with_principal) and not trust_policy:
        problems.append("the document mixes trust (Principal) and identity statements")
    sids = [s.get("Sid") for s in statements if isinstance(s, Mapping) and "Sid" in s]
    if len(sids) != len(set(sids)):
        problems.append("statement Sids are not unique")
    for index, statement in enumerate(statements):
        problems.extend(statement_problems(index, statement, trust_policy=trust_policy))
    if lint:
        problems.extend(_parliament_problems(document_json, trust_policy=trust_policy))
    return problems


def assert_valid(document_json: str, *, lint: bool = True) -> None:
    """Raise PolicyError listing every problem `check_document` finds (``lint=False`` skips parliament)."""
    problems = check_document(document_json, lint=lint)
    if problems:
        raise PolicyError("The policy failed its checks: " + "; ".join(problems) + ".")
