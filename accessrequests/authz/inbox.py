"""What waits for an approver ("Needs your review"): pending requests they may decide, break-glass uses they may
review afterwards, and access-review items they may keep or revoke, in one list, the one due first on top. Reads
only.

Each kind is its rule in ``permissions`` written as a query: ``decide_problem`` (``selectors.review_queue``),
``post_review_problem`` and ``review_item_problem``: under a rule the person approves, not theirs, not reaching
them (``recipients.Reach``), not done yet. A page costs the same queries however many rows wait: each kind is read
once as (id, due time) up to the rows the page needs, merged in Python, and only the rows shown are loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone

from accessrequests.authz import permissions, selectors
from accessrequests.authz.recipients import Reach, reach_of
from accessrequests.authz.routing import rules_for_approver
from accessrequests.core.paging import Page
from accessrequests.models import (
    LIVE_GRANT_STATUSES,
    AccessRequest,
    BreakGlassReview,
    CampaignStatus,
    ReviewItem,
)

REQUEST, POST_REVIEW, REVIEW_ITEM = "request", "post_review", "review_item"
KINDS = {
    REQUEST: "Requests",
    POST_REVIEW: "Break-glass post-reviews",
    REVIEW_ITEM: "Access-review items",
}
COUNT_CAP = selectors.QUEUE_COUNT_CAP  # "99+" beyond it rather than counting a long queue
PAGE_SIZE = 25


@dataclass(frozen=True)
class Work:
    """One thing waiting for the person: what it is, when it is due, where it is decided, and the row itself."""

    kind: str
    due_at: datetime
    obj: Any

    @property
    def url(self) -> str:
        if self.kind == REQUEST:
            return reverse("review", args=[self.obj.pk])
        if self.kind == POST_REVIEW:
            return reverse("break_glass_review", args=[self.obj.request_id])
        return (
            f"{reverse('review_campaign', args=[self.obj.campaign_id])}?item={self.obj.pk}#item-{self.obj.pk}"
        )

    @property
    def overdue(self) -> bool:
        return self.due_at <= timezone.now()


@dataclass(frozen=True)
class Counts:
    """How much of each kind waits (counted up to ``COUNT_CAP`` + 1)."""

    by_kind: dict[str, int] = field(default_factory=dict)

    def _label(self, n: int) -> str:
        return f"{COUNT_CAP}+" if n > COUNT_CAP else str(n)

    @property
    def total(self) -> int:
        return sum(self.by_kind.values())

    @property
    def total_label(self) -> str:
        return self._label(self.total)

    @property
    def rows(self) -> list[tuple[str, str, str]]:
        """(kind, its name, how many) for each kind, as a page lists them."""
        return [(kind, name, self._label(self.by_kind.get(kind, 0))) for kind, name in KINDS.items()]

    @property
    def request_label(self) -> str:
        return self._label(self[REQUEST])

    @property
    def post_review_label(self) -> str:
        return self._label(self[POST_REVIEW])

    @property
    def review_item_label(self) -> str:
        return self._label(self[REVIEW_ITEM])

    @property
    def phrases(self) -> list[tuple[str, str]]:
        """(how many, what waits) for each kind that has something, as the home page says it."""
        said = {
            REQUEST: ("request waits for your review", "requests wait for your review"),
            POST_REVIEW: (
                "break-glass use waits for your post-review",
                "break-glass uses wait for your post-review",
            ),
            REVIEW_ITEM: (
                "access-review item waits to be kept or revoked",
                "access-review items wait to be kept or revoked",
            ),
        }
        return [(self._label(n), said[kind][n != 1]) for kind, n in self.by_kind.items() if n]

    def __getitem__(self, kind: str) -> int:
        if kind not in KINDS:
            raise KeyError(kind)  # templates look names up as keys first: only the kinds are keys
        return self.by_kind.get(kind, 0)


@dataclass(frozen=True)
class Inbox:
    page: Page  # of Work, most urgent first
    counts: Counts  # of what the filters leave
    menu_counts: Counts  # of everything waiting, as the menu says it


@dataclass(frozen=True)
class Filters:
    """What the review queue's filter narrows (each optional): an account id, a request kind, work waiting since
    before a time, and which kind of work is listed (the counts still say how much of each waits)."""

    account: str | None = None
    kind: str | None = None
    work: str | None = None
    older_than: datetime | None = None


def _sources(
    user, filters: Filters, *, rule_ids: list[int], reach: Reach, requests: QuerySet
) -> dict[str, tuple[QuerySet, str]]:
    """Each kind of work the person may do, as a query ordered by when it is due, and that due field.
    ``requests``: the pending requests they may decide (``selectors.review_queue``), narrowed here."""
    reviews = (
        BreakGlassReview.objects.filter(reviewed_at__isnull=True, request__rule_id__in=rule_ids)
        .exclude(request__requester=user)
        .exclude(reach.q("request__"))
    )
    items = (
        ReviewItem.objects.filter(
            campaign__status=CampaignStatus.OPEN,
            decision="",
            rule_id__in=rule_ids,
            grant__status__in=LIVE_GRANT_STATUSES,
        )
        .exclude(grant__request__requester=user)
        .exclude(reach.q("grant__request__"))
    )
    if filters.account:
        requests = requests.filter(account__account_id=filters.account)
        reviews = reviews.filter(request__account__account_id=filters.account)
        items = items.filter(grant__account__account_id=filters.account)
    if filters.kind:
        requests = requests.filter(kind=filters.kind)
        reviews = reviews.filter(request__kind=filters.kind)
        items = items.filter(grant__request__kind=filters.kind)
    if filters.older_than:
        # Waiting since: a request since it was filed, a break-glass use since it was used, an item since its
        # access review started.
        requests = requests.filter(created_at__lt=filters.older_than)
        reviews = reviews.filter(request__created_at__lt=filters.older_than)
        items = items.filter(campaign__started_at__lt=filters.older_than)
    return {
        REQUEST: (requests, "created_at"),
        POST_REVIEW: (reviews.order_by("due_at", "pk"), "due_at"),
        REVIEW_ITEM: (items.order_by("campaign__deadline", "pk"), "campaign__deadline"),
    }


def _heads(sources: dict[str, tuple[QuerySet, str]], want: int) -> dict[str, list[tuple[datetime, int]]]:
    """(due time, id) of the first ``want`` of each kind: one query a kind."""
    window = permissions.pending_window()
    heads: dict[str, list[tuple[datetime, int]]] = {}
    for kind, (query, due) in sources.items():
        rows = list(query.select_related(None).values_list(due, "pk")[:want])
        # A request is due when its review window closes; the others carry their due time.
        heads[kind] = [(when + window, pk) for when, pk in rows] if kind == REQUEST else rows
    return heads


def _load(kind: str, ids: list[int]) -> dict[int, Any]:
    if not ids:
        return {}
    if kind == REQUEST:
        # A row says what is asked in a line (``_work.html``): who asks, for whom, where, under which rule; not
        # the role to pass, the permission set, the policy or the pasted message (two joins fewer: PostgreSQL
        # hashed the whole table of passable roles for 25 rows).
        return selectors.with_decisions(
            AccessRequest.objects.select_related("requester", "principal", "account", "rule").defer(
                "statements", "pasted_text"
            )
        ).in_bulk(ids)
    if kind == POST_REVIEW:
        return BreakGlassReview.objects.select_related(
            "request", "request__requester", "request__principal", "request__account", "request__rule"
        ).in_bulk(ids)
    return ReviewItem.objects.select_related(
        "campaign",
        "rule",
        "grant__request",
        "grant__request__requester",
        "grant__principal",
        "grant__account",
    ).in_bulk(ids)


def review_inbox(user, *, filters: Filters | None = None, page: int = 1, size: int = PAGE_SIZE) -> Inbox:
    """One page of the work waiting for ``user``, most urgent first, how much of each kind waits (as filtered),
    and how much waits in all, for the menu (counted again, unfiltered, only when a filter narrows the work)."""
    filters = filters or Filters()
    if permissions.decider_problem(user):
        empty = Counts()
        return Inbox(page=Page(object_list=[], number=1, has_next=False), counts=empty, menu_counts=empty)
    page = max(page, 1)
    want = max(COUNT_CAP + 1, page * size + 1)
    # The person's rules, whom they may not decide for and their pending requests are read once, for the page and
    # for the menu's counts alike.
    rule_ids = list(rules_for_approver(user).values_list("pk", flat=True))
    reach = reach_of(user)
    requests = selectors.review_queue(user, rule_ids=rule_ids, reach=reach)
    heads = _heads(_sources(user, filters, rule_ids=rule_ids, reach=reach, requests=requests), want)
    order = list(KINDS)
    listed = [filters.work] if filters.work in KINDS else order
    merged = sorted((when, order.index(kind), pk, kind) for kind in listed for when, pk in heads[kind])
    start = (page - 1) * size
    shown = merged[start : start + size]
    loaded = {kind: _load(kind, [pk for _, _, pk, k in shown if k == kind]) for kind in listed}
    # A row gone between the two reads (decided a moment ago) is left out.
    rows = [Work(kind, when, loaded[kind][pk]) for when, _, pk, kind in shown if pk in loaded[kind]]
    counts = Counts({kind: len(found) for kind, found in heads.items()})
    menu_counts = counts
    # Which kind is listed does not change the counts; the other filters do.
    if filters.account or filters.kind or filters.older_than:
        everything = _sources(user, Filters(), rule_ids=rule_ids, reach=reach, requests=requests)
        menu_counts = Counts({kind: len(found) for kind, found in _heads(everything, COUNT_CAP + 1).items()})
    return Inbox(
        page=Page(object_list=rows, number=page, has_next=len(merged) > start + size),
        counts=counts,
        menu_counts=menu_counts,
    )


def counts_for(user) -> Counts:
    """How much waits for ``user``, for the navigation (nothing loaded but ids)."""
    return review_inbox(user, size=0).menu_counts


MENU_COUNTS = "gatehouse_review_counts"  # on the request: what a page already counted, for the menu


def show_in_menu(http_request, counts: Counts) -> None:
    """Let the menu use what the page counted instead of counting again (``portal.context_processors``)."""
    setattr(http_request, MENU_COUNTS, counts)
