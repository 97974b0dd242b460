"""The request workflow: plan, submit, approve, deny, cancel, expire-unreviewed.

A draft is planned once per trip (``plan_request``): every filing rule entered once, the draft prepared (statements,
rule, limits), its duplicates found. The preview renders that plan and the submit commits it, so the two cannot
disagree, and the submit service plans a draft itself when nobody did.

Each function that changes state is one transaction that changes a request's status under a row lock (or a conditional update)
and writes its audit event in the same transaction, so the loser of any race changes nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions, recipients
from accessrequests.authz import routing as rules
from accessrequests.authz.permissions import SecondFactor
from accessrequests.core import plain_text
from accessrequests.core.wording import counted
from accessrequests.models import (
    LIVE_GRANT_STATUSES,
    AccessLevel,
    AccessRequest,
    ApprovalRule,
    AwsAccount,
    Decision,
    DecisionOutcome,
    Delivery,
    EligibilityRule,
    Environment,
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
from accessrequests.notify import hooks as notify
from accessrequests.policy import documents as policy
from accessrequests.policy.statements import StatementError, statements_for
from accessrequests.provisioning import grants

MAX_JUSTIFICATION = 2000
# How long access lasts when the requester does not say: this, or the rule's maximum where that is less.
DEFAULT_DURATION_HOURS = 8
# The free text of a request, as its problems name it: what an approver reads and decides on.
FREE_TEXT = {
    "justification": "The justification",
    "ticket": "The ticket reference",
    "stage": "The stage",
    "action_name": "The action name",
}


def free_text_problems(texts: dict[str, str | None]) -> dict[str, str]:
    """Each text (by its ``FREE_TEXT`` name) that holds a character that could disguise it, with why."""
    found = {name: plain_text.hidden_character_problem(FREE_TEXT[name], text) for name, text in texts.items()}
    return {name: problem for name, problem in found.items() if problem}


class RequestError(Exception):
    """A request that cannot be filed or decided as it is, with a message for the person who tried."""


def check_extendable(grant: Grant, user: Any) -> Grant:
    """The rule for extensions (``permissions.extend_problem``), for the pages and the API alike."""
    permissions.check(permissions.extend_problem(user, grant))
    return grant


# What makes two requests "the same access": an extension must match its grant on every one of these.
SAME_ACCESS_FIELDS = (
    "kind", "account", "principal", "pipelines", "level", "actions", "stage", "action_name", "pass_role",
    "permission_set", "trusted_account_id", "trusted_principal_arn", "external_id",
)  # fmt: skip


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
    # The requester did not say how long: ``prepare`` asks for DEFAULT_DURATION_HOURS, or the rule's maximum.
    default_duration: bool = False
    source: str = Source.FORM
    pasted_text: str = ""
    extends: Grant | None = None
    # filled by prepare()
    notes: list[str] = field(default_factory=list)
    statements: list[dict[str, Any]] = field(default_factory=list)
    rule: ApprovalRule | None = None
    delivery: str = Delivery.IAM_POLICY
    # What this trip has established, so no rule is entered twice on one trip: the (rule, user id, account id)
    # that passed (the draft builder checks the account; ``check_filing`` and ``plan_request`` the rest), and
    # whether ``prepare`` ran for filing. A draft copied for another account starts with neither.
    passed: set[tuple[str, int, int]] = field(default_factory=set)
    prepared: bool = False

    def as_unsaved_request(self) -> AccessRequest:
        """An unsaved request with what decides whom the access reaches (``accessrequests.authz.recipients``)."""
        return AccessRequest(
            kind=self.kind,
            principal=self.principal,
            trusted_account_id=self.trusted_account_id,
            trusted_principal_arn=self.trusted_principal_arn,
        )


def outside_party_problem(trusted_account_id: str, trusted_principal_arn: str) -> str | None:
    """A cross-account role trusts one outside party: an account (its administrators choose who may assume the
    role) or one principal's ARN."""
    if trusted_account_id and trusted_principal_arn:
        return (
            f"You named both an outside account ({trusted_account_id}) and an outside principal "
            f"({trusted_principal_arn}); name one. The account lets its administrators choose who may assume the "
            "role; the principal's ARN lets only that principal."
        )
    if not trusted_account_id and not trusted_principal_arn:
        return "Name who outside may assume the role: the outside account id, or the outside principal's ARN."
    return None


def settle_outside_party(draft: RequestDraft) -> None:
    """A cross-account request is for the outside party its role trusts, whatever principal a caller put in the
    draft: that party is who receives it, on the page, in the queue and in the audit trail."""
    if draft.kind != RequestKind.CROSS_ACCOUNT or outside_party_problem(
        draft.trusted_account_id, draft.trusted_principal_arn
    ):
        return
    party = {
        "trusted_account_id": draft.trusted_account_id,
        "trusted_principal_arn": draft.trusted_principal_arn,
    }
    kind, external_id, _ = Principal.outside_party_identity(**party)
    if (draft.principal.kind, draft.principal.external_id) != (kind, external_id):  # settled once per trip
        draft.principal = Principal.outside_party(**party)


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
    if not draft.account.present:
        raise RequestError(
            f"Account {draft.account} is no longer in the organization; access there cannot be asked for."
        )
    if draft.kind == RequestKind.CROSS_ACCOUNT:
        problem = outside_party_problem(draft.trusted_account_id, draft.trusted_principal_arn)
        if problem:
            raise RequestError(problem)
        trusted_account = draft.trusted_account_id or policy.arn_account(draft.trusted_principal_arn)
        if trusted_account == draft.account.account_id:
            raise RequestError(
                f"Cross-account access is for principals outside account {draft.account.account_id}; "
                f"{draft.trusted_principal_arn or trusted_account} is in it. Ask for pipeline access for that "
                "principal instead, where its own links and approvals apply."
            )
    is_ic = draft.principal.kind in (PrincipalKind.IC_USER, PrincipalKind.IC_GROUP)
    if draft.kind == RequestKind.PERMISSION_SET:
        if not is_ic:
            raise RequestError("A permission set is assigned to an Identity Center user or group.")
        if draft.permission_set is None or not draft.permission_set.present:
            raise RequestError("Choose a permission set.")
        if draft.permission_set.portal_owned:
            raise RequestError(
                "Gatehouse's own permission sets carry approved policies; they are not requestable."
            )
    elif (
        draft.kind != RequestKind.CROSS_ACCOUNT
        and not is_ic
        and draft.principal.account_id != draft.account.pk
    ):
        # An IAM principal's policies only work in its own account (and the portal-owned cross-account role is
        # kept beside it there); elsewhere the grant could never be delivered.
        raise RequestError(
            f"{draft.principal} lives in account {draft.principal.account.account_id if draft.principal.account else '?'}; "
            f"IAM access is granted in the principal's own account. For account {draft.account.account_id}, "
            "choose your Identity Center user or ask for a cross-account role there."
        )
    if draft.kind in (RequestKind.PIPELINE, RequestKind.CROSS_ACCOUNT):
        for pipeline in draft.pipelines:
            if pipeline.account_id != draft.account.pk or not pipeline.present:
                raise RequestError(f"Pipeline {pipeline.name} is not in account {draft.account.account_id}.")


def _outside_party_decides(asked: dict[str, Any], held: dict[str, Any]) -> None:
    """Cross-account access is the same access when it trusts the same outside party (compared as
    ``trusted_account_id`` and ``trusted_principal_arn``), whichever principal a request of an older release
    was filed for."""
    if asked["kind"] == held["kind"] == RequestKind.CROSS_ACCOUNT:
        asked["principal"] = held["principal"] = None


def _check_same_access(draft: RequestDraft) -> None:
    """An extension continues its grant: exactly the same access (different access is a new request)."""
    if draft.extends is None:
        return
    same = extension_fields(draft.extends)
    asked = {name: getattr(draft, name) for name in SAME_ACCESS_FIELDS}
    asked["pipelines"] = sorted(p.pk for p in asked["pipelines"])
    same["pipelines"] = sorted(p.pk for p in same["pipelines"])
    asked["actions"], same["actions"] = sorted(asked["actions"]), sorted(same["actions"])
    _outside_party_decides(asked, same)
    different = [
        name for name in SAME_ACCESS_FIELDS if asked[name] != same[name] and (asked[name] or same[name])
    ]
    if different:
        raise RequestError(
            f"An extension asks for the same access as {draft.extends.request.reference}; this one changes "
            f"{', '.join(name.replace('_', ' ') for name in different)}. File a new request for different access."
        )


def prepare(draft: RequestDraft, *, preview: bool = False) -> RequestDraft:
    """Validate a draft and compute its statements, rule and delivery; raises RequestError.

    ``preview``: what the form shows while the requester is still choosing: no justification needed yet, and a
    duration beyond the rule's maximum is brought down to it (with a note) instead of refused.
    """
    settle_outside_party(draft)
    _check_shape(draft)
    _check_same_access(draft)
    for problem in free_text_problems({name: getattr(draft, name) for name in FREE_TEXT}).values():
        raise RequestError(problem)
    # A pasted error is what a terminal or a web page printed, zero-width characters and all: the parser reads it
    # without them, and it is kept without them (nobody typed them, and none may disguise it to the approver).
    draft.pasted_text = plain_text.without_hidden_characters(draft.pasted_text or "")
    justification = (draft.justification or "").strip()
    if not justification and not preview:
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
            account=draft.account,
        )
        if draft.kind == RequestKind.CROSS_ACCOUNT:
            policy.cross_account_trust_policy(
                trusted_account_id=draft.trusted_account_id or None,
                trusted_principal_arn=draft.trusted_principal_arn or None,
                external_id=draft.external_id or None,
                role_account_id=draft.account.account_id,
            )
        if draft.statements:
            # The portal's own checks here; parliament (47 MB of IAM data) runs in the worker before anything
            # is sent to AWS, which keeps the web processes small.
            policy.assert_valid(policy.render(draft.statements), lint=False)
    except (policy.PolicyError, StatementError) as exc:
        raise RequestError(str(exc)) from None
    if draft.level != AccessLevel.CUSTOM:
        draft.actions = []
    draft.rule = rules.match_rule(
        account=draft.account,
        kind=draft.kind,
        level=draft.level,
        pipelines=list(draft.pipelines),
        permission_set=draft.permission_set if draft.kind == RequestKind.PERMISSION_SET else None,
    )
    if draft.rule is None:
        privileged = (
            draft.kind == RequestKind.PERMISSION_SET
            and draft.permission_set is not None
            and draft.permission_set.is_privileged
            and draft.account.environment != Environment.UNKNOWN
        )
        if privileged:
            assert draft.permission_set is not None
            raise RequestError(
                f"{draft.permission_set.name} is a privileged permission set ("
                + "; ".join(draft.permission_set.risk_reasons or ["its policies are not known yet"])
                + f") and no approval rule for account {draft.account} opts in to privileged sets. "
                "Ask a Gatehouse admin."
            )
        # Fails closed: an account whose environment is unknown is refused here rather than routed by a catch-all.
        raise RequestError(rules.unrouted_reason(account=draft.account, kind=draft.kind))
    limit = draft.rule.max_duration_hours
    if draft.default_duration:
        draft.duration_hours = min(DEFAULT_DURATION_HOURS, limit)
        if limit < DEFAULT_DURATION_HOURS:
            draft.notes.append(
                f"The usual {counted(DEFAULT_DURATION_HOURS, 'hour')} brought down to {counted(limit, 'hour')}, "
                f"the most the rule “{draft.rule.name}” allows."
            )
    elif preview and (
        (draft.duration_hours is None and not draft.rule.allow_permanent)
        or (draft.duration_hours or 0) > limit
    ):
        draft.duration_hours = limit
        draft.notes.append(
            f"Duration set to {counted(limit, 'hour')}, the most the rule “{draft.rule.name}” allows."
        )
    if draft.duration_hours is None:
        if not draft.rule.allow_permanent:
            raise RequestError(
                f"Permanent access is not allowed here; ask for at most {counted(draft.rule.max_duration_hours, 'hour')}."
            )
    elif not 1 <= draft.duration_hours <= draft.rule.max_duration_hours:
        raise RequestError(
            f"Ask for between 1 and {counted(draft.rule.max_duration_hours, 'hour')} "
            f"(the limit of the rule “{draft.rule.name}”{', contact ' + draft.rule.contact if draft.rule.contact else ''})."
        )
    now = timezone.now()
    if draft.starts_at is None or draft.starts_at < now:
        draft.starts_at = now
    if draft.starts_at > now + timedelta(days=90):
        raise RequestError("Start within the next 90 days.")
    draft.delivery = _delivery_for(draft)
    draft.prepared = not preview
    return draft


@dataclass(frozen=True)
class Duplicate:
    """A request of the same requester for the same access that is still pending, or whose grant is live."""

    request: AccessRequest
    live: bool

    @property
    def message(self) -> str:
        if self.live:
            ends = self.request.grant.expires_at
            until = f" until {ends:%Y-%m-%d %H:%M} UTC" if ends else ""
            return f"You already hold exactly this access{until} through {self.request.reference}; extend it instead."
        return f"You already asked for exactly this access in {self.request.reference}, which is pending."


def _same_access(req: AccessRequest, draft: RequestDraft) -> bool:
    asked = {name: getattr(draft, name) for name in SAME_ACCESS_FIELDS}
    held = {name: getattr(req, name) for name in SAME_ACCESS_FIELDS}
    asked["pipelines"] = sorted(p.pk for p in draft.pipelines)
    held["pipelines"] = sorted(p.pk for p in req.pipelines.all())
    asked["actions"], held["actions"] = sorted(asked["actions"]), sorted(held["actions"])
    _outside_party_decides(asked, held)
    return all(asked[name] == held[name] or not (asked[name] or held[name]) for name in SAME_ACCESS_FIELDS)


def find_duplicates(requester, draft: RequestDraft) -> list[Duplicate]:
    """Pending requests and live grants of ``requester`` for the same access as ``draft`` (an extension's own
    grant excepted)."""
    same_party = (
        Q(trusted_account_id=draft.trusted_account_id, trusted_principal_arn=draft.trusted_principal_arn)
        if draft.kind == RequestKind.CROSS_ACCOUNT
        else Q(principal=draft.principal)
    )
    candidates = (
        AccessRequest.objects.filter(same_party, requester=requester, account=draft.account, kind=draft.kind)
        .filter(
            Q(status=RequestStatus.PENDING)
            | Q(status=RequestStatus.APPROVED, grant__status__in=LIVE_GRANT_STATUSES)
        )
        .select_related("grant")
        .prefetch_related("pipelines")
        .order_by("-created_at")[:20]
    )
    found = []
    for req in candidates:
        if draft.extends is not None and req.pk == draft.extends.request_id:
            continue
        if _same_access(req, draft):
            found.append(Duplicate(request=req, live=req.status == RequestStatus.APPROVED))
    return found


def eligibility_problem_for(
    requester, draft: RequestDraft | AccessRequest, *, rules: list[EligibilityRule] | None = None
) -> str | None:
    """``permissions.eligibility_problem`` for what a draft or a filed request asks (the permission set only for
    that kind); ``rules``: the eligibility rules, when the caller read them already."""
    return permissions.eligibility_problem(
        requester,
        kind=draft.kind,
        account=draft.account,
        permission_set=draft.permission_set if draft.kind == RequestKind.PERMISSION_SET else None,
        rules=rules,
    )


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


def record_request_event(
    req: AccessRequest,
    action: str,
    *,
    actor,
    before=None,
    http_request=None,
    actor_label=None,
    decision: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    after = _snapshot(req)
    if decision is not None:
        after["decision"] = decision
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
        after={**after, **(extra or {})},
        http_request=http_request,
    )


def enter_rule(draft: RequestDraft, rule: str, user, problem: Callable[[], str | None]) -> None:
    """Raise NotAllowed with ``problem()`` unless ``rule`` already passed for ``user`` and the draft's account on
    this trip."""
    key = (rule, user.pk, draft.account.pk)
    if key in draft.passed:
        return
    permissions.check(problem())
    draft.passed.add(key)


def check_filing(requester, draft: RequestDraft) -> None:
    """What every filing checks, a normal request or break-glass: the principal is the requester's to ask for,
    the account is one they may ask for access in, and no eligibility rule leaves them out (nor anyone else the
    access reaches). Each rule once per trip."""
    settle_outside_party(draft)
    enter_rule(
        draft, "file", requester, lambda: permissions.file_problem(requester, principal=draft.principal)
    )
    enter_rule(draft, "account", requester, lambda: permissions.account_problem(requester, draft.account))
    rules = functools.cache(permissions.eligibility_rules)  # read once, by whichever of the two checks runs
    enter_rule(
        draft, "eligibility", requester, lambda: eligibility_problem_for(requester, draft, rules=rules())
    )
    enter_rule(
        draft, "recipients", requester, lambda: _recipients_eligibility_problem(requester, draft, rules())
    )


@dataclass
class RequestPlan:
    """What filing ``draft`` would do, worked out once: the prepared draft (statements, rule, duration, delivery),
    the refusal if a rule or a check says no, and the live or pending requests for the same access."""

    requester_id: int
    draft: RequestDraft
    preview: bool
    refusal: RequestError | permissions.NotAllowed | None = None
    duplicates: list[Duplicate] = field(default_factory=list)

    @property
    def problem(self) -> str | None:
        return str(self.refusal) if self.refusal is not None else None

    def raise_refusal(self) -> None:
        if self.refusal is not None:
            raise self.refusal
        if self.duplicates:
            raise RequestError(self.duplicates[0].message)


def plan_request(requester, draft: RequestDraft, *, preview: bool = False) -> RequestPlan:
    """Plan filing ``draft`` for ``requester``: the filing rules, the extension rule, ``prepare`` and the duplicate
    search, each once. ``preview``: what the form shows while the requester is still choosing (``prepare``)."""
    plan = RequestPlan(requester_id=requester.pk, draft=draft, preview=preview)
    try:
        check_filing(requester, draft)
        if draft.extends is not None:
            extends = draft.extends
            enter_rule(draft, "extend", requester, lambda: permissions.extend_problem(requester, extends))
        if preview or not draft.prepared:
            prepare(draft, preview=preview)
    except (RequestError, permissions.NotAllowed) as exc:
        plan.refusal = exc
        return plan
    plan.duplicates = find_duplicates(requester, draft)
    return plan


def _recipients_eligibility_problem(
    requester, draft: RequestDraft, rules: list[EligibilityRule]
) -> str | None:
    """Eligibility binds whoever the access reaches, not only whoever asks: an admin filing on someone's behalf
    (or for a group, or a role someone else can assume) cannot hand access to a person a rule leaves out."""
    if not rules:
        return None
    others = recipients.recipient_user_ids(draft.as_unsaved_request()) - {requester.pk}
    permission_set = draft.permission_set if draft.kind == RequestKind.PERMISSION_SET else None
    for user in get_user_model().objects.filter(pk__in=others, is_active=True).order_by("username"):
        problem = permissions.eligibility_problem(
            user, kind=draft.kind, account=draft.account, permission_set=permission_set, rules=rules
        )
        if problem:
            return f"This access would reach {user.get_username()}, who is " + problem.replace(
                "You are not eligible", "not eligible", 1
            ).replace(" Ask a Gatehouse admin if you need it.", "")
    return None


def create_from_draft(requester, draft: RequestDraft, **fields) -> AccessRequest:
    """The request row for a prepared ``draft`` (``fields`` add to or override it), with its pipelines: the one
    place that turns a draft into a request, for normal filing and break-glass alike."""
    assert draft.rule is not None
    if draft.principal.pk is None:  # an outside party named for the first time
        draft.principal, _ = Principal.objects.get_or_create(
            kind=draft.principal.kind,
            external_id=draft.principal.external_id,
            defaults={"name": draft.principal.name},
        )
    values = {
        "requester": requester,
        "principal": draft.principal,
        "on_behalf": not recipients.linked_to_all(draft.as_unsaved_request(), requester),
        "kind": draft.kind,
        "account": draft.account,
        "level": draft.level,
        "actions": list(draft.actions),
        "stage": draft.stage,
        "action_name": draft.action_name,
        "pass_role": draft.pass_role,
        "permission_set": draft.permission_set,
        "trusted_account_id": draft.trusted_account_id,
        "trusted_principal_arn": draft.trusted_principal_arn,
        "external_id": draft.external_id,
        "statements": draft.statements,
        "justification": draft.justification,
        "ticket": draft.ticket.strip()[:100],
        "starts_at": draft.starts_at,
        "duration_hours": draft.duration_hours,
        "delivery": draft.delivery,
        "source": draft.source,
        "pasted_text": draft.pasted_text[:20_000],
        "rule": draft.rule,
        "approvals_required": draft.rule.approvals_required,
        **fields,
    }
    req = AccessRequest.objects.create(**values)
    if draft.pipelines:
        req.pipelines.add(*draft.pipelines)  # a new row: nothing to read first
    return req


def request_submit(
    *,
    requester,
    draft: RequestDraft | None = None,
    plan: RequestPlan | None = None,
    http_request=None,
    batch=None,
) -> AccessRequest:
    """File a request from its ``plan`` (or plan ``draft`` now); a low-risk one under an auto-approving rule is
    approved at once. A preview's plan, or one made for someone else, is never filed.

    The requested duration is a length: the clock starts when the request is approved (``grant_create``).
    ``batch``: the multi-account request this one belongs to (``workflow.batches``).
    """
    if plan is None:
        assert draft is not None
        plan = plan_request(requester, draft)
    elif plan.preview or plan.requester_id != requester.pk:
        raise ValueError("Only a plan made for filing, by the person filing, is filed.")
    plan.raise_refusal()
    draft = plan.draft
    assert draft.rule is not None and draft.starts_at is not None
    with transaction.atomic():
        req = create_from_draft(requester, draft, extends=draft.extends, batch=batch)
        record_request_event(req, "request.created", actor=requester, http_request=http_request)
        if draft.rule.auto_approve_low_risk and rules.is_low_risk(
            account=draft.account, kind=draft.kind, level=draft.level
        ):
            AccessRequest.objects.transition(
                req.pk,
                sources=[RequestStatus.PENDING],
                target=RequestStatus.APPROVED,
                decided_at=timezone.now(),
            )
            req.refresh_from_db(fields=["status", "decided_at"])
            record_request_event(
                req, "request.auto_approved", actor=None, actor_label=f"rule:{draft.rule.name}"
            )
            grants.grant_create(request=req)
        notify.on_request_created(req)
    return req


def _locked(request_id: int) -> AccessRequest:
    # The request's row only (``of``): a plain FOR UPDATE locks every joined row too, and a decision holding its
    # account's row while it waits for the audit chain's lock deadlocks with a request filed in that account,
    # which holds the chain's lock and needs a key-share lock on the same row for its foreign key.
    return (
        AccessRequest.objects.select_for_update(of=("self",))
        .select_related("principal", "account")
        .get(pk=request_id)
    )


def refuse_hidden_characters(text: str | None, what: str) -> None:
    """Text that reads the same to everyone who sees it (``plain_text``): a decision's comment, an incident."""
    problem = plain_text.hidden_character_problem(what, text)
    if problem:
        raise RequestError(problem)


def _prepare_decision(
    request_id: int, reviewer, second_factor: SecondFactor | None, outcome: str, comment: str
) -> None:
    """Before the lock: the reviewer's fresh second factor, and who is in the groups the access would reach
    (read from AWS now, so a member added since the last catalog sync is seen)."""
    from accessrequests.catalog.listings import principal_refresh_members

    refuse_hidden_characters(comment, "The comment")

    req = (
        AccessRequest.objects.select_related("principal", "account", "rule", "requester", "permission_set")
        .filter(pk=request_id)
        .first()
    )
    if req is None:
        raise RequestError("No such request.")
    permissions.check(
        permissions.second_factor_problem(reviewer, second_factor, request=req, outcome=outcome)
    )
    if outcome == DecisionOutcome.APPROVE:
        # Eligibility is judged again at approval: a rule tightened since the request was filed holds too.
        problem = eligibility_problem_for(req.requester, req)
        if problem:
            raise permissions.NotAllowed(
                f"{req.requester} is no longer eligible for this access, so it cannot be approved: "
                + problem.replace("You are not eligible", "not eligible", 1)
            )
    for recipient in recipients.recipients_of(req):
        if recipient.principal is not None and recipient.principal.is_group:
            principal_refresh_members(principal=recipient.principal)


def _record_decision(
    request_id: int, reviewer, outcome: str, comment: str, second_factor: SecondFactor | None
) -> AccessRequest:
    """Lock the request, check the reviewer may decide it, and store their one decision (the database refuses
    a second one from the same reviewer, which is what a double-click or a replayed POST would be)."""
    req = _locked(request_id)
    permissions.check(
        permissions.second_factor_problem(reviewer, second_factor, request=req, outcome=outcome)
    )
    permissions.check(permissions.decide_problem(reviewer, req))
    try:
        with transaction.atomic():
            Decision.objects.create(
                request=req, reviewer=reviewer, outcome=outcome, comment=comment.strip()[:2000]
            )
    except IntegrityError:
        raise RequestError("You have already decided this request.") from None
    return req


def decision_facts(outcome: str, second_factor: SecondFactor | None, comment: str) -> dict[str, Any]:
    """What an auditor asks of every decision: the outcome, what was said, and how the decider proved who they
    were just before (the second factor the service checked: method, how it was presented, when)."""
    factor: dict[str, Any] = {"method": "none"}
    if second_factor is not None:
        factor = second_factor.facts()
    return {"outcome": outcome, "comment": comment.strip()[:2000], "second_factor": factor}


def request_approve(
    *,
    request_id: int,
    reviewer,
    second_factor: SecondFactor | None,
    comment: str = "",
    http_request=None,
) -> AccessRequest:
    """Record one approval; the last one needed approves the request and creates its grant."""
    _prepare_decision(request_id, reviewer, second_factor, DecisionOutcome.APPROVE, comment)
    with transaction.atomic():
        req = _record_decision(request_id, reviewer, DecisionOutcome.APPROVE, comment, second_factor)
        before = _snapshot(req)
        approvals = req.decisions.counting().filter(outcome=DecisionOutcome.APPROVE).count()
        record_request_event(
            req,
            "request.approval_recorded",
            actor=reviewer,
            http_request=http_request,
            decision=decision_facts(DecisionOutcome.APPROVE, second_factor, comment),
            extra={"approvals": approvals},
        )
        if approvals >= req.approvals_required:
            moved = AccessRequest.objects.transition(
                req.pk,
                sources=[RequestStatus.PENDING],
                target=RequestStatus.APPROVED,
                decided_at=timezone.now(),
            )
            if not moved:  # cannot happen under the row lock; refuse rather than double-grant
                raise RequestError("This request changed while you were deciding it.")
            req.refresh_from_db(fields=["status", "decided_at"])  # what moved; the loaded relations stay
            record_request_event(
                req, "request.approved", actor=reviewer, before=before, http_request=http_request
            )
            grants.grant_create(request=req)
            notify.on_request_decided(req)
        else:
            notify.on_request_changed(req.pk)
    return req


def request_deny(
    *,
    request_id: int,
    reviewer,
    second_factor: SecondFactor | None,
    comment: str = "",
    http_request=None,
) -> AccessRequest:
    """One deny ends the request."""
    if not comment.strip():
        raise RequestError("Say why you deny it, so the requester can ask again better.")
    _prepare_decision(request_id, reviewer, second_factor, DecisionOutcome.DENY, comment)
    with transaction.atomic():
        req = _record_decision(request_id, reviewer, DecisionOutcome.DENY, comment, second_factor)
        before = _snapshot(req)
        AccessRequest.objects.transition(
            req.pk, sources=[RequestStatus.PENDING], target=RequestStatus.DENIED, decided_at=timezone.now()
        )
        req.refresh_from_db()
        record_request_event(
            req,
            "request.denied",
            actor=reviewer,
            before=before,
            http_request=http_request,
            decision=decision_facts(DecisionOutcome.DENY, second_factor, comment),
        )
        notify.on_request_decided(req)
    return req


def request_cancel(*, request_id: int, requester, http_request=None) -> AccessRequest:
    """The requester withdraws a pending request."""
    with transaction.atomic():
        req = _locked(request_id)
        permissions.check(permissions.cancel_problem(requester, req))
        before = _snapshot(req)
        AccessRequest.objects.transition(
            req.pk, sources=[RequestStatus.PENDING], target=RequestStatus.CANCELLED, decided_at=timezone.now()
        )
        req.refresh_from_db()
        record_request_event(
            req, "request.cancelled", actor=requester, before=before, http_request=http_request
        )
        notify.on_request_changed(req.pk)
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
            AccessRequest.objects.transition(
                pk, sources=[RequestStatus.PENDING], target=RequestStatus.EXPIRED, decided_at=timezone.now()
            )
            req.refresh_from_db()
            record_request_event(req, "request.expired_unreviewed", actor=None, before=before)
            notify.on_request_changed(req.pk)
            expired += 1
    return expired
