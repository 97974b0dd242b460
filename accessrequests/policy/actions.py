"""What AWS says about IAM actions: names, access levels and the resources they take.

Everything here is looked up in policy_sentry's copy of the AWS Service Authorization Reference, so the portal
never invents an action name or guesses which ARN an action is authorised against. Pure functions: no Django,
no boto3. `accessrequests.policy.documents` builds statements on top of these lookups and re-exports the public names.

policy_sentry quirks this module absorbs:
- Service prefixes are case-sensitive in its lookups (`get_action_data("CodePipeline", ...)` finds nothing),
  action names are not; we lower-case the prefix ourselves.
- An action that accepts a condition-only "resource type" (e.g. `aws:RequestTag` on TagResource or
  CreatePipeline) gets an extra `"*"` row. A `"*"` row therefore does not mean "takes no resource"; only an
  action whose *every* row is `"*"` really has no resource (ListPipelines, ListActionTypes, GetActionType).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from accessrequests.core import arns


# policy_sentry parses its 13 MB catalog when first imported (about 45 MB resident, and a transient peak of
# 37 MB more). Imported on first use, so processes that never look up an action (audit exports, health checks,
# notification workers) never pay for it.
def get_service_prefix_data(service: str) -> dict[str, Any]:
    from policy_sentry.querying.actions import get_service_prefix_data as lookup

    return lookup(service)


def get_action_data(service: str, name: str) -> dict[str, Any]:
    from policy_sentry.querying.actions import get_action_data as lookup

    return lookup(service, name)


CODEPIPELINE = "codepipeline"
PASSROLE_ACTION = "iam:PassRole"


class PolicyError(ValueError):
    """A request cannot be turned into a valid least-privilege policy; the message says why."""


class ResourceKind(StrEnum):
    """Which CodePipeline resource an action is authorised against (the narrowest ARN AWS allows)."""

    NONE = "none"  # no resource at all: the statement must say Resource "*"
    PIPELINE = "pipeline"  # arn:...:codepipeline:REGION:ACCOUNT:PIPELINE
    STAGE = "stage"  # ...:PIPELINE/STAGE
    ACTION = "action"  # ...:PIPELINE/STAGE/ACTION


# Access levels, smallest first. Only CodePipeline actions live here: the iam:PassRole an editor needs is a
# separate statement on one named role (see `accessrequests.policy.documents.pass_role_statement`), so these tuples can
# be fed to `validate_actions` unchanged.
_VIEWER = (
    "codepipeline:GetPipeline",
    "codepipeline:GetPipelineExecution",
    "codepipeline:GetPipelineState",
    "codepipeline:ListActionExecutions",
    "codepipeline:ListDeployActionExecutionTargets",
    "codepipeline:ListPipelineExecutions",
    # No resource: the console's pipeline list. It reveals pipeline names in the account, nothing more.
    "codepipeline:ListPipelines",
    "codepipeline:ListRuleExecutions",
    "codepipeline:ListTagsForResource",
)
_OPERATOR = (
    *_VIEWER,
    "codepipeline:DisableStageTransition",
    "codepipeline:EnableStageTransition",
    "codepipeline:OverrideStageCondition",
    "codepipeline:PutApprovalResult",
    "codepipeline:RetryStageExecution",
    "codepipeline:RollbackStage",
    "codepipeline:StartPipelineExecution",
    "codepipeline:StopPipelineExecution",
)
_EDITOR = (
    *_OPERATOR,
    # The console's pipeline editor lists action and rule types while editing; they take no resource and are
    # only needed by someone who may change the pipeline, so viewers and operators do without them.
    "codepipeline:GetActionType",
    "codepipeline:ListActionTypes",
    "codepipeline:ListRuleTypes",
    "codepipeline:UpdatePipeline",
)
ACCESS_LEVELS: dict[str, tuple[str, ...]] = {"viewer": _VIEWER, "operator": _OPERATOR, "editor": _EDITOR}
LEVEL_ORDER: tuple[str, ...] = tuple(ACCESS_LEVELS)

# CodePipeline checks iam:PassRole on the pipeline's service role whenever a pipeline is created or its
# declaration is written, so these actions are useless without a PassRole statement for that role.
ACTIONS_NEEDING_PASS_ROLE = frozenset({"codepipeline:CreatePipeline", "codepipeline:UpdatePipeline"})
LEVELS_NEEDING_PASS_ROLE = frozenset(
    level for level, actions in ACCESS_LEVELS.items() if ACTIONS_NEEDING_PASS_ROLE.intersection(actions)
)

_LEVEL_BY_ACTION: dict[str, str] = {}
for _level in reversed(LEVEL_ORDER):  # smaller levels overwrite larger ones: the smallest level wins
    for _action in ACCESS_LEVELS[_level]:
        _LEVEL_BY_ACTION[_action.lower()] = _level


def level_for_action(action: str) -> str | None:
    """Return the smallest access level that contains `action` (case-insensitive), or None.

    iam:PassRole is in no level on purpose: it is requested as its own kind, on one named role.
    """
    return _LEVEL_BY_ACTION.get(action.strip().lower())


def needs_pass_role(actions: Iterable[str]) -> bool:
    """True when the actions include one that CodePipeline only accepts together with iam:PassRole."""
    wanted = {a.lower() for a in ACTIONS_NEEDING_PASS_ROLE}
    return any(a.strip().lower() in wanted for a in actions)


@functools.lru_cache(maxsize=1)
def codepipeline_action_names() -> tuple[str, ...]:
    """Every CodePipeline action name AWS defines (for "did you mean" hints)."""
    return tuple(sorted(get_service_prefix_data(CODEPIPELINE)["privileges"]))


@functools.lru_cache(maxsize=4096)
def canonical_action(action: str) -> str | None:
    """Return the catalog spelling of `action` ("codepipeline:getpipeline" -> "codepipeline:GetPipeline").

    Returns None for unknown services or actions and for anything with a wildcard.
    """
    if not isinstance(action, str) or "*" in action or "?" in action or action.count(":") != 1:
        return None
    service, name = (part.strip() for part in action.split(":"))
    service = service.lower()
    data = get_service_prefix_data(service)
    if not data:
        return None
    canonical_name = data["privileges_lower_name"].get(name.lower())
    return f"{service}:{canonical_name}" if canonical_name else None


def validate_actions(actions: Iterable[str]) -> list[str]:
    """Canonicalise CodePipeline action names; raise PolicyError naming every action that is not one.

    Order is kept and duplicates are dropped. Wildcards are refused: a request names exactly what it needs.
    """
    valid: list[str] = []
    problems: list[str] = []
    for raw in actions:
        action = raw.strip() if isinstance(raw, str) else raw
        if not isinstance(action, str) or not action:
            problems.append(f"{raw!r} is not an action name")
        elif "*" in action or "?" in action:
            problems.append(f"wildcards are not allowed in actions: {action!r}")
        elif action.count(":") != 1:
            problems.append(f"{action!r} is not of the form codepipeline:Action")
        elif action.split(":")[0].strip().lower() != CODEPIPELINE:
            problems.append(f"only CodePipeline actions can be requested here, not {action!r}")
        elif (canonical := canonical_action(action)) is None:
            problems.append(f"{action!r} is not a CodePipeline action")
        elif canonical not in valid:
            valid.append(canonical)
    if problems:
        message = "; ".join(problems)
        raise PolicyError(message[0].upper() + message[1:] + ".")
    return valid


@functools.lru_cache(maxsize=512)
def resource_kind(action: str) -> ResourceKind | None:
    """Which CodePipeline resource `action` is authorised against, per policy_sentry.

    None means the action only applies to resources the portal does not hand out (action types, webhooks,
    job workers), so it cannot be requested on a pipeline. Raises PolicyError for unknown actions.
    """
    canonical = canonical_action(action)
    if canonical is None or not canonical.startswith(f"{CODEPIPELINE}:"):
        raise PolicyError(f"{action!r} is not a CodePipeline action.")
    privilege = get_service_prefix_data(CODEPIPELINE)["privileges"][canonical.split(":")[1]]
    types = set(privilege["resource_types"])
    # "" is the condition-only row policy_sentry renders as "*" (see module docstring).
    for kind in (ResourceKind.PIPELINE, ResourceKind.STAGE, ResourceKind.ACTION):
        # Every CodePipeline action takes at most one of these today (a test pins that); if AWS ever lists
        # two, the pipeline ARN is the one checked on the request and we take it first.
        if kind.value in types:
            return kind
    if types <= {""}:
        return ResourceKind.NONE
    return None


@functools.lru_cache(maxsize=1024)
def arn_formats(action: str) -> tuple[str, ...]:
    """The resource ARN formats `action` accepts, `"*"` rows included; empty if the action is unknown."""
    canonical = canonical_action(action)
    if canonical is None:
        return ()
    service, name = canonical.split(":")
    rows: list[dict[str, Any]] = get_action_data(service, name).get(service, [])
    return tuple(dict.fromkeys(row["resource_arn_format"] for row in rows))


def takes_no_resource(action: str) -> bool:
    """True only for actions AWS defines without any resource, the only ones allowed Resource "*"."""
    formats = arn_formats(action)
    return bool(formats) and all(f == "*" for f in formats)


# What a policy may put in each ARN placeholder. Wildcards are only tolerated in the sub-resource parts the
# portal itself widens (a missing stage or action name); a wildcard pipeline, role or account is never least
# privilege.
_NAME = r"[A-Za-z0-9.@_+=,-]+"
_PLACEHOLDER_PATTERNS = {
    "Partition": arns.PARTITION,
    "Region": arns.REGION,
    "Account": arns.ACCOUNT,
    "StageName": r"[A-Za-z0-9.@_*?-]+",
    "ActionName": r"[A-Za-z0-9.@_*?-]+",
    "RoleNameWithPath": rf"(?:{_NAME}/)*{_NAME}",
}
_PLACEHOLDER = re.compile(r"\$\{([A-Za-z]+)\}")


@functools.lru_cache(maxsize=1024)
def arn_format_regex(arn_format: str) -> re.Pattern[str]:
    """Turn "arn:${Partition}:codepipeline:${Region}:${Account}:${PipelineName}" into an anchored regex."""
    parts: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(arn_format):
        parts.append(re.escape(arn_format[position : match.start()]))
        parts.append(f"(?:{_PLACEHOLDER_PATTERNS.get(match.group(1), _NAME)})")
        position = match.end()
    parts.append(re.escape(arn_format[position:]))
    return re.compile("".join(parts))


def resource_fits_action(action: str, resource: str) -> bool:
    """True when `resource` is an ARN of a type `action` is authorised against (never for "*")."""
    return any(arn_format_regex(f).fullmatch(resource) for f in arn_formats(action) if f != "*")


# --- statement checks (used by accessrequests.policy.documents.check_document) -------------------------------------


def as_list(value: Any) -> list[Any]:
    """IAM lets most statement fields be one value or a list; treat them all as lists."""
    return list(value) if isinstance(value, list | tuple) else [value]


def _condition_values(condition: Any, operator: str, key: str) -> list[Any] | None:
    if not isinstance(condition, Mapping):
        return None
    for op, tests in condition.items():
        if op == operator and isinstance(tests, Mapping):
            for test_key, value in tests.items():
                if isinstance(test_key, str) and test_key.lower() == key.lower():  # keys are case-insensitive
                    return as_list(value)
    return None


def statement_problems(index: int, statement: Any, *, trust_policy: bool) -> list[str]:
    """What is wrong with one statement by the portal's own rules (parliament runs separately).

    Identity statements: known, wildcard-free actions; each resource an ARN the action is authorised
    against, "*" only where the action takes no resource; PassRole only with an exact iam:PassedToService.
    Trust statements: known actions, no Resource, no "*" principal.
    """
    where = f"statement {index + 1}"
    if not isinstance(statement, Mapping):
        return [f"{where} is not an object"]
    problems: list[str] = []
    for key in ("NotAction", "NotResource", "NotPrincipal"):
        if key in statement:
            problems.append(f"{where} uses {key}, which Gatehouse never grants")
    effect = statement.get("Effect")
    if effect not in ("Allow", "Deny"):
        problems.append(f"{where} has Effect {effect!r}")
    actions = as_list(statement.get("Action", []))
    if not actions or not all(isinstance(a, str) for a in actions):
        return [*problems, f"{where} has no list of actions"]
    known: list[str] = []
    for action in actions:
        if "*" in action or "?" in action:
            problems.append(f"{where}: wildcard action {action!r}")
        elif canonical_action(action) is None:
            problems.append(f"{where}: unknown action {action!r}")
        else:
            known.append(action)

    if trust_policy:
        if "Resource" in statement:
            problems.append(f"{where}: a trust policy statement has no Resource")
        principals = statement.get("Principal")
        aws_principals = as_list(principals.get("AWS", [])) if isinstance(principals, Mapping) else []
        if principals == "*" or "*" in aws_principals:
            problems.append(f"{where} trusts any principal")
        return problems

    resources = as_list(statement.get("Resource", []))
    if not resources or not all(isinstance(r, str) for r in resources):
        return [*problems, f"{where} has no list of resources"]
    if effect != "Allow":
        return problems  # a Deny cannot widen access; only its names need to be right
    for action in known:
        for resource in resources:
            if resource == "*":
                if not takes_no_resource(action):
                    problems.append(f'{where}: {action} must not have Resource "*"; it takes a resource ARN')
            elif takes_no_resource(action):
                problems.append(f"{where}: {action} takes no resource, so {resource} never matches")
            elif not resource_fits_action(action, resource):
                problems.append(f"{where}: {resource} is not a resource {action} is authorised against")
        if canonical_action(action) == PASSROLE_ACTION:
            services = _condition_values(statement.get("Condition"), "StringEquals", "iam:PassedToService")
            exact = services and all(isinstance(s, str) and "*" not in s and "?" not in s for s in services)
            if not exact:
                problems.append(f"{where}: iam:PassRole without a StringEquals iam:PassedToService condition")
    return problems
