"""From a request's fields to the exact IAM statements a grant will carry (pure policy building, via policy.py)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from accessrequests import policy
from accessrequests.models import AccessLevel, PassableRole, Pipeline, RequestKind


def actions_for(level: str, custom_actions: Sequence[str]) -> list[str]:
    if level == AccessLevel.CUSTOM:
        if not custom_actions:
            raise policy.PolicyError("List at least one CodePipeline action, e.g. codepipeline:GetPipeline.")
        return policy.validate_actions(custom_actions)
    if level not in policy.ACCESS_LEVELS:
        raise policy.PolicyError(f"Choose an access level: {', '.join(policy.LEVEL_ORDER)} or custom.")
    return list(policy.ACCESS_LEVELS[level])


def statements_for(
    *,
    kind: str,
    account_id: str,
    pipelines: Sequence[Pipeline] = (),
    level: str = "",
    custom_actions: Sequence[str] = (),
    stage: str = "",
    action_name: str = "",
    pass_role: PassableRole | None = None,
) -> list[dict[str, Any]]:
    """The statements for one request; raises policy.PolicyError with a user-facing message."""
    if kind == RequestKind.PASS_ROLE:
        if pass_role is None:
            raise policy.PolicyError("Choose the role to pass to CodePipeline.")
        return [policy.pass_role_statement(role_arn=pass_role.arn)]
    if kind == RequestKind.PERMISSION_SET:
        return []  # an assignment of an existing permission set: no statements of ours
    actions = actions_for(level, custom_actions)
    if not pipelines:
        raise policy.PolicyError("Choose at least one pipeline.")
    by_region: dict[str, list[Pipeline]] = defaultdict(list)
    for pipeline in pipelines:
        by_region[pipeline.region].append(pipeline)
    statements: list[dict[str, Any]] = []
    wants_pass_role = policy.needs_pass_role(actions)
    for region, region_pipelines in sorted(by_region.items()):
        pass_roles = sorted({p.role_arn for p in region_pipelines if p.role_arn}) if wants_pass_role else []
        statements += policy.pipeline_statements(
            region=region,
            account_id=account_id,
            pipelines=[p.name for p in region_pipelines],
            actions=actions,
            stage=stage or None,
            action_name=action_name or None,
            pass_role_arns=pass_roles,
        )
    return policy.coalesce(statements)
