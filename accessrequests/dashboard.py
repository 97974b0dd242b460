"""The admin dashboard's figures: each a bounded query, whatever the size of the tables."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from accessrequests.authz.selectors import overdue_post_reviews
from accessrequests.models import (
    AccessRequest,
    AuditEvent,
    AwsAccount,
    CampaignStatus,
    DriftCheck,
    Grant,
    GrantStatus,
    RequestStatus,
    ReviewCampaign,
    ReviewItem,
    RuleChange,
    RuleChangeStatus,
)

STUCK_AFTER = timedelta(minutes=10)


def _median(qs: QuerySet, start: str, end: str) -> timedelta | None:
    """Median of end - start over qs: one COUNT and one row at the middle offset (portable, no percentile_cont)."""
    durations = qs.annotate(span=ExpressionWrapper(F(end) - F(start), output_field=DurationField())).order_by(
        "span"
    )
    n = durations.count()
    if n == 0:
        return None
    return durations.values_list("span", flat=True)[n // 2]


def pending_summary(now) -> dict[str, Any]:
    return AccessRequest.objects.filter(status=RequestStatus.PENDING).aggregate(
        total=Count("pk"),
        under_hour=Count("pk", filter=Q(created_at__gte=now - timedelta(hours=1))),
        under_day=Count(
            "pk", filter=Q(created_at__lt=now - timedelta(hours=1), created_at__gte=now - timedelta(days=1))
        ),
        over_day=Count("pk", filter=Q(created_at__lt=now - timedelta(days=1))),
    )


def requests_per_day(now, days: int = 30) -> list[tuple[date, int]]:
    start = (now - timedelta(days=days - 1)).date()
    rows = dict(
        AccessRequest.objects.filter(created_at__date__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values_list("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    return [(start + timedelta(days=i), rows.get(start + timedelta(days=i), 0)) for i in range(days)]


def chart_svg(series: list[tuple[date, int]], width: int = 640, height: int = 140) -> dict[str, Any]:
    """Bars for an inline SVG drawn by the template (no JavaScript, no CDN)."""
    top = max((n for _, n in series), default=0) or 1
    slot = width / max(len(series), 1)
    bars = []
    for i, (day, n) in enumerate(series):
        h = round((height - 20) * n / top, 1)
        bars.append(
            {
                "x": round(i * slot + 1, 1),
                "y": round(height - 16 - h, 1),
                "w": round(slot - 2, 1),
                "h": h,
                "day": day,
                "n": n,
            }
        )
    return {"width": width, "height": height, "bars": bars, "top": top}


def open_review_progress() -> dict[str, Any] | None:
    """The open access review, and how far its reviewers are (two queries)."""
    campaign = ReviewCampaign.objects.filter(status=CampaignStatus.OPEN).first()
    if campaign is None:
        return None
    counts = ReviewItem.objects.filter(campaign=campaign).aggregate(
        total=Count("pk"), open=Count("pk", filter=Q(decision=""))
    )
    return {"campaign": campaign, **counts}


IDENTITY_ACTIONS = ("identity.roles_synced", "identity.principals_synced")


def identity_changes(now, days: int = 7) -> list[tuple[AuditEvent, str]]:
    """What the identity provider changed in roles and principal links lately (applied with no second admin),
    each with its sentence."""
    from accessrequests.notify.text import identity_change_words

    events = AuditEvent.objects.filter(
        action__in=IDENTITY_ACTIONS, created_at__gte=now - timedelta(days=days)
    ).order_by("-seq")[:20]
    return [(e, identity_change_words(e)) for e in events]


def figures() -> dict[str, Any]:
    now = timezone.now()
    month = now - timedelta(days=30)
    stuck = Grant.objects.filter(
        Q(status=GrantStatus.FAILED)
        | Q(
            status__in=[GrantStatus.QUEUED, GrantStatus.APPLYING, GrantStatus.REVOKING],
            updated_at__lt=now - STUCK_AFTER,
        )
    ).select_related("principal", "account", "request")
    series = requests_per_day(now)
    return {
        "now": now,
        "pending": pending_summary(now),
        "oldest_pending": AccessRequest.objects.filter(status=RequestStatus.PENDING)
        .select_related("requester", "account")
        .order_by("created_at")[:5],
        "median_decision": _median(
            AccessRequest.objects.filter(decided_at__gte=month).exclude(status=RequestStatus.PENDING),
            "created_at",
            "decided_at",
        ),
        "median_applied": _median(
            Grant.objects.filter(applied_at__gte=month), "request__created_at", "applied_at"
        ),
        "active_grants": Grant.objects.filter(status=GrantStatus.ACTIVE).count(),
        "expiring": Grant.objects.filter(status=GrantStatus.ACTIVE, expires_at__lte=now + timedelta(hours=24))
        .select_related("principal", "account", "request")
        .order_by("expires_at")[:10],
        "stuck": stuck.order_by("updated_at")[:20],
        "drift": AuditEvent.objects.filter(action__startswith="drift.").order_by("-id")[:10],
        "drift_check": DriftCheck.current(),
        # The accounts the sync reads; disabled ones (an earlier demo world's, say) are only counted.
        "accounts": AwsAccount.objects.filter(enabled=True).order_by("name")[:50],
        "disabled_accounts": AwsAccount.objects.filter(enabled=False).count(),
        "chart": chart_svg(series),
        # Break-glass in red: every use of the last week, and post-reviews past their time as an alert.
        "break_glass": AccessRequest.objects.filter(break_glass=True, created_at__gte=now - timedelta(days=7))
        .select_related("requester", "principal", "account", "break_glass_review")
        .order_by("-created_at")[:20],
        "overdue_post_reviews": list(overdue_post_reviews(now)[:20]),
        "review": open_review_progress(),
        "identity_changes": identity_changes(now),
        "governed_pending": RuleChange.objects.filter(status=RuleChangeStatus.PENDING)
        .select_related("proposed_by")
        .order_by("proposed_at")[:10],
        "requests_30d": sum(n for _, n in series),
    }
