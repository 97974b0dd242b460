"""From a parsed AccessDenied message to a pre-filled request: match principal, account and pipeline in the
catalog and pick the smallest access level that contains the refused action.

A resource a terminal wrapped inside a word comes with several readings (``intake.ResourceText``): the longest
one that names something in the catalog wins, and when none does, the requester is told on which line the ARN
looks cut instead of being sent to an admin.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from accessrequests.core import arns, roles
from accessrequests.intake.parse import Denial, ResourceRef, parse_pipeline_resource
from accessrequests.models import (
    AccessLevel,
    AwsAccount,
    PassableRole,
    Pipeline,
    Principal,
    PrincipalKind,
    RequestKind,
)
from accessrequests.policy import documents as policy
from accessrequests.policy.actions import PASSROLE_ACTION


@dataclass
class Resolution:
    initial: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    region_choices: list[str] = field(default_factory=list)  # set when a bare pipeline name is ambiguous
    summary: list[tuple[str, str]] = field(default_factory=list)
    # What the message named that could not be matched (None when the sentence says it), and why, with the next
    # step: never dropped silently.
    unmatched: list[tuple[str | None, str]] = field(default_factory=list)
    # The reading of the message's resource that was matched (a wrapped ARN rejoined), else the likeliest one.
    resource: str | None = None

    @property
    def complete(self) -> bool:
        """Everything the message named was matched, so the request can be previewed as it stands; otherwise the
        requester first chooses what is missing (nothing of theirs is wrong yet)."""
        return not self.error and not self.region_choices and not self.unmatched


def resolve_denial(denial: Denial, *, region: str | None = None, user=None) -> Resolution:
    """``user``: who pasted it; a principal not linked to them is said to be unmatched (and why)."""
    res = Resolution(resource=denial.resource)
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
    known = arns.parse(principal.external_id)
    if known is not None and known.partition != denial.partition:
        # Account ids are only unique within a partition: a GovCloud or China account with the same twelve
        # digits is another account, whose principals Gatehouse has never seen.
        res.error = (
            f"{denial.principal_arn} is in the {denial.partition} partition, but Gatehouse manages account "
            f"{account.account_id} in {known.partition}, so this is another account. Paste an error from an "
            "account Gatehouse manages."
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
    if denial.action == PASSROLE_ACTION:
        res.initial["kind"] = RequestKind.PASS_ROLE
        res.summary.append(
            ("Access", "Pass a role to CodePipeline (iam:PassRole, only to codepipeline.amazonaws.com)")
        )
        if denial.resource_readings:
            _resolve_role(res, denial, account)
        else:
            res.unmatched.append(
                (
                    None,
                    "The error does not say which role was passed (AWS leaves it out of some messages): choose it below.",
                )
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
    found: list[Pipeline] = []
    for reading in reversed(denial.resource_readings):  # the longest reading that names a pipeline wins
        candidate = parse_pipeline_resource(reading)
        if candidate is not None and (found := _pipelines_named(account, candidate, region)):
            ref, res.resource = candidate, reading
            break
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
        if not found:
            wanted_region = ref.region or region
            text = denial.resource_text
            res.error = (
                f"There is no pipeline named {ref.pipeline} in account {account.account_id}"
                + (f" in {wanted_region}" if wanted_region else "")
                + " that Gatehouse knows. "
                + (
                    f"The name seems cut at line {text.line}: “{text.on_line}”; paste the message again with "
                    "it whole."
                    if text is not None and text.wrapped
                    else "Check the name, or ask an admin to sync the catalog."
                )
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


def _pipelines_named(account: AwsAccount, ref: ResourceRef, region: str | None) -> list[Pipeline]:
    """The catalog's pipelines ``ref`` names in ``account`` (several when a bare name exists in several regions)."""
    if ref.account_id and ref.account_id != account.account_id:
        return []
    pipelines = Pipeline.objects.filter(account=account, name=ref.pipeline, present=True)
    wanted_region = ref.region or region
    if wanted_region:
        pipelines = pipelines.filter(region=wanted_region)
    return list(pipelines.order_by("region"))


def _resolve_role(res: Resolution, denial: Denial, account: AwsAccount) -> None:
    """Fill in the role a PassRole error names, or say why not (``res.error`` when it may never be passed)."""
    readings = denial.resource_readings
    # Each reading -> the role name it gives when no role has exactly that ARN (the catalog's ARN may carry a path
    # IAM's short form leaves out). Only a role of the principal's own account and partition, or a bare name.
    named: dict[str, str] = {}
    for reading in readings:
        arn = arns.parse(reading)
        if arn is not None:
            if arn.iam_kind == "role" and (arn.partition, arn.account) == (
                denial.partition,
                account.account_id,
            ):
                named[reading] = arn.name
        elif re.fullmatch(arns.IAM_NAME, reading):
            named[reading] = reading
    candidates = list(
        PassableRole.objects.filter(account=account)
        .filter(Q(arn__in=list(named)) | Q(name__in=list(named.values())))
        .order_by("pk")
    )
    role = None
    for reading in reversed(readings):  # the longest reading that names a role wins
        role = next((r for r in candidates if r.arn == reading), None) or next(
            (r for r in candidates if reading in named and r.name == named[reading]), None
        )
        if role is not None:
            res.resource = reading
            break
    if role is None:
        res.unmatched.append(_role_not_found(denial, account, readings))
        return
    if not role.requestable:
        res.error = f"{role.name} cannot be requested: " + (
            "it is marked sensitive."
            if role.sensitive
            else "it does not trust codepipeline.amazonaws.com."
            if not role.trusts_codepipeline
            else "it is no longer in the account (the last catalog sync did not find it)."
        )
        return
    res.initial["pass_role"] = role.pk
    res.summary.append(("Role", role.arn))


def _role_not_found(denial: Denial, account: AwsAccount, readings: tuple[str, ...]) -> tuple[str | None, str]:
    """What to tell the requester about a role the catalog does not know: cut, elsewhere, or unknown."""
    first = readings[0]
    arn = arns.parse(first)
    text = denial.resource_text
    choose = "Choose the role below, or paste the message again with the whole ARN."
    if text is not None and text.wrapped:
        return None, (
            f"The role ARN seems cut at line {text.line}: “{text.on_line}”, and no role Gatehouse knows in "
            f"account {account.account_id} is named by it, whether or not the next line is joined to it. {choose}"
        )
    if text is not None and text.ends_line and _starts_a_known_role(account, first):
        return None, (
            f"The role ARN seems cut at line {text.line}: “{text.on_line}” is only the start of a role "
            f"Gatehouse knows in account {account.account_id}. {choose}"
        )
    if arn is not None and (arn.partition, arn.account) != (denial.partition, account.account_id):
        where = (
            f"in account {arn.account}"
            if arn.account != account.account_id
            else f"in the {arn.partition} partition"
        )
        return first, (
            f"is {where}, not beside {denial.principal_arn}; a role can only be passed in its own account. "
            "Choose a role of this account below."
        )
    return first, (
        f"is not a role Gatehouse knows in account {account.account_id} (the catalog is synced every 15 "
        "minutes). Choose the role below, or ask a Gatehouse admin to sync the catalog."
    )


def _starts_a_known_role(account: AwsAccount, reading: str) -> bool:
    """Whether ``reading`` is only the start of a role the catalog knows (a paste that stopped mid-ARN)."""
    arn = arns.parse(reading)
    starts = Q(arn__startswith=reading)
    if arn is not None and arn.resource == f"role/{arn.name}":
        starts |= Q(name__startswith=arn.name)  # IAM's short form names the role without its path
    return PassableRole.objects.filter(starts, account=account).exclude(arn=reading).exists()
