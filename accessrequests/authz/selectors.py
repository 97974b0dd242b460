"""Reads. Every object a user reaches is loaded through these helpers; outsiders get 404, never a hint."""

from __future__ import annotations

from allauth.account.models import EmailAddress
from django.contrib.auth import get_user_model
from django.db.models import F, Prefetch, Q, QuerySet
from django.http import Http404
from django.utils import timezone

from accessrequests.authz.recipients import Reach, reach_of
from accessrequests.authz.routing import covered_accounts, rules_for_approver, scope_of
from accessrequests.core import roles
from accessrequests.core.ids import NoneOf, parse_id
from accessrequests.models import (
    LIVE_GRANT_STATUSES,
    AccessEnd,
    AccessRequest,
    AuditEvent,
    AuditIntegrity,
    AwsAccount,
    Decision,
    Grant,
    OrganizationalUnit,
    Principal,
    RequestBatch,
    RequestStatus,
)


def _with_related(qs: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    return qs.select_related("requester", "principal", "account", "rule", "pass_role", "permission_set")


def with_decisions(qs: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    """For pages that show approval progress: the decisions and their reviewers in one more query."""
    return qs.prefetch_related(Prefetch("decisions", queryset=Decision.objects.select_related("reviewer")))


def requests_visible_to(user) -> QuerySet[AccessRequest]:
    """Own requests; plus those under a rule the user approves; everything for admins and auditors."""
    if not user.is_authenticated:
        return AccessRequest.objects.none()
    if roles.is_admin(user) or roles.is_auditor(user):
        return AccessRequest.objects.all()
    rule_ids = list(rules_for_approver(user).values_list("pk", flat=True))
    return AccessRequest.objects.filter(Q(requester=user) | Q(rule_id__in=rule_ids))


def get_request_for_user(user, pk) -> AccessRequest:
    """The one access helper for a request: 404 unless the user may see it."""
    request_id = parse_id(pk)
    if request_id is None:
        raise Http404("No such request")
    obj = _with_related(requests_visible_to(user)).filter(pk=request_id).first()
    if obj is None:
        raise Http404("No such request")
    return obj


def grants_visible_to(user) -> QuerySet[Grant]:
    """A grant is visible exactly when its request is."""
    visible = requests_visible_to(user).values("pk")
    return Grant.objects.filter(request__in=visible).select_related("request", "principal", "account")


def get_batch_for_user(user, pk) -> tuple[RequestBatch, list[AccessRequest]]:
    """A multi-account request and the members the user may see: 404 unless they may see one of them."""
    batch_id = parse_id(pk)
    members = (
        list(
            with_decisions(_with_related(requests_visible_to(user)))
            .filter(batch_id=batch_id)
            .select_related("batch", "grant")
            .order_by("pk")
        )
        if batch_id is not None
        else []
    )
    if not members:
        raise Http404("No such request")
    assert members[0].batch is not None
    return members[0].batch, members


def get_grant_for_user(user, pk) -> Grant:
    """The one access helper for a grant: 404 unless the user may see its request."""
    grant_id = parse_id(pk)
    grant = grants_visible_to(user).filter(pk=grant_id).first() if grant_id is not None else None
    if grant is None:
        raise Http404("No such grant")
    return grant


def get_own_grant(user, pk) -> Grant:
    """A grant of one of the user's own requests (to extend it); 404 for any other, whoever may see it."""
    grant = get_grant_for_user(user, pk)
    if grant.request.requester_id != getattr(user, "pk", None):
        raise Http404("No such grant")
    return grant


def my_requests(user, *, status: str | None = None) -> QuerySet[AccessRequest]:
    qs = _with_related(AccessRequest.objects.filter(requester=user))
    if status:
        qs = qs.filter(status=status)
    return qs.order_by("-created_at", "-id")


def review_queue(
    user,
    *,
    rule_ids: list[int] | None = None,
    reach: Reach | None = None,
) -> QuerySet[AccessRequest]:
    """Pending requests this user may decide now (``permissions.decide_problem`` as a query): under their rules,
    still in their review window, not theirs, not reaching them (``recipients.Reach``), and not already decided
    by them. ``rule_ids`` and ``reach`` let a page that also asks about other work read them once."""
    from accessrequests.authz.permissions import pending_window

    if rule_ids is None:
        rule_ids = list(rules_for_approver(user).values_list("pk", flat=True))
    # Small id lists instead of anti-joins: PostgreSQL misestimates the anti-joins and then joins every pending
    # row before sorting (38 ms at 25,000 pending); plain filters let it walk the index and stop at one page.
    reach = reach if reach is not None else reach_of(user)
    pending = AccessRequest.objects.filter(
        status=RequestStatus.PENDING,
        rule_id__in=rule_ids,
        created_at__gt=timezone.now() - pending_window(),
    )
    # A decision on a request still pending was made after that request was filed, so only the reviewer's
    # decisions since the oldest pending request can matter: at a million requests a long-serving reviewer has
    # hundreds of thousands of decisions, and joining them all to find the pending ones took 132 ms.
    # Its own query, not a subquery: given the time itself, PostgreSQL plans a range scan of the reviewer's
    # recent decisions; given a subquery it guessed a third of them and joined every pending request (86 ms).
    # Not joined to the requests either: the range is read from its index alone, and the ids of requests decided
    # since then are left out of the pending ones at no cost (a hashed list). Joining each of a busy reviewer's
    # 1,735 recent decisions to its request to keep the pending ones took 15 ms of a 60 ms page.
    oldest = pending.order_by("created_at").values_list("created_at", flat=True).first()
    decided = (
        list(
            Decision.objects.filter(reviewer=user, created_at__gte=oldest)
            .order_by()
            .values_list("request_id", flat=True)
        )
        if oldest is not None
        else []
    )
    qs = pending.exclude(requester=user).exclude(reach.q()).filter(NoneOf("pk", decided))
    return with_decisions(_with_related(qs)).order_by("created_at", "id")


def requestable_accounts(user) -> QuerySet[AwsAccount]:
    """Accounts ``user`` may ask for access in (``permissions.account_problem`` as a query): enabled, still in
    the organization, and reached by one of their principals (an Identity Center one reaches every account)."""
    accounts = AwsAccount.objects.filter(enabled=True, present=True)
    if not user.is_authenticated or roles.is_auditor(user):
        return accounts.none()
    if roles.is_admin(user):
        return accounts
    mine = Principal.objects.filter(users=user, present=True)
    if mine.filter(account__isnull=True).exists():
        return accounts
    return accounts.filter(pk__in=list(mine.values_list("account_id", flat=True)))


def reviewable_accounts(user) -> QuerySet[AwsAccount]:
    """Accounts whose requests ``user``'s approval rules route: by id, unit, tag or environment, matched as a
    filing matches them (``rules.covered_accounts``)."""
    mine = rules_for_approver(user).prefetch_related("accounts", "units")
    return covered_accounts(scope_of(rule) for rule in mine)


def units_under(unit: OrganizationalUnit) -> Q:
    """Accounts in ``unit`` or any unit below it (by path, one index-friendly prefix test)."""
    return Q(ou=unit) | Q(ou__path__startswith=f"{unit.path} / ")


HOME_ROWS = 10
QUEUE_COUNT_CAP = 99  # the landing page says "99+" beyond this instead of counting a long queue


def live_grants_of(user) -> QuerySet[Grant]:
    """Grants of the user's own requests that hold (or are on their way to) access now, soonest ending first."""
    return (
        Grant.objects.filter(request__requester=user, status__in=LIVE_GRANT_STATUSES)
        .select_related("request", "principal", "account")
        .order_by(F("expires_at").asc(nulls_last=True), "id")
    )


def home_overview(user) -> dict:
    """The landing page's own part: the user's access now and their requests waiting for a decision (what waits
    for them to decide is ``inbox.review_inbox``). A fixed number of queries, whatever the table sizes."""
    return {
        "live_grants": list(live_grants_of(user)[:HOME_ROWS]),
        "waiting": list(with_decisions(my_requests(user, status=RequestStatus.PENDING))[:HOME_ROWS]),
    }


def request_timeline(request: AccessRequest) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(request_id=request.pk).select_related("actor").order_by("id")


def audit_events(
    *,
    since=None,
    until=None,
    actor: str = "",
    principal: str = "",
    account: str = "",
    pipeline: str = "",
    action: str = "",
    request_ref: str = "",
    campaign: str = "",
) -> QuerySet[AuditEvent]:
    """The audit log filtered as an auditor asks; every filter narrows, none is required. ``campaign``: the
    events of one access review (``AR-000001``)."""
    qs = AuditEvent.objects.all()
    if campaign:
        digits = campaign.strip().upper().removeprefix("AR-").lstrip("0")
        qs = (
            qs.filter(object_type="review_campaign", object_id=str(int(digits)))
            if digits.isdigit() and len(digits) < 12
            else qs.none()
        )
    if since:
        qs = qs.filter(created_at__gte=since)
    if until:
        qs = qs.filter(created_at__lt=until)
    if actor:
        qs = qs.filter(actor_label__icontains=actor)
    if principal:
        principal_ids = Principal.objects.filter(
            Q(name__icontains=principal) | Q(external_id=principal)
        ).values("pk")
        qs = qs.filter(principal_id__in=principal_ids)
    if account:
        qs = qs.filter(account_id=account)
    if pipeline:
        request_ids = AccessRequest.objects.filter(pipelines__name=pipeline).values("pk")
        qs = qs.filter(request_id__in=request_ids)
    if action:
        qs = qs.filter(action__startswith=action)
    if request_ref:
        digits = request_ref.upper().removeprefix("GH-").lstrip("0") or "0"
        qs = qs.filter(request_id=int(digits)) if digits.isdigit() else qs.none()
    return qs


def access_report(
    *, since, until, account: str = "", pipeline: str = "", principal: str = ""
) -> QuerySet[Grant]:
    """Who held what between two times: grants applied before `until` that had not ended by `since`."""
    qs = Grant.objects.filter(applied_at__isnull=False, applied_at__lt=until).exclude(
        Q(revoked_at__isnull=False, revoked_at__lt=since)
    )
    qs = qs.exclude(Q(expires_at__isnull=False, expires_at__lt=since))
    if account:
        qs = qs.filter(account__account_id=account)
    if pipeline:
        qs = qs.filter(request__pipelines__name=pipeline).distinct()
    if principal:
        qs = qs.filter(
            Q(principal__name__icontains=principal)
            | Q(principal__display_name__icontains=principal)
            | Q(principal__external_id=principal)
            | Q(request__trusted_principal_arn=principal)
            | Q(request__trusted_account_id=principal)
        )
    return (
        qs.select_related(
            "principal",
            "account",
            "request",
            "request__requester",
            "request__pass_role",
            "request__principal",
        )
        # The recipients of each grant: its request's principal and, for a group, the members (no query per row).
        .prefetch_related("request__pipelines", "request__decisions__reviewer", "request__principal__members")
        .order_by("applied_at", "id")
    )


def audit_integrity_alert() -> AuditIntegrity | None:
    """The failed verification the audit pages must show in red, or None while the trail verifies."""
    state = AuditIntegrity.current()
    return state if state is not None and not state.ok else None


# --- access reviews and break-glass -------------------------------------------------------------------------


def campaigns_visible_to(user):
    from accessrequests.authz import permissions
    from accessrequests.models import ReviewCampaign

    if permissions.read_campaigns_problem(user):
        return ReviewCampaign.objects.none()
    return ReviewCampaign.objects.all()


def get_campaign_for_user(user, pk):
    """The one access helper for a campaign: 404 unless the user reads access reviews."""
    campaign_id = parse_id(pk)
    campaign = campaigns_visible_to(user).filter(pk=campaign_id).first() if campaign_id is not None else None
    if campaign is None:
        raise Http404("No such access review")
    return campaign


def review_items_visible_to(user, campaign=None):
    """Admins and auditors see every item; approvers the items of their rules."""
    from accessrequests.authz import permissions
    from accessrequests.models import ReviewItem

    if permissions.read_campaigns_problem(user):
        return ReviewItem.objects.none()
    qs = ReviewItem.objects.all()
    if campaign is not None:
        qs = qs.filter(campaign=campaign)
    if not (roles.is_admin(user) or roles.is_auditor(user)):
        qs = qs.filter(rule_id__in=list(rules_for_approver(user).values_list("pk", flat=True)))
    return qs.select_related(
        "campaign", "rule", "decided_by", "grant__request", "grant__request__requester", "grant__principal",
        "grant__account",
    ).order_by("pk")  # fmt: skip


def get_review_item_for_user(user, pk):
    """The one access helper for a review item: 404 unless it is in the user's view of its campaign."""
    item_id = parse_id(pk)
    item = review_items_visible_to(user).filter(pk=item_id).first() if item_id is not None else None
    if item is None:
        raise Http404("No such review item")
    return item


def open_post_reviews():
    from accessrequests.models import BreakGlassReview

    return BreakGlassReview.objects.filter(reviewed_at__isnull=True).select_related(
        "request", "request__requester", "request__principal", "request__account", "request__rule"
    )


def overdue_post_reviews(now):
    return open_post_reviews().filter(due_at__lte=now).order_by("due_at")


def users_with_verified_email(email: str, *, limit: int = 2) -> list:
    """Portal users (active or not) who verified ``email``, compared without regard to case, at most ``limit``.

    Callers that act for the person an address names need exactly one: two accounts that verified the same
    address, in any case, are two people as far as Gatehouse can tell, and a deactivated one still counts.
    """
    holders = EmailAddress.objects.filter(email__iexact=email.strip(), verified=True).values("user_id")
    return list(get_user_model().objects.filter(pk__in=holders).order_by("pk")[:limit])


def break_glass_rules_for(user):
    """The enabled rules that name ``user`` for break-glass (directly or through a group)."""
    from accessrequests.models import ApprovalRule

    if not user.is_authenticated:
        return ApprovalRule.objects.none()
    return (
        ApprovalRule.objects.filter(enabled=True)
        .filter(Q(break_glass_users=user) | Q(break_glass_groups__in=user.groups.all()))
        .distinct()
    )


MAY_BREAK_GLASS = "gatehouse_may_break_glass"


def may_break_glass(http_request) -> bool:
    """Whether a rule names the signed-in person for break-glass, remembered in the session (read at sign-in and
    again on the break-glass pages) so the menu costs no query; the break-glass service decides for real."""
    session = http_request.session
    if MAY_BREAK_GLASS not in session:
        session[MAY_BREAK_GLASS] = break_glass_rules_for(http_request.user).exists()
    return bool(session[MAY_BREAK_GLASS])


def access_end_of(grant: Grant | None) -> AccessEnd | None:
    """How an ended grant's end reached AWS (None while it is live, or before its end was recorded)."""
    if grant is None or grant.revoked_at is None:
        return None
    return AccessEnd.objects.filter(grant=grant).first()
