"""What changes in AWS if a request is approved: one model for every kind, shown by one template.

The approver's screen is the product's promise ("what an approver sees is what AWS gets"), so the change is
computed from what AWS holds now (a quick live read of the principal's Gatehouse-owned policy, permission set or
assignments) and, only when AWS cannot be read, from what Gatehouse last applied (said so on the page):

- pipeline and PassRole access for an IAM user, role or group: the principal's Gatehouse policy before and after;
- the same for an Identity Center user or group: Gatehouse's permission set for that principal, before and after,
  and its assignment;
- a permission set: the assignment to add (or the truth that it is already held), the set's own policies and
  risk class, and who it reaches;
- cross-account access: the role to be created, its trust policy, its permissions and who can assume it. Nothing
  changes on the requester's own principal, and such a grant never shows up as part of it.
"""

from __future__ import annotations

import difflib
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from accessrequests.authz import recipients
from accessrequests.authz.recipients import Recipient
from accessrequests.aws import iam
from accessrequests.aws import identity_center as ic
from accessrequests.aws.config import quick_reads
from accessrequests.aws.errors import AwsOperationError
from accessrequests.models import (
    AccessRequest,
    Delivery,
    Grant,
    GrantStatus,
    ManagedAssignment,
    PermissionSet,
    RequestKind,
)
from accessrequests.policy import documents as policy

logger = logging.getLogger(__name__)

_READ_ERRORS = (ClientError, BotoCoreError, AwsOperationError, ValueError, OSError)


@dataclass
class Document:
    title: str
    body: str  # pretty JSON or a list, ready for a <pre>


@dataclass
class Change:
    """Everything the review and request pages say about the effect in AWS."""

    summary: str  # one sentence: what happens
    target: str  # where: "the inline policy gatehouse of IAM user mateojackson in 123456789012"
    no_change: bool = False
    source: str = "aws"  # "aws": read from AWS just now; "gatehouse": what Gatehouse last applied
    source_note: str = ""
    before: str | None = None  # pretty JSON of what the target holds today (policy kinds)
    after: str | None = None
    lines: list[tuple[str, str]] = field(default_factory=list)  # the diff, (css class, line)
    documents: list[Document] = field(default_factory=list)  # trust policy, set policies, ...
    facts: list[tuple[str, str]] = field(default_factory=list)
    recipients: list[Recipient] = field(default_factory=list)
    risk: str = ""  # "privileged" for a privileged permission set
    risk_reasons: list[str] = field(default_factory=list)
    allows: list[policy.Allowance] = field(default_factory=list)  # this request's statements in words


def _pretty(statements: list[dict[str, Any]]) -> str:
    return policy.pretty(statements) or "(nothing)"


def _diff(before: str, after: str) -> list[tuple[str, str]]:
    lines = []
    for line in difflib.unified_diff(
        before.splitlines(), after.splitlines(), "today", "after approval", n=3, lineterm=""
    ):
        if line.startswith(("---", "+++")):
            continue
        css = "diff-add" if line.startswith("+") else "diff-del" if line.startswith("-") else ""
        lines.append((css, line))
    return lines


def _statements_of(documents: list[str | None]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for document in documents:
        if document:
            found += policy.as_statements(json.loads(document))
    return found


def _applied_statements(req: AccessRequest, delivery: str) -> list[dict[str, Any]]:
    """What Gatehouse has applied or is applying to the principal through ``delivery`` (this request excluded)."""
    statements: list[dict[str, Any]] = []
    active = Grant.objects.filter(
        principal=req.principal,
        account=req.account,
        delivery=delivery,
        status__in=[GrantStatus.QUEUED, GrantStatus.APPLYING, GrantStatus.ACTIVE],
    ).exclude(request=req)
    for held in active.values_list("statements", flat=True):
        statements += held
    return statements


def _policy_change(req: AccessRequest, target: str, before: list[dict[str, Any]], source: str) -> Change:
    # Nothing held today is an empty "before": the diff is then every line added, with no "(nothing)" removed.
    before_text = _pretty(policy.coalesce(before)) if before else ""
    after_text = _pretty(policy.coalesce([*before, *req.statements]))
    return Change(
        summary="Adds these statements to the principal's Gatehouse policy.",
        target=target,
        no_change=before_text == after_text,
        source=source,
        before=before_text,
        after=after_text,
        lines=_diff(before_text, after_text),
    )


def _iam_policy(req: AccessRequest) -> Change:
    from accessrequests.provisioning.delivery import iam_target

    target = iam_target(req.principal, req.account)
    where = f"the Gatehouse policy ({iam.INLINE_POLICY_NAME}, and spill policies if any) of {target}"
    try:
        with quick_reads():
            held = iam.read_policies(target)
        inline, managed = held.documents()
        return _policy_change(req, where, _statements_of([inline, *managed]), "aws")
    except _READ_ERRORS as exc:
        change = _policy_change(req, where, _applied_statements(req, Delivery.IAM_POLICY), "gatehouse")
        change.source_note = f"AWS could not be read just now ({_short(exc)}); this is what Gatehouse has applied or is applying."
        return change


def _identity_center_instance(req: AccessRequest) -> ic.Instance:
    center = req.principal.identity_center
    assert center is not None  # Identity Center principals always have one (a database constraint)
    return ic.Instance(instance_arn=center.instance_arn, region=center.region)


def _where(req: AccessRequest) -> dict[str, str]:
    return {
        "account_id": req.account.account_id,
        "principal_type": ic.PRINCIPAL_TYPES[req.principal.kind],
        "principal_id": req.principal.external_id,
    }


def _identity_center_policy(req: AccessRequest) -> Change:
    name = ic.portal_permission_set_name(req.principal.pk, req.account.account_id)
    where = f"Gatehouse's permission set {name} for {req.principal.label}, assigned in account {req.account.account_id}"
    own = PermissionSet.objects.filter(
        name=name, portal_owned=True, identity_center=req.principal.identity_center
    ).first()
    try:
        with quick_reads():
            document = ic.inline_policy(_identity_center_instance(req), own.arn) if own else None
        change = _policy_change(req, where, _statements_of([document]), "aws")
    except _READ_ERRORS as exc:
        change = _policy_change(req, where, _applied_statements(req, Delivery.IDENTITY_CENTER), "gatehouse")
        change.source_note = f"AWS could not be read just now ({_short(exc)}); this is what Gatehouse has applied or is applying."
    change.summary = "Adds these statements to the permission set Gatehouse keeps for this principal" + (
        "." if own else ", which Gatehouse creates and assigns in this account."
    )
    return change


def _permission_set(req: AccessRequest) -> Change:
    chosen = req.permission_set
    assert chosen is not None  # a permission-set request always names one
    principal = req.principal
    source, note, held, holds = "aws", "", False, set()
    try:
        with quick_reads():
            holds = ic.assigned_permission_sets(_identity_center_instance(req), **_where(req))
        held = chosen.arn in holds
    except _READ_ERRORS as exc:
        source = "gatehouse"
        note = f"AWS could not be read just now ({_short(exc)}); this is what Gatehouse has applied or is applying."
        holds = set(
            ManagedAssignment.objects.filter(
                principal=principal, account_id=req.account.account_id
            ).values_list("permission_set_arn", flat=True)
        )
        held = chosen.arn in holds
    who = f"{principal.get_kind_display()} {principal.label}"
    change = Change(
        summary=(
            f"No change: {who} already holds {chosen.name} in account {req.account.account_id}"
            " (Gatehouse will not remove an assignment it did not make)."
            if held
            else f"Assigns the permission set {chosen.name} to {who} in account {req.account.account_id}."
        ),
        target=f"Identity Center assignment of {chosen.name} in {req.account}",
        no_change=held,
        source=source,
        source_note=note,
        risk=chosen.risk,
        risk_reasons=list(chosen.risk_reasons),
    )
    names = dict(PermissionSet.objects.filter(arn__in=holds).values_list("arn", "name"))
    change.facts.append(
        (
            f"Holds in account {req.account.account_id} now",
            ", ".join(sorted(names.get(arn, arn.rsplit("/", 1)[-1]) for arn in holds)) or "nothing",
        )
    )
    if chosen.description:
        change.facts.append(("What the set is for", chosen.description))
    managed = [arn.rsplit("/", 1)[-1] for arn in chosen.managed_policies]
    change.documents.append(
        Document("AWS managed policies of the set", "\n".join(managed) if managed else "(none)")
    )
    if chosen.customer_managed_policies:
        change.documents.append(
            Document("Customer managed policies it references", "\n".join(chosen.customer_managed_policies))
        )
    change.documents.append(Document("Inline policy of the set", _pretty_document(chosen.inline_policy)))
    return change


def _pretty_document(text: str) -> str:
    if not text:
        return "(none)"
    try:
        return json.dumps(json.loads(text), indent=2)
    except ValueError:
        return text


def _cross_account(req: AccessRequest) -> Change:
    role = iam.portal_role_name(req.reference)
    path = iam.role_path(req.principal.pk)
    boundary = iam.boundary_arn(req.account.account_id)
    trust = policy.cross_account_trust_policy(
        trusted_account_id=req.trusted_account_id or None,
        trusted_principal_arn=req.trusted_principal_arn or None,
        external_id=req.external_id or None,
    )
    arn = f"arn:aws:iam::{req.account.account_id}:role{path}{role}"
    command = f"aws sts assume-role --role-arn {arn} --role-session-name {req.reference}"
    if req.external_id:
        command += " --external-id <the external id you were given>"
    change = Change(
        summary=(
            f"Creates the role {role} in account {req.account.account_id}"
            + (f", capped by the permissions boundary {boundary.rsplit('/', 1)[-1]}" if boundary else "")
            + "; nothing else changes."
        ),
        target=f"a new IAM role {arn}",
        source="aws",
    )
    change.documents = [
        Document("Trust policy (who can assume it)", json.dumps(trust, indent=2)),
        Document("Permissions of the role", _pretty(policy.coalesce(req.statements))),
        Document("How the outside party uses it", command),
    ]
    return change


def change_for(req: AccessRequest) -> Change:
    """The effect in AWS of approving ``req`` (see the module docstring)."""
    if req.kind == RequestKind.CROSS_ACCOUNT:
        change = _cross_account(req)
    elif req.kind == RequestKind.PERMISSION_SET:
        change = _permission_set(req)
    elif req.delivery == Delivery.IDENTITY_CENTER:
        change = _identity_center_policy(req)
    else:
        change = _iam_policy(req)
    change.recipients = recipients.recipients_of(req)
    change.allows = policy.in_words(req.statements)
    return change


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160]


def how_to_use(grant: Grant) -> str:
    """One or two sentences for the requester: how to use the access this grant gives, for every kind."""
    from django.conf import settings

    req = grant.request
    account = f"{req.account.name} ({req.account.account_id})"
    if grant.delivery == Delivery.CROSS_ACCOUNT_ROLE:
        arn = grant.details.get("role_arn") or f"the role {iam.portal_role_name(req.reference)}"
        return (
            f"The outside party assumes {arn}: aws sts assume-role --role-arn {arn} "
            f"--role-session-name {req.reference}"
            + (" --external-id <the external id>" if req.external_id else "")
        )
    if grant.delivery == Delivery.IDENTITY_CENTER:
        set_name = (
            req.permission_set.name
            if req.permission_set
            else grant.details.get("permission_set_arn", "").rsplit("/", 1)[-1]
            or "the Gatehouse permission set"
        )
        portal = settings.GATEHOUSE_AWS_ACCESS_PORTAL_URL
        where = f"your AWS access portal ({portal})" if portal else "your AWS access portal"
        return f"Sign in to {where}, choose account {account} and the role {set_name}."
    principal = grant.principal
    return (
        f"The policy is on {principal.get_kind_display()} {principal.label} in account {account}: keep using its "
        "credentials as before (IAM takes up to a minute to apply a change)."
    )
