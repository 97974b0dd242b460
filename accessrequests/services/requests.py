"""The request workflow: submit, approve, deny, cancel, expire-unreviewed.

Each function is one transaction that changes a request's status under a row lock (or a conditional update)
and writes its audit event in the same transaction, so the loser of any race changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from accessrequests import audit, policy, rules, selectors
from accessrequests.models import (
    AccessLevel,
    AccessRequest,
    ApprovalRule,
    AwsAccount,
    Decision,
    DecisionOutcome,
    Delivery,
    Grant,
    PassableRole,
    PermissionSet,
    Pipeline,
    Principal,
    PrincipalKind,
    RequestKind,
    RequestStatus,
    Source,
)
from accessrequests.services import grants, notify
from accessrequests.services.statements import statements_for

MAX_JUSTIFICATION = 2000


class RequestError(Exception):
    """A request that cannot be filed or decided, with a message for the person who tried."""


class NotYourGrant(RequestError):
    """Only the requester of a grant may ask for it to be extended."""


def check_extendable(grant: Grant, user: Any) -> Grant:
    """The rule for extensions, for the pages and the API alike: only the grant's requester, only while it is live
    (an extension is a new request that keeps the access going without a gap)."""
    if grant.request.requester_id != getattr(user, "pk", None):
        raise NotYourGrant("Only the requester can extend a grant.")
    if not grant.is_live:
        raise RequestError(
            f"The grant of {grant.request.reference} is {grant.get_status_display().lower()}; "
            "file a new request instead."
        )
    return grant


def extension_fields(grant: Grant) -> dict[str, Any]:
    """What an extension asks for: the same access as the grant's request (the requester adds why and how long)."""
    old = grant.request
    return {
        "kind": old.kind,
        "account": old.account,
        "principal": old.principal,
        "pipelines": list(old.pipelines.all()),
        "level": old.level,
        "actions": list(old.actions),
        "stage": old.stage,
        "action_name": old.action_name,
        "pass_role": old.pass_role,
        "permission_set": old.permission_set,
        "trusted_account_id": old.trusted_account_id,
        "trusted_principal_arn": old.trusted_principal_arn,
        "external_id": old.external_id,
        "ticket": old.ticket,
    }


@dataclass
class RequestDraft:
    """Everything a requester chose; validated and turned into statements by ``prepare``."""

    principal: Principal
    kind: str
    account: AwsAccount
    pipelines: Sequence[Pipeline] = ()
    level: str = ""
    actions: Sequence[str] = ()
    stage: str = ""
    action_name: str = ""
    pass_role: PassableRole | None = None
    permission_set: PermissionSet | None = None
    trusted_account_id: str = ""
    trusted_principal_arn: str = ""
    external_id: str = ""
    justification: str = ""
    ticket: str = ""
    starts_at: datetime | None = None
    duration_hours: int | None = 8
    source: str = Source.FORM
    pasted_text: str = ""
    extends: Grant | None = None
    # filled by prepare()
    statements: list[dict[str, Any]] = field(default_factory=list)
    rule: ApprovalRule | None = None
    delivery: str = Delivery.IAM_POLICY


def _delivery_for(draft: RequestDraft) -> str:
    if draft.kind == RequestKind.CROSS_ACCOUNT:
        return Delivery.CROSS_ACCOUNT_ROLE
    if draft.principal.kind in (PrincipalKind.IC_USER, PrincipalKind.IC_GROUP):
        return Delivery.IDENTITY_CENTER
    return Delivery.IAM_POLICY


def _check_shape(draft: RequestDraft) -> None:
    if draft.kind not in RequestKind.values:
        raise RequestError("Choose what kind of access you need.")
    if not draft.account.enabled:
        raise RequestError(f"Account {draft.account} is not enabled in Gatehouse.")
    is_ic = draft.principal.kind in (PrincipalKind.IC_USER, PrincipalKind.IC_GROUP)
    if draft.kind == RequestKind.PERMISSION_SET:
        if not is_ic:
            raise RequestError("A permission set is assigned to an Identity Center user or group.")
        if draft.permission_set is None or not draft.permission_set.present:
            raise RequestError("Choose a permission set.")
    elif draft.kind in (RequestKind.PIPELINE, RequestKind.PASS_ROLE):
        if not is_ic and draft.principal.account_id != draft.account.pk:
            raise RequestError(
                f"{draft.principal} lives in another account; IAM access is granted in the principal's own account."
            )
    if draft.kind == RequestKind.PASS_ROLE:
        role = draft.pass_role
        if role is None or role.account_id != draft.account.pk:
            raise RequestError("Choose a role in this account.")
        if role.sensitive:
            raise RequestError(f"{role.name} is marked sensitive and cannot be requested through Gatehouse.")
        if not role.trusts_codepipeline:
            raise RequestError(
                f"{role.name} does not trust codepipeline.amazonaws.com, so CodePipeline could not use it; "
                "passing it would only widen access."
            )
        if not role.present:
            raise RequestError(f"{role.name} no longer exists in AWS.")
    if draft.kind in (RequestKind.PIPELINE, RequestKind.CROSS_ACCOUNT):
        for pipeline in draft.pipelines:
            if pipeline.account_id != draft.account.pk or not pipeline.present:
                raise RequestError(f"Pipeline {pipeline.name} is not in account {draft.account.account_id}.")
    if draft.kind == RequestKind.CROSS_ACCOUNT:
        if bool(draft.trusted_account_id) == bool(draft.trusted_principal_arn):
            raise RequestError("Name either the outside account id or the outside principal's ARN.")
        if draft.trusted_account_id == draft.account.account_id:
            raise RequestError("Cross-account access is for principals outside this account.")


def prepare(draft: RequestDraft) -> RequestDraft:
    """Validate a draft and compute its statements, rule and delivery; raises RequestError."""
    _check_shape(draft)
    justification = (draft.justification or "").strip()
    if not justification:
        raise RequestError("Say why you need this access (the justification is required).")
    if len(justification) > MAX_JUSTIFICATION:
        raise RequestError(f"Keep the justification under {MAX_JUSTIFICATION} characters.")
    draft.justification = justification
    try:
        draft.statements = statements_for(
            kind=draft.kind,
            account_id=draft.account.account_id,
            pipelines=list(draft.pipelines),
            level=draft.level,
            custom_actions=list(draft.actions),
            stage=draft.stage,
            action_name=draft.action_name,
            pass_role=draft.pass_role,
        )
        if draft.kind == RequestKind.CROSS_ACCOUNT:
            policy.cross_account_trust_policy(
                trusted_account_id=draft.trusted_account_id or None,
                trusted_principal_arn=draft.trusted_principal_arn or None,
                external_id=draft.external_id or None,
            )
        if draft.statements:
            # The portal's own checks here; parliament (47 MB of IAM data) runs in the worker before anything
            # is sent to AWS, which keeps the web processes small.
            policy.assert_valid(policy.render(draft.statements), lint=False)
    except policy.PolicyError as exc:
        raise RequestError(str(exc)) from None
    if draft.level != AccessLevel.CUSTOM:
        draft.actions = []
    draft.rule = rules.match_rule(
        account=draft.account, kind=draft.kind, level=draft.level, pipelines=list(draft.pipelines)
    )
    if draft.rule is None:
        raise RequestError(
            f"No approval rule covers {RequestKind(draft.kind).label.lower()} on account {draft.account}. "
            "Ask a Gatehouse admin to add one."
        )
    if draft.duration_hours is None:
        if not draft.rule.allow_permanent:
            raise RequestError(
                f"Permanent access is not allowed here; ask for at most {draft.rule.max_duration_hours} hours."
            )
    elif not 1 <= draft.duration_hours <= draft.rule.max_duration_hours:
        raise RequestError(
            f"Ask for between 1 and {draft.rule.max_duration_hours} hours "
            f"(the limit of the rule “{draft.rule.name}”{', contact ' + draft.rule.contact if draft.rule.contact else ''})."
        )
    now = timezone.now()
    if draft.starts_at is None or draft.starts_at < now:
        draft.starts_at = now
    if draft.starts_at > now + timedelta(days=90):
        raise RequestError("Start within the next 90 days.")
    draft.delivery = _delivery_for(draft)
    return draft


def _snapshot(req: AccessRequest) -> dict[str, Any]:
    return {
        "status": req.status,
        "kind": req.kind,
        "level": req.level,
        "principal": req.principal.external_id,
        "account": req.account.account_id,
        "statements": req.statements,
        "duration_hours": req.duration_hours,
        # What an auditor asks first: why, and under which ticket.
        "justification": req.justification,
        "ticket": req.ticket,
    }


def _audit(
    req: AccessRequest,
    action: str,
    *,
    actor,
    before=None,
    http_request=None,
    actor_label=None,
    decision: Decision | None = None,
) -> None:
    after = _snapshot(req)
    if decision is not None:
        after["decision"] = {
            "outcome": decision.outcome,
            "comment": decision.comment,
            "second_factor": audit.second_factor(http_request),
        }
    audit.record(
        action=action,
        object_type="access_request",
        object_id=req.pk,
        actor=actor,
        actor_label=actor_label,
        request_id=req.pk,
        principal_id=req.principal_id,
        account_id=req.account.account_id,
        before=before,
        after=after,
        http_request=http_request,
    )


def request_submit(*, requester, draft: RequestDraft, http_request=None) -> AccessRequest:
    """File a request; a low-risk one under an auto-approving rule is approved at once."""
    prepare(draft)
    assert draft.rule is not None and draft.starts_at is not None
    ends_at = (
        None if draft.duration_hours is None else draft.starts_at + timedelta(hours=draft.duration_hours)
    )
    with transaction.atomic():
        req = AccessRequest.objects.create(
            requester=requester,
            principal=draft.principal,
            on_behalf=not draft.principal.users.filter(pk=requester.pk).exists(),
            kind=draft.kind,
            account=draft.account,
            level=draft.level,
            actions=list(draft.actions),
            stage=draft.stage,
            action_name=draft.action_name,
            pass_role=draft.pass_role,
            permission_set=draft.permission_set,
            trusted_account_id=draft.trusted_account_id,
            trusted_principal_arn=draft.trusted_principal_arn,
            external_id=draft.external_id,
            statements=draft.statements,
            justification=draft.justification,
            ticket=draft.ticket.strip()[:100],
            starts_at=draft.starts_at,
            duration_hours=draft.duration_hours,
            ends_at=ends_at,
            delivery=draft.delivery,
            source=draft.source,
            pasted_text=draft.pasted_text[:20_000],
            rule=draft.rule,
            approvals_required=draft.rule.approvals_required,
            extends=draft.extends,
        )
        if draft.pipelines:
            req.pipelines.set(draft.pipelines)
        _audit(req, "request.created", actor=requester, http_request=http_request)
        if draft.rule.auto_approve_low_risk and rules.is_low_risk(
            account=draft.account, kind=draft.kind, level=draft.level
        ):
            AccessRequest.objects.filter(pk=req.pk).update(
                status=RequestStatus.APPROVED, decided_at=timezone.now()
            )
            req.refresh_from_db()
            _audit(req, "request.auto_approved", actor=None, actor_label=f"rule:{draft.rule.name}")
            grants.grant_create(request=req)
        notify.on_request_created(req)
    return req


def _locked(request_id: int) -> AccessRequest:
    return AccessRequest.objects.select_for_update().select_related("principal", "account").get(pk=request_id)


def _record_decision(request_id: int, reviewer, outcome: str, comment: str) -> tuple[AccessRequest, Decision]:
    """Lock the request, check the reviewer may decide it, and store their one decision (the database refuses
    a second one from the same reviewer, which is what a double-click or a replayed POST would be)."""
    req = _locked(request_id)
    reason = selectors.decision_block_reason(reviewer, req)
    if reason:
        raise RequestError(reason)
    try:
        with transaction.atomic():
            decision = Decision.objects.create(
                request=req, reviewer=reviewer, outcome=outcome, comment=comment.strip()[:2000]
            )
    except IntegrityError:
        raise RequestError("You have already decided this request.") from None
    return req, decision


def request_approve(*, request_id: int, reviewer, comment: str = "", http_request=None) -> AccessRequest:
    """Record one approval; the last one needed approves the request and creates its grant."""
    with transaction.atomic():
        req, decision = _record_decision(request_id, reviewer, DecisionOutcome.APPROVE, comment)
        before = _snapshot(req)
        approvals = req.decisions.filter(outcome=DecisionOutcome.APPROVE).count()
        _audit(req, "request.approval_recorded", actor=reviewer, http_request=http_request, decision=decision)
        if approvals >= req.approvals_required:
            updated = AccessRequest.objects.filter(pk=req.pk, status=RequestStatus.PENDING).update(
                status=RequestStatus.APPROVED, decided_at=timezone.now()
            )
            if updated != 1:  # cannot happen under the row lock; refuse rather than double-grant
                raise RequestError("This request changed while you were deciding it.")
            req.refresh_from_db()
            _audit(req, "request.approved", actor=reviewer, before=before, http_request=http_request)
            grants.grant_create(request=req)
            notify.on_request_decided(req)
    return req


def request_deny(*, request_id: int, reviewer, comment: str = "", http_request=None) -> AccessRequest:
    """One deny ends the request."""
    if not comment.strip():
        raise RequestError("Say why you deny it, so the requester can ask again better.")
    with transaction.atomic():
        req, decision = _record_decision(request_id, reviewer, DecisionOutcome.DENY, comment)
        before = _snapshot(req)
        AccessRequest.objects.filter(pk=req.pk, status=RequestStatus.PENDING).update(
            status=RequestStatus.DENIED, decided_at=timezone.now()
        )
        req.refresh_from_db()
        _audit(
            req, "request.denied", actor=reviewer, before=before, http_request=http_request, decision=decision
        )
        notify.on_request_decided(req)
    return req


def request_cancel(*, request_id: int, requester, http_request=None) -> AccessRequest:
    """The requester withdraws a pending request."""
    with transaction.atomic():
        req = _locked(request_id)
        if req.requester_id != requester.pk:
            raise RequestError("Only the requester can cancel a request.")
        if req.status != RequestStatus.PENDING:
            raise RequestError(
                f"This request is {req.get_status_display().lower()}; only pending requests can be cancelled."
            )
        before = _snapshot(req)
        AccessRequest.objects.filter(pk=req.pk, status=RequestStatus.PENDING).update(
            status=RequestStatus.CANCELLED, decided_at=timezone.now()
        )
        req.refresh_from_db()
        _audit(req, "request.cancelled", actor=requester, before=before, http_request=http_request)
    return req


def requests_expire_unreviewed(*, older_than: timedelta) -> int:
    """Close requests that waited too long for review (a periodic sweep); returns how many."""
    cutoff = timezone.now() - older_than
    expired = 0
    for pk in AccessRequest.objects.filter(status=RequestStatus.PENDING, created_at__lt=cutoff).values_list(
        "pk", flat=True
    )[:500]:
        with transaction.atomic():
            req = _locked(pk)
            if req.status != RequestStatus.PENDING:
                continue
            before = _snapshot(req)
            AccessRequest.objects.filter(pk=pk, status=RequestStatus.PENDING).update(
                status=RequestStatus.EXPIRED, decided_at=timezone.now()
            )
            req.refresh_from_db()
            _audit(req, "request.expired_unreviewed", actor=None, before=before)
            expired += 1
    return expired
