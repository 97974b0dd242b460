"""Multi-account requests: the same access in several accounts, filed, reviewed and decided together.

A batch is one request per account (``AccessRequest.batch``): each is checked and routed by its own account's
approval rule (a production account needs the production rule's approvals, whatever the others need), applied as
its own grant, and revoked on its own. Filing is all or nothing: if any account cannot take the request, none is
filed and the message names the account. Deciding the batch decides each member the reviewer may decide, with
one second factor; the members their rules do not cover wait for their own approvers.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

from django.db import transaction

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.authz.permissions import SecondFactor
from accessrequests.authz.selectors import units_under
from accessrequests.models import (
    AccessRequest,
    AwsAccount,
    OrganizationalUnit,
    PassableRole,
    Pipeline,
    PrincipalKind,
    RequestBatch,
    RequestKind,
    RequestStatus,
)
from accessrequests.workflow.requests import (
    RequestDraft,
    RequestError,
    eligibility_problem_for,
    prepare,
    request_approve,
    request_deny,
    request_submit,
)

MAX_ACCOUNTS = 50
# An IAM principal lives in one account, and a cross-account role is kept beside one: only access that an
# Identity Center user or group receives can be the same in many accounts.
MULTI_ACCOUNT_KINDS = (RequestKind.PIPELINE, RequestKind.PASS_ROLE, RequestKind.PERMISSION_SET)


def _for_account(draft: RequestDraft, account: AwsAccount) -> RequestDraft:
    """The same access in ``account``: pipelines by name and region, the role by name; errors name the account."""
    member = dataclasses.replace(
        draft, account=account, notes=[], statements=[], rule=None, passed=set(), prepared=False
    )
    if draft.pipelines:
        wanted = {(p.region, p.name) for p in draft.pipelines}
        found = list(Pipeline.objects.filter(account=account, present=True, name__in={n for _, n in wanted}))
        mapped = [p for p in found if (p.region, p.name) in wanted]
        missing = sorted(n for r, n in wanted if (r, n) not in {(p.region, p.name) for p in mapped})
        if missing:
            raise RequestError(
                f"Account {account} has no pipeline {', '.join(missing)}; leave it out of this request."
            )
        member.pipelines = mapped
    if draft.pass_role is not None:
        role = PassableRole.objects.filter(account=account, name=draft.pass_role.name, present=True).first()
        if role is None:
            raise RequestError(f"Account {account} has no role {draft.pass_role.name} to pass; leave it out.")
        member.pass_role = role
    return member


def batch_problem(draft: RequestDraft, accounts: Sequence[AwsAccount]) -> str | None:
    if len(accounts) < 2:
        return "A multi-account request names at least two accounts."
    if len(accounts) > MAX_ACCOUNTS:
        return f"Ask for at most {MAX_ACCOUNTS} accounts at once."
    if draft.kind not in MULTI_ACCOUNT_KINDS or draft.principal.kind not in (
        PrincipalKind.IC_USER,
        PrincipalKind.IC_GROUP,
    ):
        return (
            "The same access in several accounts is for an Identity Center user or group (an IAM principal lives "
            "in one account); choose your Identity Center user."
        )
    if draft.extends is not None:
        return "An extension continues one grant; extend each account's grant on its own."
    return None


def members_of(
    draft: RequestDraft, accounts: Sequence[AwsAccount], *, requester, preview: bool = False
) -> list[RequestDraft]:
    """One prepared draft per account (each with its own rule); raises RequestError naming the account, or
    NotAllowed naming the account and the eligibility rule that leaves ``requester`` out there."""
    problem = batch_problem(draft, accounts)
    if problem:
        raise RequestError(problem)
    members = []
    for account in accounts:
        member = _for_account(draft, account)
        eligibility = eligibility_problem_for(requester, member)
        if eligibility:
            raise permissions.NotAllowed(f"In account {account}: {eligibility}")
        member.passed.add(("eligibility", requester.pk, account.pk))
        try:
            prepare(member, preview=preview)
        except RequestError as exc:
            raise RequestError(f"In account {account}: {exc}") from None
        members.append(member)
    return members


def with_unit(requester, accounts: Sequence[AwsAccount], unit: OrganizationalUnit | None) -> list[AwsAccount]:
    """``accounts`` and every account of ``unit`` (and the units below it) as the catalog holds them now:
    enabled, still in the organization, and each one the requester may ask for access in. A unit that would
    take the request past ``MAX_ACCOUNTS`` is refused whole rather than cut short."""
    accounts = list(dict.fromkeys(accounts))
    if unit is None:
        return accounts
    if not unit.present:
        raise RequestError(f"The organizational unit {unit} is no longer in the organization.")
    in_unit = [
        account
        for account in AwsAccount.objects.filter(units_under(unit), enabled=True, present=True).order_by(
            "name"
        )[: MAX_ACCOUNTS + 1]
        if permissions.account_problem(requester, account) is None
    ]
    if not in_unit:
        raise RequestError(f"The organizational unit {unit} has no account you can ask for access in.")
    combined = list(dict.fromkeys([*accounts, *in_unit]))
    if len(combined) > MAX_ACCOUNTS:
        raise RequestError(
            f"{unit} and the accounts named come to more than {MAX_ACCOUNTS} accounts; ask for a smaller unit "
            "or fewer accounts at once."
        )
    return combined


def batch_submit(
    *,
    requester,
    draft: RequestDraft,
    accounts: Sequence[AwsAccount],
    unit: OrganizationalUnit | None = None,
    http_request=None,
) -> RequestBatch:
    """File the same access in every account of ``accounts`` and of ``unit`` (expanded now, at filing time),
    all or nothing. Each account's own rule routes its request, and each must be one the requester may ask
    for access in."""
    accounts = with_unit(requester, accounts, unit)
    for account in accounts:
        permissions.check(permissions.account_problem(requester, account))
    members = members_of(draft, accounts, requester=requester)
    for member in members:
        member.passed.add(("account", requester.pk, member.account.pk))
    with transaction.atomic():
        batch = RequestBatch.objects.create(requester=requester)
        filed = []
        for member in members:
            try:
                filed.append(
                    request_submit(requester=requester, draft=member, http_request=http_request, batch=batch)
                )
            except RequestError as exc:
                raise RequestError(f"In account {member.account}: {exc}") from None
            except permissions.NotAllowed as exc:
                raise permissions.NotAllowed(f"In account {member.account}: {exc}") from None
        audit.record(
            action="batch.created",
            object_type="request_batch",
            object_id=batch.pk,
            actor=requester,
            after={
                "requests": [r.reference for r in filed],
                "accounts": [a.account_id for a in accounts],
                **({"unit": unit.ou_id} if unit is not None else {}),
            },
            http_request=http_request,
        )
    return batch


@dataclass
class BatchOutcome:
    decided: list[AccessRequest] = field(default_factory=list)
    left: dict[str, str] = field(default_factory=dict)  # reference -> why this reviewer did not decide it


def _decide(
    batch_id: int, reviewer, second_factor: SecondFactor | None, comment: str, approve: bool, http_request
) -> BatchOutcome:
    permissions.check(permissions.second_factor_problem(reviewer, second_factor))
    outcome = BatchOutcome()
    members = (
        AccessRequest.objects.filter(batch_id=batch_id)
        .select_related("principal", "account", "rule")
        .order_by("pk")
    )
    for member in members:
        if member.status != RequestStatus.PENDING:
            continue
        problem = permissions.decide_problem(reviewer, member)
        if problem:
            outcome.left[member.reference] = problem
            continue
        service = request_approve if approve else request_deny
        try:
            outcome.decided.append(
                service(
                    request_id=member.pk,
                    reviewer=reviewer,
                    second_factor=second_factor,
                    comment=comment,
                    http_request=http_request,
                )
            )
        except (RequestError, permissions.NotAllowed) as exc:
            outcome.left[member.reference] = str(exc)
    if not outcome.decided:
        raise permissions.NotAllowed(
            "You can decide none of this request's accounts: "
            + "; ".join(f"{ref}: {why}" for ref, why in outcome.left.items())
            if outcome.left
            else "Nothing in this request is pending."
        )
    return outcome


def batch_approve(
    *, batch_id: int, reviewer, second_factor: SecondFactor | None, comment: str = "", http_request=None
) -> BatchOutcome:
    """Approve every pending member of the batch this reviewer may decide; the rest wait for their approvers."""
    return _decide(batch_id, reviewer, second_factor, comment, True, http_request)


def batch_deny(
    *, batch_id: int, reviewer, second_factor: SecondFactor | None, comment: str = "", http_request=None
) -> BatchOutcome:
    if not comment.strip():
        raise RequestError("Say why you deny it, so the requester can ask again better.")
    return _decide(batch_id, reviewer, second_factor, comment, False, http_request)
