"""From a parsed AccessDenied message to a pre-filled request: match principal, account and pipeline in the
catalog and pick the smallest access level that contains the refused action."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from accessrequests import policy, roles
from accessrequests.intake import Denial, parse_pipeline_resource
from accessrequests.models import (
    AccessLevel,
    AwsAccount,
    PassableRole,
    Pipeline,
    Principal,
    PrincipalKind,
    RequestKind,
)


@dataclass
class Resolution:
    initial: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    region_choices: list[str] = field(default_factory=list)  # set when a bare pipeline name is ambiguous
    summary: list[tuple[str, str]] = field(default_factory=list)
    # What the message named that could not be matched, and why, with the next step: never dropped silently.
    unmatched: list[tuple[str, str]] = field(default_factory=list)


def resolve_denial(denial: Denial, *, region: str | None = None, user=None) -> Resolution:
    """``user``: who pasted it; a principal not linked to them is said to be unmatched (and why)."""
    res = Resolution()
    account = AwsAccount.objects.filter(account_id=denial.account_id).first()
    if account is None or not account.enabled:
        res.error = (
            f"Account {denial.account_id} is not managed by Gatehouse; ask a Gatehouse admin to add it."
        )
        return res
    kind = {"user": PrincipalKind.IAM_USER, "role": PrincipalKind.IAM_ROLE}.get(denial.principal_type)
    if kind is None:
        res.error = f"Gatehouse cannot grant access to a {denial.principal_type} principal."
        return res
    principal = (
        Principal.objects.filter(kind=kind, account=account, name=denial.principal_name, present=True)
        .order_by("pk")
        .first()
    )
    if principal is None:
        res.error = (
            f"Gatehouse does not know the IAM {denial.principal_type} {denial.principal_name} in account "
            f"{account.account_id}. Ask a Gatehouse admin to sync the catalog or add it."
        )
        return res
    res.initial = {"account": account.pk, "principal": principal.pk}
    res.summary = [("Principal", denial.principal_arn), ("Account", f"{account.name} ({account.account_id})")]
    if user is not None and not roles.is_admin(user) and not principal.users.filter(pk=user.pk).exists():
        res.unmatched.append(
            (
                denial.principal_arn,
                "is not linked to your Gatehouse account, so you cannot ask for access for it. Ask a Gatehouse "
                "admin to link it to you, or to file the request on its owner's behalf; meanwhile, choose one "
                "of your own principals below.",
            )
        )
    if denial.action.lower() == "iam:passrole":
        res.initial["kind"] = RequestKind.PASS_ROLE
        if denial.resource:
            role = PassableRole.objects.filter(account=account, arn=denial.resource).first()
            if role is None:
                role_name = denial.resource.rsplit("/", 1)[-1]
                role = PassableRole.objects.filter(account=account, name=role_name).first()
            if role is None:
                res.unmatched.append(
                    (
                        denial.resource,
                        f"is not a role Gatehouse knows in account {account.account_id} (the catalog is synced "
                        "every 15 minutes). Choose the role below, or ask a Gatehouse admin to sync the catalog.",
                    )
                )
            if role is not None:
                if not role.requestable:
                    res.error = f"{role.name} cannot be requested: " + (
                        "it is marked sensitive."
                        if role.sensitive
                        else "it does not trust codepipeline.amazonaws.com."
                    )
                    return res
                res.initial["pass_role"] = role.pk
        res.summary.append(
            ("Access", "Pass a role to CodePipeline (iam:PassRole, only to codepipeline.amazonaws.com)")
        )
        return res
    if denial.service != "codepipeline":
        res.error = (
            f"{denial.action} is not a CodePipeline action. Gatehouse grants CodePipeline access and "
            "passing roles to CodePipeline; ask your platform team for other services."
        )
        return res
    try:
        [action] = policy.validate_actions([denial.action])
    except policy.PolicyError as exc:
        res.error = str(exc)
        return res
    level = policy.level_for_action(action)
    res.initial["kind"] = RequestKind.PIPELINE
    if level is None:
        res.initial.update(level=AccessLevel.CUSTOM, actions=action)
    else:
        res.initial["level"] = level
    res.summary.append(("Access", f"{action} → smallest level: {level or 'custom'}"))
    ref = parse_pipeline_resource(denial.resource)
    if ref is not None and ref.account_id and ref.account_id != account.account_id:
        # The pipeline lives in another account than the refused principal: the principal's own IAM policy
        # cannot reach it (CodePipeline has no resource policies), so a request here would change nothing.
        other = AwsAccount.objects.filter(account_id=ref.account_id).first()
        res.error = (
            f"{ref.pipeline} is in account {ref.account_id}"
            + (f" ({other.name})" if other else ", which Gatehouse does not manage")
            + f", not in {account.account_id} where {denial.principal_arn} lives. IAM access is granted in "
            "the principal's own account: ask for access in that account with your Identity Center user, "
            "or for a cross-account role there."
        )
        return res
    if ref is not None and ref.pipeline:
        pipelines = Pipeline.objects.filter(account=account, name=ref.pipeline, present=True)
        wanted_region = ref.region or region
        if wanted_region:
            pipelines = pipelines.filter(region=wanted_region)
        found = list(pipelines.order_by("region"))
        if not found:
            res.error = (
                f"There is no pipeline named {ref.pipeline} in account {account.account_id}"
                + (f" in {wanted_region}" if wanted_region else "")
                + " that Gatehouse knows. Check the name, or ask an admin to sync the catalog."
            )
            return res
        if len(found) > 1:
            res.region_choices = [p.region for p in found]
            return res
        res.initial["pipelines"] = [found[0].pk]
        if ref.stage:
            res.initial["stage"] = ref.stage
        if ref.action:
            res.initial["action_name"] = ref.action
        res.summary.append(("Pipeline", f"{found[0].name} ({found[0].region})"))
    return res
