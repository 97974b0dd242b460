"""Who may do what: every authorization rule of Gatehouse, in one place.

Each rule is a ``*_problem`` function that says why a user may not do a thing (a sentence for them) or None
when they may. The services that change state call ``check(...)`` with them and raise ``NotAllowed``; the web
views, the API, admin actions and templates only ask (``allowed(...)``) to decide what to show. A rule that
lived only in a view would be one forgotten decorator away from a side path, so none does.

Deciding on access also needs a second factor presented in the last few minutes (``SecondFactor``): the web
takes it from allauth's session records (sign-in with TOTP or reauthentication), the API from a TOTP code sent
with the decision. Services refuse a decision without a fresh one from the deciding user. A click in Slack is a
second factor only where ``chat_approval_problem`` says so (a rule that opts in, a low-risk request), and only the
identity provider's SCIM client provisions people and groups (``provision_problem``).

Access reviews and break-glass: an access review's item is kept or revoked only by an approver of its rule whom the access
does not reach (``review_item_problem``), with the same second factor as any decision; break-glass is open only to
the people a rule names, briefly and a few times a day (``break_glass_problem``), only for the kinds the rule names
and for access that reaches nobody but the person breaking the glass (``break_glass_shape_problem``), and its review
after the fact is another approver's (``post_review_problem``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Q
from django.utils import timezone

from accessrequests.authz import recipients
from accessrequests.authz.routing import (
    account_facts,
    approvers_among,
    is_low_risk,
    rules_for_approver,
    scope_of,
)
from accessrequests.core import roles, scope
from accessrequests.core.wording import counted
from accessrequests.models import (
    BREAK_GLASS_KIND_PHRASES,
    LIVE_GRANT_STATUSES,
    AccessRequest,
    AwsAccount,
    ChatApproval,
    EligibilityRule,
    Grant,
    PermissionSet,
    Principal,
    RequestKind,
    RequestStatus,
    RuleChange,
    RuleChangeStatus,
    RuleTarget,
    TokenScope,
)


class NotAllowed(Exception):
    """A rule forbids this to this user; the message says which rule, for the person who tried."""


def check(problem: str | None) -> None:
    """Raise NotAllowed with the rule's reason, if there is one."""
    if problem:
        raise NotAllowed(problem)


def allowed(rule: Callable[..., str | None], *args: Any, **kwargs: Any) -> bool:
    return rule(*args, **kwargs) is None


# --- who someone is ------------------------------------------------------------------------------------


def _signed_in_problem(user) -> str | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return "Sign in first."
    if not user.is_active:
        return "This account is deactivated."
    return None


def _writer_problem(user) -> str | None:
    """Auditors read everything and change nothing, whatever other role they also hold."""
    return _signed_in_problem(user) or ("Auditors have read-only access." if roles.is_auditor(user) else None)


def decider_problem(user) -> str | None:
    """Whether ``user`` may decide anything at all (each decision's own rule says the rest): the pages that list
    what waits for someone ask it before listing anything."""
    return _writer_problem(user)


def read_audit_problem(user) -> str | None:
    problem = _signed_in_problem(user)
    if problem:
        return problem
    if not (roles.is_auditor(user) or roles.is_admin(user)):
        return "Only auditors and admins read the audit trail."
    return None


# --- requests ------------------------------------------------------------------------------------------


def file_problem(user, *, principal: Principal) -> str | None:
    """Anyone may ask for access for a principal linked to them; admins may also file on someone's behalf. An
    outside party (cross-account access) is nobody's: who may ask for it is who may ask in the account
    (``account_problem``), and the approvers see whom it is for."""
    problem = _writer_problem(user)
    if problem or principal.is_outside:
        return problem
    if not principal.present:
        return f"{principal} no longer exists in AWS."
    if roles.is_admin(user) or principal.users.filter(pk=user.pk).exists():
        return None
    return (
        f"{principal} is not linked to you, so you cannot ask for access for it. "
        "Ask a Gatehouse admin to link it to your account, or to file the request for you."
    )


# --- eligibility: who may ask for which access -------------------------------------------------------


def eligibility_rules() -> list[EligibilityRule]:
    """Every eligibility rule with what it names, loaded once for a page or a filing (there are few)."""
    return list(
        EligibilityRule.objects.prefetch_related("accounts", "units", "permission_sets", "groups", "users")
    )


def _covers(
    rule: EligibilityRule, *, kind: str, account: AwsAccount, permission_set: PermissionSet | None
) -> bool:
    if rule.kinds and kind not in rule.kinds:
        return False
    # The same matching as routing, as a restriction: an account whose environment is unknown counts as being in
    # every environment, so a rule about production accounts binds it too.
    if not scope.covers(scope_of(rule), account_facts(account), restriction=True):
        return False
    sets = {p.pk for p in rule.permission_sets.all()}
    # A rule that names permission sets is about those sets: other access is outside its scope.
    return not sets or (
        kind == RequestKind.PERMISSION_SET and permission_set is not None and permission_set.pk in sets
    )


def _names(rule: EligibilityRule, user) -> bool:
    if any(u.pk == user.pk for u in rule.users.all()):
        return True
    groups = {g.pk for g in rule.groups.all()}
    if not groups:
        return False
    cache = getattr(user, "_gatehouse_group_ids", None)
    if cache is None:
        cache = set(user.groups.values_list("pk", flat=True))
        user._gatehouse_group_ids = cache
    return bool(groups & cache)


def _what(kind: str, account: AwsAccount, permission_set: PermissionSet | None) -> str:
    if kind == RequestKind.PERMISSION_SET and permission_set is not None:
        return f"the permission set {permission_set.name} on {account}"
    label = RequestKind(kind).label.lower() if kind in RequestKind.values else kind
    return f"{label} on {account}"


def eligibility_problem(
    user,
    *,
    kind: str,
    account: AwsAccount,
    permission_set: PermissionSet | None = None,
    rules: list[EligibilityRule] | None = None,
) -> str | None:
    """Whether ``user`` may ask for this access at all. Every eligibility rule whose scope (kinds, accounts by
    id, unit, tag and environment, permission sets) covers it must name them, directly or through a group; with
    no rule covering it, everyone may (Gatehouse without eligibility rules). The refusal names the rule, says
    whom it allows and why."""
    problem = _signed_in_problem(user)
    if problem:
        return problem
    for rule in rules if rules is not None else eligibility_rules():
        if not _covers(rule, kind=kind, account=account, permission_set=permission_set):
            continue
        if _names(rule, user):
            continue
        who = [f"members of {g.name}" for g in rule.groups.all()] + [
            u.get_username() for u in rule.users.all()
        ]
        why = f" ({rule.description.rstrip('.')})" if rule.description else ""
        return (
            f"You are not eligible to request {_what(kind, account, permission_set)}: the eligibility rule "
            f"“{rule.name}” allows {'only ' + ' or '.join(who) if who else 'nobody'}{why}. Ask a Gatehouse admin if you need it."
        )
    return None


def can_request(user, *, kind: str, account: AwsAccount, permission_set: PermissionSet | None = None) -> bool:
    return eligibility_problem(user, kind=kind, account=account, permission_set=permission_set) is None


def eligible_choices(
    user,
    accounts: list[AwsAccount],
    permission_sets: list[PermissionSet],
    *,
    rules: list[EligibilityRule] | None = None,
) -> dict[int, tuple[set[str], set[int]]]:
    """For the request form: per account, the kinds and the permission sets ``user`` may ask for there."""
    rules = eligibility_rules() if rules is None else rules
    found: dict[int, tuple[set[str], set[int]]] = {}
    for account in accounts:
        sets = {
            p.pk
            for p in permission_sets
            if eligibility_problem(
                user, kind=RequestKind.PERMISSION_SET, account=account, permission_set=p, rules=rules
            )
            is None
        }
        kinds = {
            k
            for k in RequestKind.values
            if (k != RequestKind.PERMISSION_SET or sets)
            and eligibility_problem(user, kind=k, account=account, rules=rules) is None
        }
        found[account.pk] = (kinds, sets)
    return found


def account_problem(user, account) -> str | None:
    """Whether ``user`` may ask for access in ``account``: Gatehouse provisions into it (enabled, still in the
    organization) and a principal they may file for can receive access there (an IAM principal in its own
    account, an Identity Center user or group in any). Admins file on anyone's behalf, so in any such account.
    ``selectors.requestable_accounts`` is the same rule as a query, for the pickers."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if not account.present:
        return f"Account {account} is no longer in the organization; access there cannot be asked for."
    if not account.enabled:
        return f"Gatehouse does not provision into account {account.account_id}; choose another."
    if roles.is_admin(user):
        return None
    if (
        Principal.objects.filter(users=user, present=True)
        .filter(Q(account=account) | Q(account__isnull=True))
        .exists()
    ):
        return None
    return (
        f"None of your principals can receive access in account {account.account_id}. Ask a Gatehouse admin to "
        "link your Identity Center user (it works in every account) or an IAM principal of that account."
    )


def account_environment_problem(user, account: AwsAccount) -> str | None:
    """Who sets an account's environment: Organizations, through its environment tag, when it has one (the
    catalog sync reads it at every listing and would overwrite an edit); an admin only where no tag does."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if not roles.is_admin(user):
        return "Only admins set an account's environment."
    tag = account.environment_tag
    if tag is not None:
        return (
            f"Organizations sets the environment of {account}: its tag {tag[0]}={tag[1]}. Change the tag there; "
            "the catalog sync reads it at the account's next listing."
        )
    return None


def pending_window() -> timedelta:
    return timedelta(hours=settings.GATEHOUSE_PENDING_EXPIRY_HOURS)


def decide_problem(
    user,
    request: AccessRequest,
    *,
    now: datetime | None = None,
    recipient_ids: set[int] | None = None,
    approver_ids: set[int] | None = None,
    reviewer_ids: set[int] | None = None,
) -> str | None:
    """Whether ``user`` may approve or deny ``request`` now (the second factor is checked separately).
    ``recipient_ids`` (``recipients.recipient_user_ids``), ``approver_ids`` (users the request's rule covers) and
    ``reviewer_ids`` (users who decided it already) let a caller asking for many users read them once
    (``who_may_decide``)."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if request.status != RequestStatus.PENDING:
        return f"This request is {request.get_status_display().lower()}; it can no longer be decided."
    now = now or timezone.now()
    if request.created_at and request.created_at + pending_window() <= now:
        return (
            f"This request waited more than {settings.GATEHOUSE_PENDING_EXPIRY_HOURS} hours for review, so it "
            "can no longer be decided; the requester can file it again."
        )
    if request.requester_id == user.pk:
        return "You cannot decide your own request."
    if recipient_ids is None:
        recipient_ids = recipients.recipient_user_ids(request)
    if user.pk in recipient_ids:
        return "You cannot decide a request whose access would reach you (you are one of its recipients)."
    if approver_ids is None:
        approver_ids = approvers_among(request.rule_id, [user.pk])
    if user.pk not in approver_ids:
        return "Your approval rules do not cover this request."
    decided = (
        request.decisions.filter(reviewer=user).exists() if reviewer_ids is None else user.pk in reviewer_ids
    )
    if decided:
        return "You have already decided this request."
    return None


def who_may_decide(request: AccessRequest, users: Iterable[Any]) -> list[Any]:
    """The users among ``users`` who may decide ``request`` now: ``decide_problem`` asked for each of them, with
    what it reads from the database read once for all (a constant number of queries, whatever their number)."""
    users = list(users)
    roles.load_groups(users)
    ids = [user.pk for user in users]
    recipient_ids = recipients.recipient_user_ids(request)
    approver_ids = approvers_among(request.rule_id, ids)
    reviewer_ids = set(request.decisions.filter(reviewer_id__in=ids).values_list("reviewer_id", flat=True))
    return [
        user
        for user in users
        if decide_problem(
            user, request, recipient_ids=recipient_ids, approver_ids=approver_ids, reviewer_ids=reviewer_ids
        )
        is None
    ]


def cancel_problem(user, request: AccessRequest) -> str | None:
    problem = _writer_problem(user)
    if problem:
        return problem
    if request.requester_id != user.pk:
        return "Only the requester can cancel a request."
    if request.status != RequestStatus.PENDING:
        return (
            f"This request is {request.get_status_display().lower()}; only pending requests can be cancelled."
        )
    return None


# --- grants --------------------------------------------------------------------------------------------


def _live_problem(grant: Grant, verb: str) -> str | None:
    if grant.status not in LIVE_GRANT_STATUSES:
        return f"This grant is already {grant.get_status_display().lower()}; there is nothing to {verb}."
    return None


def revoke_problem(user, grant: Grant, *, review_item: Any = None, post_review: Any = None) -> str | None:
    """The requester takes their own access away; admins take anyone's. A reviewer takes it away through the
    access review item (``review_item``) or the break-glass post-review (``post_review``) they may decide; with no
    user at all, only an item past its campaign's deadline under "revoke" (``unreviewed_revoke_problem``)."""
    if user is None and review_item is not None:
        return unreviewed_revoke_problem(review_item) or _live_problem(grant, "revoke")
    problem = _writer_problem(user)
    if problem:
        return problem
    if review_item is not None:
        if review_item.grant_id != grant.pk:
            return "This review item is about another grant."
        return review_item_problem(user, review_item) or _live_problem(grant, "revoke")
    if post_review is not None:
        if post_review.request_id != grant.request_id:
            return "This post-review is about another request."
        return post_review_problem(user, post_review) or _live_problem(grant, "revoke")
    if not (roles.is_admin(user) or grant.request.requester_id == user.pk):
        return "Only the requester or an admin can revoke this grant."
    return _live_problem(grant, "revoke")


def extend_problem(user, grant: Grant) -> str | None:
    """Only the requester extends, and only while the grant is live (an extension continues it)."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if grant.request.requester_id != user.pk:
        return "Only the requester can extend a grant."
    if grant.status not in LIVE_GRANT_STATUSES:
        return (
            f"The grant of {grant.request.reference} is {grant.get_status_display().lower()}; "
            "file a new request instead."
        )
    return None


def operate_problem(user) -> str | None:
    """Retrying or abandoning a grant is provisioning work for admins."""
    problem = _writer_problem(user)
    if problem:
        return problem
    return None if roles.is_admin(user) else "Only an admin can retry or abandon a grant."


# --- rules ---------------------------------------------------------------------------------------------


def rules_file_problem() -> str | None:
    """With GATEHOUSE_RULES_FILE set, the rules are that file's: nobody changes them in the portal."""
    if settings.GATEHOUSE_RULES_FILE:
        return (
            f"Rules come from the rules file {settings.GATEHOUSE_RULES_FILE} (GATEHOUSE_RULES_FILE); change them "
            "there."
        )
    return None


def governed_change_propose_problem(user) -> str | None:
    """Admins propose governed changes (rules, an account's environment, principal links, governed groups)."""
    problem = _writer_problem(user)
    if problem:
        return problem
    return (
        None if roles.is_admin(user) else "Only admins propose changes to rules, accounts, links and roles."
    )


def rule_change_propose_problem(user) -> str | None:
    problem = _writer_problem(user)
    if problem:
        return problem
    if not roles.is_admin(user):
        return "Only admins propose changes to rules."
    return rules_file_problem()


def rules_propose_problem(as_user) -> str | None:
    """``rules apply`` outside GATEHOUSE_RULES_FILE proposes; a shell is enough to propose (a second admin
    approves), and a portal user it names with ``--as`` must be an admin, who then cannot approve it."""
    return rule_change_propose_problem(as_user) if as_user is not None else rules_file_problem()


def _concerns(user, change: RuleChange) -> bool:
    """Whether the change is about ``user``'s own access: their roles and links, or a group or principal it
    adds them to or removes them from."""
    if change.target == RuleTarget.USER_ACCESS:
        return change.target_id == user.pk
    if change.target in (RuleTarget.PRINCIPAL_LINKS, RuleTarget.GROUP_MEMBERS):
        before, after = ({*(facts or {}).get("users", [])} for facts in (change.before, change.after))
        return user.get_username() in before ^ after
    return False


def rule_change_decide_problem(user, change: RuleChange) -> str | None:
    """Four eyes: a governed change takes effect only when an admin other than its proposer approves it, and
    never one it is about (whose own roles or links it changes)."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if not roles.is_admin(user):
        return "Only admins decide changes to rules."
    if change.status != RuleChangeStatus.PENDING:
        return f"This change is already {change.get_status_display().lower()}."
    if change.proposed_by_id == user.pk:
        return "You proposed this change; another admin must decide it."
    if _concerns(user, change):
        return "This change is about your own roles or links; another admin must decide it."
    return rules_file_problem() if change.is_rule else None


# --- tokens --------------------------------------------------------------------------------------------


def token_scopes_problem(user, scopes: set[str]) -> str | None:
    problem = _signed_in_problem(user)
    if problem:
        return problem
    unknown = scopes - set(TokenScope.values)
    if unknown or not scopes:
        return "Choose the token's scopes from: " + ", ".join(TokenScope.values) + "."
    if roles.is_auditor(user) and scopes != {TokenScope.READ}:
        return "Auditors' tokens can only read."
    if TokenScope.DECIDE in scopes and not (roles.is_approver(user) or rules_for_approver(user).exists()):
        return "Only approvers can make a token that decides."
    return None


# --- the second factor ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecondFactor:
    """A second factor the user presented, and when: proof for a decision that it is really them, now."""

    user_id: int
    method: str  # "totp", "recovery_codes", "webauthn"
    at: datetime
    # "session" (allauth sign-in or reauthentication), "api" (a code sent with the call), or "slack" (a click in
    # Slack, which counts only where ``chat_approval_problem`` allows it)
    via: str

    def facts(self) -> dict[str, Any]:
        """How the decider proved who they were, as the audit trail records it."""
        return {"method": self.method, "via": self.via, "at": self.at}


def step_up_window() -> timedelta:
    return timedelta(seconds=settings.GATEHOUSE_STEP_UP_SECONDS)


def second_factor_from_session(http_request) -> SecondFactor | None:
    """The newest second factor allauth recorded in this session (sign-in with MFA or reauthentication)."""
    from allauth.account.authentication import get_authentication_records

    user = getattr(http_request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    records = [r for r in get_authentication_records(http_request, user) if r.get("method") == "mfa"]
    if not records:
        return None
    newest = max(records, key=lambda r: float(r.get("at", 0)))
    return SecondFactor(
        user_id=user.pk,
        method=str(newest.get("type", "totp")),
        at=datetime.fromtimestamp(float(newest["at"]), tz=UTC),
        via="session",
    )


def second_factor_from_code(user, code: str) -> SecondFactor | None:
    """Check a TOTP code of ``user`` with allauth's validation; a used code is refused until it expires, wherever
    it was used (``authz/used_codes.py``: recorded in the database, so the check holds while Redis restarts)."""
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP

    code = (code or "").strip()
    if not code.isdigit() or len(code) > 10:
        return None
    authenticator = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
    if authenticator is None:
        return None
    valid = TOTP(authenticator).validate_code(code)
    if not valid:
        return None
    authenticator.record_usage()
    return SecondFactor(user_id=user.pk, method="totp", at=timezone.now(), via="api")


def chat_approval_problem(user, request: AccessRequest) -> str | None:
    """Whether a click on "Approve" in Slack may be the approval itself, with no second factor in Gatehouse.

    Only when the request's rule explicitly allows chat approval (``ApprovalRule.chat_approval``, off by default)
    and the request is low risk (``rules.is_low_risk``: viewer access outside production). Then the approver's
    Slack session, matched to their portal account by a verified email address, stands in for the second factor:
    their workspace's sign-in (normally the same identity provider with MFA) is what proves it is them. Every other
    rule still applies (``decide_problem``). Otherwise Slack only links to the decision page, which asks for the
    code.
    """
    if request.rule.chat_approval != ChatApproval.LOW_RISK:
        return (
            f"The rule “{request.rule.name}” asks for your second factor in Gatehouse: open the request there "
            "to decide it."
        )
    if not is_low_risk(account=request.account, kind=request.kind, level=request.level):
        return f"{request.reference} is not low risk, so it is decided in Gatehouse with your second factor."
    return decide_problem(user, request)


def second_factor_problem(
    user,
    factor: SecondFactor | None,
    *,
    now: datetime | None = None,
    request: AccessRequest | None = None,
    outcome: str = "",
) -> str | None:
    if factor is None or factor.user_id != getattr(user, "pk", None):
        return "Deciding on access needs your second factor: confirm with your authenticator code."
    if factor.via == "slack":
        # A click in Slack is a second factor only for an approval its rule lets chat decide.
        if request is None or outcome != "approve":
            return "A click in Slack does not decide this: open the request in Gatehouse."
        return chat_approval_problem(user, request)
    now = now or timezone.now()
    if factor.at < now - step_up_window():
        minutes = max(1, settings.GATEHOUSE_STEP_UP_SECONDS // 60)
        return (
            f"Your last second factor is older than {counted(minutes, 'minute')}; confirm with your authenticator code "
            "again to decide."
        )
    return None


# --- the identity provider -----------------------------------------------------------------------------


@dataclass(frozen=True)
class IdentityProvider:
    """The identity provider's SCIM client, authenticated by the SCIM bearer token (GATEHOUSE_SCIM_TOKEN).
    It is nobody in the portal: it cannot read or decide requests, and portal users cannot provision."""

    name: str = "scim"


def provision_problem(agent) -> str | None:
    """Only the identity provider creates, changes, deactivates and deletes people and groups over SCIM."""
    if not isinstance(agent, IdentityProvider):
        return "Only the identity provider's SCIM client provisions users and groups."
    return None


def claim_problem(user, request: AccessRequest) -> str | None:
    """Claiming a request ("I am looking at it", shown on its Slack message) is for those who may decide it."""
    return decide_problem(user, request)


# --- access reviews ------------------------------------------------------------------------------------


def start_campaign_problem(user) -> str | None:
    """Admins start a campaign by hand (beat starts the scheduled ones)."""
    problem = _writer_problem(user)
    if problem:
        return problem
    return None if roles.is_admin(user) else "Only an admin can start an access review."


def read_campaigns_problem(user) -> str | None:
    """Admins and auditors read every campaign; approvers read the items of their rules."""
    problem = _signed_in_problem(user)
    if problem:
        return problem
    if roles.is_admin(user) or roles.is_auditor(user) or roles.is_approver(user):
        return None
    return "Access reviews are for approvers, admins and auditors."


def review_item_problem(
    user, item: Any, *, recipient_ids: set[int] | None = None, approver_rule_ids: set[int] | None = None
) -> str | None:
    """Whether ``user`` may keep or revoke this item now (the second factor is checked separately): an approver
    of the item's rule, never the requester of the access nor anyone it reaches, while the campaign is open.
    ``recipient_ids`` and ``approver_rule_ids`` let a page asking about many items compute them once."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if item.campaign.status != "open":
        return f"{item.campaign.reference} is closed; its items can no longer be reviewed."
    if item.decision:
        return f"This access was already reviewed: {item.get_decision_display().lower()}."
    grant = item.grant
    if grant.status not in LIVE_GRANT_STATUSES:
        return f"This access is {grant.get_status_display().lower()} already; there is nothing to review."
    if grant.request.requester_id == user.pk:
        return "You cannot review your own access."
    if recipient_ids is None:
        recipient_ids = recipients.recipient_user_ids(grant.request)
    if user.pk in recipient_ids:
        return "You cannot review access that reaches you (you are one of its recipients)."
    if approver_rule_ids is None:
        approver_rule_ids = set(rules_for_approver(user).filter(pk=item.rule_id).values_list("pk", flat=True))
    if item.rule_id not in approver_rule_ids:
        return f"Only approvers of the rule “{item.rule.name}” review this access."
    return None


def can_review_item(user, item: Any, **known: Any) -> bool:
    return review_item_problem(user, item, **known) is None


def evidence_retry_problem(user, item: Any, **known: Any) -> str | None:
    """Asking IAM again for an item's usage evidence after a failed read: its reviewers (``review_item_problem``,
    which ``known`` is passed to) and admins, while the item waits for its review."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if item.campaign.status != "open":
        return f"{item.campaign.reference} is closed; its evidence is no longer read."
    if item.decision:
        return "This access was already reviewed; its evidence is no longer read."
    if item.evidence_status != "failed":
        return "Gatehouse is not stuck on this item's evidence: nothing to retry."
    if roles.is_admin(user):
        return None
    return review_item_problem(user, item, **known)


def unreviewed_revoke_problem(item: Any, *, now: datetime | None = None) -> str | None:
    """Nobody but the deadline revokes an item: only when it is unreviewed, its campaign's deadline has passed
    and the campaign was started under "revoke" (GATEHOUSE_REVIEW_UNREVIEWED)."""
    now = now or timezone.now()
    if item.decision:
        return "This access was already reviewed."
    if item.campaign.on_deadline != "revoke":
        return f"{item.campaign.reference} keeps reminding past its deadline; it revokes nothing by itself."
    if item.campaign.deadline > now:
        return f"{item.campaign.reference} is not past its deadline."
    return None


# --- break-glass ---------------------------------------------------------------------------------------


NO_BREAK_GLASS_RULE = "No approval rule covers this access, so there is no break-glass for it either."


def break_glass_window() -> timedelta:
    return timedelta(hours=24)


def may_break_glass(user, rule: Any) -> bool:
    """Named on the rule, directly or through a group."""
    if rule.break_glass_users.filter(pk=user.pk).exists():
        return True
    return rule.break_glass_groups.filter(pk__in=user.groups.values("pk")).exists()


def break_glass_problem(
    user, *, rule: Any, duration_hours: int | None, reason: str, incident: str, now: datetime | None = None
) -> str | None:
    """Whether ``user`` may have access at once, with no approver, under ``rule``: named by the rule for
    break-glass, for at most its break-glass hours, with a reason and an incident reference, and no more than
    GATEHOUSE_BREAK_GLASS_PER_DAY times in 24 hours (the service counts under a lock on the user)."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if rule is None:
        return NO_BREAK_GLASS_RULE
    if not may_break_glass(user, rule):
        return (
            f"You are not named for break-glass under the rule “{rule.name}”: ask its approvers for the access "
            "the normal way" + (f" ({rule.contact})" if rule.contact else "") + "."
        )
    if not (reason or "").strip():
        return "Say what is broken and why you need this access now (the reason is required)."
    if not (incident or "").strip():
        return "Name the incident (its reference in your incident tool or ticket system)."
    limit = rule.break_glass_max_hours
    if duration_hours is None or not 1 <= duration_hours <= limit:
        return f"Break-glass access under “{rule.name}” lasts between 1 and {counted(limit, 'hour')}."
    now = now or timezone.now()
    used = AccessRequest.objects.filter(
        requester=user, break_glass=True, created_at__gt=now - break_glass_window()
    ).count()
    if used >= settings.GATEHOUSE_BREAK_GLASS_PER_DAY:
        return (
            f"You used break-glass {used} times in the last 24 hours, the most allowed "
            f"(GATEHOUSE_BREAK_GLASS_PER_DAY={settings.GATEHOUSE_BREAK_GLASS_PER_DAY}); ask an approver instead."
        )
    return None


def break_glass_shape_problem(user, *, rule: Any, request: AccessRequest) -> str | None:
    """What break-glass may give under ``rule``, whoever asks (admins too) and from any path: the kinds the rule
    names (pipeline access unless it names more), for a principal linked to ``user``, and only access that reaches
    nobody else: every recipient (the principal, a group's members, the principal a cross-account role trusts)
    is a principal linked to them, and no other person is among those it reaches. ``request`` is the unsaved
    shape of what is asked (``RequestDraft.as_unsaved_request``). An approver would catch access on someone's
    behalf or to an outside account; break-glass has none, so it never gives that."""
    if rule is None:
        return NO_BREAK_GLASS_RULE
    normal_way = (
        f"ask its approvers for {{}} the normal way{f' (contact {rule.contact})' if rule.contact else ''}."
    )
    if request.kind not in rule.allowed_break_glass_kinds():
        asked = BREAK_GLASS_KIND_PHRASES.get(request.kind, request.kind)
        return (
            f"Break-glass under the rule “{rule.name}” gives {rule.break_glass_kinds_text()} only; "
            + normal_way.format(asked)
        )
    own = f"Break-glass under the rule “{rule.name}” is for your own access only"
    principal = request.principal
    # Cross-account access is for the outside party its role trusts: whether that is theirs alone is below.
    if not principal.is_outside and not principal.users.filter(pk=user.pk).exists():
        return f"{own}, and {principal} is not linked to you; " + normal_way.format(
            "access on someone's behalf"
        )
    others = _reached_besides(user, request)
    if others:
        return f"{own}, and this access would also reach {others}; " + normal_way.format("it")
    return None


def _reached_besides(user, request: AccessRequest) -> str:
    """Whom the access would reach besides ``user``, in words ("" when nobody): recipients that are not their
    principals (an outside account, an unknown ARN, a group member, a group nobody has read yet) and other
    people linked to a recipient."""
    linked = set(user.principals.values_list("pk", flat=True))
    found: list[str] = []
    for recipient in recipients.recipients_of(request):
        principal = recipient.principal
        if principal is None or principal.pk not in linked:
            found.append(recipient.label)
        elif principal.is_group and principal.members_synced_at is None:
            found.append(f"the members of {recipient.label}, which Gatehouse has not read yet")
    people = recipients.recipient_user_ids(request) - {user.pk}
    if people:
        found += sorted(
            u.get_username() for u in get_user_model().objects.filter(pk__in=people).order_by("pk")[:10]
        )
    if len(found) > 5:
        found = [*found[:5], f"{len(found) - 5} more"]
    return ", ".join(found)


def post_review_problem(
    user, review: Any, *, recipient_ids: set[int] | None = None, approver_rule_ids: set[int] | None = None
) -> str | None:
    """The review after a break-glass use: another approver of its rule, never the requester nor anyone the access
    reached, once. ``recipient_ids`` and ``approver_rule_ids`` let a page asking about many uses compute them once."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if review.reviewed_at is not None:
        return "This break-glass use was reviewed already."
    req = review.request
    if req.requester_id == user.pk:
        return "You cannot review your own break-glass use; another approver does."
    if recipient_ids is None:
        recipient_ids = recipients.recipient_user_ids(req)
    if user.pk in recipient_ids:
        return "You cannot review a break-glass use whose access reached you."
    if approver_rule_ids is None:
        approver_rule_ids = set(rules_for_approver(user).filter(pk=req.rule_id).values_list("pk", flat=True))
    if req.rule_id not in approver_rule_ids:
        return f"Only approvers of the rule “{req.rule.name}” review this break-glass use."
    return None
