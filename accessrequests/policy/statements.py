"""From a request's fields to the exact IAM statements a grant will carry (pure policy building, via ``policy.documents``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from accessrequests.models import AccessLevel, AwsAccount, PassableRole, Pipeline, RequestKind
from accessrequests.policy import documents as policy


class StatementError(Exception):
    """The access asked for cannot be expressed safely; the message says why, for the requester."""


def passable_problem(
    role: PassableRole | None, *, account: AwsAccount | None, role_arn: str = ""
) -> str | None:
    """The one rule for every path to iam:PassRole (the PassRole kind, and the levels that pass a pipeline's
    service role): a role of this account, in the catalog, present, trusting CodePipeline, not sensitive."""
    name = role.name if role is not None else (role_arn.rsplit("/", 1)[-1] or "the role")
    if role is None:
        return (
            f"{name} is not a role Gatehouse knows in this account, so it cannot be passed; ask an admin to "
            "sync the catalog."
        )
    if account is not None and role.account_id != account.pk:
        return f"{name} is not a role of account {account.account_id}; a role is passed in its own account."
    if not role.present:
        return f"{name} no longer exists in AWS."
    if role.sensitive:
        return f"{name} is marked sensitive and cannot be passed through Gatehouse."
    if not role.trusts_codepipeline:
        return (
            f"{name} does not trust codepipeline.amazonaws.com, so CodePipeline could not use it; "
            "passing it would only widen access."
        )
    return None


def _pass_roles(pipelines: Sequence[Pipeline], account: AwsAccount | None) -> list[str]:
    """The service roles an editor passes, each checked like a PassRole request."""
    arns = sorted({p.role_arn for p in pipelines if p.role_arn})
    known = {role.arn: role for role in PassableRole.objects.filter(arn__in=arns)}
    for arn in arns:
        problem = passable_problem(known.get(arn), account=account, role_arn=arn)
        if problem:
            raise StatementError(
                f"This level passes the pipeline's service role, and {problem[0].lower()}{problem[1:]}"
            )
    return arns


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
    account: AwsAccount | None = None,
) -> list[dict[str, Any]]:
    """The statements for one request; raises policy.PolicyError or StatementError with a user-facing message."""
    if kind == RequestKind.PASS_ROLE:
        if pass_role is None:
            raise policy.PolicyError("Choose the role to pass to CodePipeline.")
        problem = passable_problem(pass_role, account=account)
        if problem:
            raise StatementError(problem)
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
        pass_roles = _pass_roles(region_pipelines, account) if wants_pass_role else []
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
