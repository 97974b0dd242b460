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
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from accessrequests import recipients, roles
from accessrequests.models import (
    LIVE_GRANT_STATUSES,
    AccessRequest,
    ChatApproval,
    Grant,
    Principal,
    RequestStatus,
    TokenScope,
)
from accessrequests.rules import is_low_risk, rules_for_approver


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


def read_audit_problem(user) -> str | None:
    problem = _signed_in_problem(user)
    if problem:
        return problem
    if not (roles.is_auditor(user) or roles.is_admin(user)):
        return "Only auditors and admins read the audit trail."
    return None


# --- requests ------------------------------------------------------------------------------------------


def file_problem(user, *, principal: Principal) -> str | None:
    """Anyone may ask for access for a principal linked to them; admins may also file on someone's behalf."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if not principal.present:
        return f"{principal} no longer exists in AWS."
    if roles.is_admin(user) or principal.users.filter(pk=user.pk).exists():
        return None
    return (
        f"{principal} is not linked to you, so you cannot ask for access for it. "
        "Ask a Gatehouse admin to link it to your account, or to file the request for you."
    )


def account_problem(user, account) -> str | None:
    """Whether ``user`` may ask for access in ``account``: Gatehouse provisions into it (enabled, still in the
    organization) and a principal they may file for can receive access there (an IAM principal in its own
    account, an Identity Center user or group in any). Admins file on anyone's behalf, so in any such account.
    ``selectors.requestable_accounts`` is the same rule as a query, for the pickers."""
    problem = _writer_problem(user)
    if problem:
        return problem
    if not account.enabled or not account.present:
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


def pending_window() -> timedelta:
    return timedelta(hours=settings.GATEHOUSE_PENDING_EXPIRY_HOURS)


def decide_problem(
    user, request: AccessRequest, *, now: datetime | None = None, recipient_ids: set[int] | None = None
) -> str | None:
    """Whether ``user`` may approve or deny ``request`` now (the second factor is checked separately).
    ``recipient_ids`` lets a caller asking for many users compute the recipients once."""
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
    if not rules_for_approver(user).filter(pk=request.rule_id).exists():
        return "Your approval rules do not cover this request."
    if request.decisions.filter(reviewer=user).exists():
        return "You have already decided this request."
    return None


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


def revoke_problem(user, grant: Grant) -> str | None:
    """The requester takes their own access away; admins take anyone's."""
    problem = _writer_problem(user)
    if problem:
        return problem
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
    """Check a TOTP code of ``user`` (allauth's validation: a used code is refused until it expires, in the
    shared cache, so a replay on another process fails too)."""
    from allauth.mfa.models import Authenticator
    from allauth.mfa.totp.internal.auth import TOTP

    code = (code or "").strip()
    if not code.isdigit() or len(code) > 10:
        return None
    authenticator = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
    if authenticator is None or not TOTP(authenticator).validate_code(code):
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
            f"Your last second factor is older than {minutes} minutes; confirm with your authenticator code "
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
