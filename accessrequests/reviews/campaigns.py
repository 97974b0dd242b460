"""Access reviews: a campaign over long-lived access, its evidence from IAM, keep or revoke, and its deadline.

A campaign takes every active grant that lasts (or has lasted) longer than GATEHOUSE_REVIEW_MIN_AGE_DAYS, and every
grant without an end (standing IAM policies and Identity Center assignments Gatehouse made). Each becomes an item
for the approvers of the grant's rule; ``permissions.review_item_problem`` says who may decide it. Evidence is read
from IAM by a task (``reviews.evidence.review_item_gather_evidence``), one asynchronous last-accessed job per item, asked again
until IAM says COMPLETED. Revoking goes through ``provisioning.grant_revoke``, which removes the access in AWS.

Every step is an audit event on the campaign (object ``review_campaign``/<id>), so the campaign's export is an
audit export filtered to it, with the manifest every audit export has, verifiable offline.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.authz.permissions import SecondFactor
from accessrequests.core import enqueue, plain_text
from accessrequests.models import (
    LIVE_GRANT_STATUSES,
    AuditEvent,
    CampaignStatus,
    EvidenceStatus,
    Grant,
    GrantStatus,
    ItemDecision,
    ReviewCampaign,
    ReviewItem,
)

logger = logging.getLogger(__name__)

EVIDENCE_MAX_ATTEMPTS = 5  # failed reads in a row before Gatehouse stops asking by itself

OBJECT_TYPE = "review_campaign"
MAX_REMINDER_GAP = timedelta(days=7)


class ReviewError(Exception):
    """A review step that cannot be done as asked, with a message for the person who tried."""


# --- scope ------------------------------------------------------------------------------------------------


def grants_in_scope(*, now: datetime, min_age_days: int) -> QuerySet[Grant]:
    """Active grants without an end, lasting longer than the threshold, or live for longer than it already."""
    threshold = timedelta(days=min_age_days)
    return (
        Grant.objects.filter(status=GrantStatus.ACTIVE)
        .filter(
            Q(expires_at__isnull=True)
            | Q(starts_at__lte=now - threshold)
            | Q(expires_at__gt=F("starts_at") + threshold)
        )
        .select_related("request", "principal", "account")
        .order_by("pk")
    )


def record_review_event(
    campaign: ReviewCampaign, action: str, *, actor=None, item: ReviewItem | None = None, **fields
) -> None:
    grant = item.grant if item is not None else None
    audit.record(
        action=action,
        object_type=OBJECT_TYPE,
        object_id=campaign.pk,
        actor=actor,
        request_id=grant.request_id if grant else None,
        principal_id=grant.principal_id if grant else None,
        account_id=grant.account.account_id if grant else "",
        **fields,
    )


def item_facts(item: ReviewItem) -> dict[str, Any]:
    grant = item.grant
    return {
        "campaign": item.campaign.reference,
        "item": item.pk,
        "grant": grant.pk,
        "request": grant.request.reference,
        "principal": grant.principal.external_id,
        "account": grant.account.account_id,
        "rule": item.rule.name,
        "applied_at": grant.applied_at,
        "expires_at": grant.expires_at,
    }


def campaign_start(*, actor=None, now: datetime | None = None, http_request=None) -> ReviewCampaign:
    """Open a campaign over everything in scope now (an admin, or beat on schedule with no actor)."""
    if actor is not None:
        permissions.check(permissions.start_campaign_problem(actor))
    now = now or timezone.now()
    try:
        with transaction.atomic():
            open_one = ReviewCampaign.objects.filter(status=CampaignStatus.OPEN).first()
            if open_one is not None:
                raise ReviewError(f"{open_one.reference} is still open; finish it before starting another.")
            campaign = ReviewCampaign.objects.create(
                started_by=actor,
                started_at=now,
                deadline=now + timedelta(days=max(settings.GATEHOUSE_REVIEW_DEADLINE_DAYS, 1)),
                min_age_days=settings.GATEHOUSE_REVIEW_MIN_AGE_DAYS,
                unused_days=settings.GATEHOUSE_REVIEW_UNUSED_DAYS,
                on_deadline=settings.GATEHOUSE_REVIEW_UNREVIEWED,
                next_reminder_at=now + timedelta(hours=max(settings.GATEHOUSE_REVIEW_REMINDER_HOURS, 1)),
            )
            items = ReviewItem.objects.bulk_create(
                ReviewItem(campaign=campaign, grant=grant, rule_id=grant.request.rule_id)
                for grant in grants_in_scope(now=now, min_age_days=campaign.min_age_days)
            )
            items = list(
                ReviewItem.objects.filter(campaign=campaign).select_related(
                    "campaign", "rule", "grant__request", "grant__principal", "grant__account"
                )
            )
            record_review_event(
                campaign,
                "review.campaign_started",
                actor=actor,
                actor_label=None if actor else "schedule",
                http_request=http_request,
                after={
                    "campaign": campaign.reference,
                    "deadline": campaign.deadline,
                    "min_age_days": campaign.min_age_days,
                    "unused_days": campaign.unused_days,
                    "on_deadline": campaign.on_deadline,
                    "items": [item_facts(item) for item in items],
                },
            )
            _enqueue_evidence([item.pk for item in items])
            _enqueue_notice("notify_review_started", campaign.pk)
    except IntegrityError:
        # The database's one-open-campaign constraint: someone else started one a moment ago.
        raise ReviewError("Another access review was started a moment ago.") from None
    return campaign


# --- side effects, after commit -----------------------------------------------------------------------------


def _enqueue_evidence(item_ids: Iterable[int]) -> None:
    enqueue.after_commit_each(
        "accessrequests.tasks.gather_review_evidence",
        [(item_id,) for item_id in item_ids],
        if_lost="the hourly tick asks again",
    )


def _enqueue_notice(task_name: str, *args: Any) -> None:
    enqueue.after_commit(f"accessrequests.tasks.{task_name}", *args, if_lost="the notification is dropped")


# --- decisions ----------------------------------------------------------------------------------------------


def _locked_item(item_id: int) -> ReviewItem:
    item = (
        ReviewItem.objects.select_for_update(of=("self",))
        .select_related("campaign", "rule", "grant__request", "grant__principal", "grant__account")
        .filter(pk=item_id)
        .first()
    )
    if item is None:
        raise ReviewError("No such review item.")
    return item


def review_item_decide(
    *,
    item_id: int,
    reviewer,
    second_factor: SecondFactor | None,
    decision: str,
    reason: str,
    http_request=None,
) -> ReviewItem:
    """Keep or revoke one item, with a reason; revoke removes the access in AWS through the revoke service."""
    from accessrequests.provisioning import engine as provisioning
    from accessrequests.workflow.requests import decision_facts

    if decision not in (ItemDecision.KEEP, ItemDecision.REVOKE):
        raise ReviewError("Choose keep or revoke.")
    reason = (reason or "").strip()
    if not reason:
        raise ReviewError("Say why you keep or revoke this access (the reason is required).")
    if len(reason) > 2000:
        raise ReviewError("Keep the reason under 2000 characters.")
    hidden = plain_text.hidden_character_problem("The reason", reason)
    if hidden:
        raise ReviewError(hidden)
    permissions.check(permissions.second_factor_problem(reviewer, second_factor))
    with transaction.atomic():
        item = _locked_item(item_id)
        permissions.check(permissions.review_item_problem(reviewer, item))
        now = timezone.now()
        unused = item.is_unused(now)
        if decision == ItemDecision.REVOKE:
            provisioning.grant_revoke(grant_id=item.grant_id, actor=reviewer, review_item=item, reason=reason)
        if (
            ReviewItem.objects.filter(pk=item.pk, decision="").update(
                decision=decision, decided_by=reviewer, decided_at=now, reason=reason
            )
            != 1
        ):
            raise ReviewError("This item was reviewed a moment ago.")
        record_review_event(
            item.campaign,
            f"review.item_{'kept' if decision == ItemDecision.KEEP else 'revoked'}",
            actor=reviewer,
            item=item,
            http_request=http_request,
            after={
                **item_facts(item),
                "decision": decision_facts(decision, second_factor, reason),
                "last_used_at": item.last_used_at,
                "evidence_status": item.evidence_status,
                "unused": unused,
            },
        )
        _close_if_done(item.campaign, now=now)
    item.refresh_from_db()
    return item


def review_item_evidence_retry(*, item_id: int, actor, http_request=None) -> ReviewItem:
    """Ask IAM again, now, for the usage evidence of an item whose read failed (a reviewer or an admin, once the
    cause is fixed): the automatic tries start over."""
    with transaction.atomic():
        item = _locked_item(item_id)
        permissions.check(permissions.evidence_retry_problem(actor, item))
        ReviewItem.objects.filter(pk=item.pk).update(
            evidence_status=EvidenceStatus.PENDING,
            evidence={},
            evidence_job_id="",
            evidence_asked_at=None,
            evidence_attempts=0,
            evidence_next_at=None,
        )
        record_review_event(
            item.campaign,
            "review.evidence_retry_requested",
            actor=actor,
            item=item,
            http_request=http_request,
            after={
                **item_facts(item),
                "previous_error": item.evidence.get("error", ""),
                "failed_attempts": item.evidence_attempts,
            },
        )
        _enqueue_evidence([item.pk])
    item.refresh_from_db()
    return item


def _close_if_done(campaign: ReviewCampaign, *, now: datetime) -> bool:
    if ReviewItem.objects.filter(campaign=campaign, decision="").exists():
        return False
    closed = ReviewCampaign.objects.filter(pk=campaign.pk, status=CampaignStatus.OPEN).update(
        status=CampaignStatus.CLOSED, closed_at=now, next_reminder_at=None
    )
    if closed != 1:
        return False
    counts = {choice.value: 0 for choice in ItemDecision}
    for value in ReviewItem.objects.filter(campaign=campaign).values_list("decision", flat=True):
        counts[value] += 1
    audit.flush()  # the decision that closes the campaign, recorded in this transaction, is one of them
    seqs = list(
        AuditEvent.objects.filter(object_type=OBJECT_TYPE, object_id=str(campaign.pk))
        .order_by("seq")
        .values_list("seq", flat=True)
    )
    record_review_event(
        campaign,
        "review.campaign_closed",
        after={
            "campaign": campaign.reference,
            "closed_at": now,
            "outcomes": counts,
            # Every earlier event of this campaign, so a reader of its export can tell that none is missing.
            "event_seqs": seqs,
        },
    )
    return True


# --- the periodic tick --------------------------------------------------------------------------------------


def _reminder_gap(sent: int) -> timedelta:
    base = timedelta(hours=max(settings.GATEHOUSE_REVIEW_REMINDER_HOURS, 1))
    return min(base * 2**sent, MAX_REMINDER_GAP)


def campaign_due(now: datetime) -> bool:
    """Whether beat should start a campaign now (GATEHOUSE_REVIEW_EVERY_DAYS since the newest one started)."""
    every = settings.GATEHOUSE_REVIEW_EVERY_DAYS
    if every <= 0 or ReviewCampaign.objects.filter(status=CampaignStatus.OPEN).exists():
        return False
    newest = ReviewCampaign.objects.order_by("-started_at").values_list("started_at", flat=True).first()
    return newest is None or newest <= now - timedelta(days=every)


def campaigns_tick(*, now: datetime | None = None) -> dict[str, int]:
    """Beat, hourly (idempotent): start a scheduled campaign, ask for missing evidence, close items whose access
    ended, remind reviewers with backoff, and past a deadline do what the campaign says (remind or revoke)."""
    now = now or timezone.now()
    counts = {"started": 0, "evidence": 0, "ended": 0, "reminded": 0, "revoked": 0, "closed": 0}
    if campaign_due(now):
        try:
            campaign_start(now=now)
            counts["started"] = 1
        except ReviewError:
            pass
    for campaign in ReviewCampaign.objects.filter(status=CampaignStatus.OPEN):
        open_items = ReviewItem.objects.filter(campaign=campaign, decision="")
        due = list(_evidence_due(open_items, now).values_list("pk", flat=True)[:1000])
        with transaction.atomic():
            _enqueue_evidence(due)
        counts["evidence"] += len(due)
        for item_id in open_items.exclude(grant__status__in=LIVE_GRANT_STATUSES).values_list("pk", flat=True):
            counts["ended"] += _end_item(item_id, now=now)
        if campaign.on_deadline == "revoke" and campaign.deadline <= now:
            for item_id in open_items.values_list("pk", flat=True)[:500]:
                counts["revoked"] += _revoke_unreviewed(item_id, now=now)
        counts["reminded"] += _remind(campaign, now=now)
        with transaction.atomic():
            counts["closed"] += _close_if_done(campaign, now=now)
    return counts


def _evidence_due(items: QuerySet[ReviewItem], now: datetime) -> QuerySet[ReviewItem]:
    """Items whose evidence the tick asks for: not read yet (or its message was lost), or failed and due again
    (``reviews.evidence.evidence_retry_gap``; none after ``EVIDENCE_MAX_ATTEMPTS`` failures in a row, until someone
    presses Retry)."""
    return items.filter(
        Q(evidence_status__in=[EvidenceStatus.PENDING, EvidenceStatus.IN_PROGRESS])
        | (
            Q(evidence_status=EvidenceStatus.FAILED, evidence_attempts__lt=EVIDENCE_MAX_ATTEMPTS)
            & (Q(evidence_next_at__isnull=True) | Q(evidence_next_at__lte=now))
        )
    )


def _end_item(item_id: int, *, now: datetime) -> int:
    with transaction.atomic():
        item = _locked_item(item_id)
        if item.decision or item.grant.status in LIVE_GRANT_STATUSES:
            return 0
        ReviewItem.objects.filter(pk=item.pk, decision="").update(decision=ItemDecision.ENDED, decided_at=now)
        record_review_event(
            item.campaign,
            "review.item_ended",
            item=item,
            after={**item_facts(item), "grant_status": item.grant.status},
        )
    return 1


def _revoke_unreviewed(item_id: int, *, now: datetime) -> int:
    from accessrequests.provisioning import engine as provisioning

    with transaction.atomic():
        item = _locked_item(item_id)
        if (
            permissions.unreviewed_revoke_problem(item, now=now)
            or item.grant.status not in LIVE_GRANT_STATUSES
        ):
            return 0
        provisioning.grant_revoke(
            grant_id=item.grant_id,
            actor=None,
            review_item=item,
            reason=f"unreviewed by the deadline of {item.campaign.reference}",
        )
        ReviewItem.objects.filter(pk=item.pk, decision="").update(
            decision=ItemDecision.REVOKED_UNREVIEWED, decided_at=now
        )
        record_review_event(
            item.campaign,
            "review.item_revoked_unreviewed",
            item=item,
            after={**item_facts(item), "deadline": item.campaign.deadline},
        )
    return 1


def _remind(campaign: ReviewCampaign, *, now: datetime) -> int:
    if campaign.next_reminder_at is None or campaign.next_reminder_at > now:
        return 0
    if not ReviewItem.objects.filter(campaign=campaign, decision="").exists():
        return 0
    sent = campaign.reminders_sent
    with transaction.atomic():
        # The conditional update is the claim: two ticks racing send one round.
        claimed = ReviewCampaign.objects.filter(
            pk=campaign.pk, status=CampaignStatus.OPEN, reminders_sent=sent
        ).update(reminders_sent=sent + 1, next_reminder_at=now + _reminder_gap(sent + 1))
        if claimed != 1:
            return 0
        record_review_event(
            campaign,
            "review.reminders_sent",
            after={"campaign": campaign.reference, "round": sent + 1, "overdue": campaign.deadline <= now},
        )
        _enqueue_notice("notify_review_reminder", campaign.pk, sent + 1)
    return 1


# --- reading ------------------------------------------------------------------------------------------------


def parse_reference(value: str) -> int | None:
    digits = (value or "").strip().upper().removeprefix("AR-").lstrip("0")
    return int(digits) if digits.isdigit() and len(digits) < 12 else None


ITEM_FIELDS = (
    "campaign",
    "item",
    "request",
    "principal",
    "account_id",
    "rule",
    "applied_at",
    "expires_at",
    "last_used_at",
    "unused",
    "decision",
    "reviewer",
    "decided_at",
    "reason",
)


def item_rows(campaign: ReviewCampaign) -> list[dict[str, Any]]:
    """The campaign's items as a table (the export and the evidence pack); the audit export is the proof."""
    now = campaign.closed_at or timezone.now()
    rows = []
    items = ReviewItem.objects.filter(campaign=campaign).select_related(
        "campaign", "rule", "decided_by", "grant__request", "grant__principal", "grant__account"
    )
    for item in items:
        grant = item.grant
        rows.append(
            {
                "campaign": campaign.reference,
                "item": item.pk,
                "request": grant.request.reference,
                "principal": grant.principal.external_id,
                "account_id": grant.account.account_id,
                "rule": item.rule.name,
                "applied_at": grant.applied_at.isoformat() if grant.applied_at else "",
                "expires_at": grant.expires_at.isoformat() if grant.expires_at else "never",
                "last_used_at": item.last_used_at.isoformat() if item.last_used_at else "",
                "unused": "yes" if item.is_unused(now) else "",
                "decision": item.get_decision_display() if item.decision else "not reviewed",
                "reviewer": item.decided_by.get_username() if item.decided_by else "",
                "decided_at": item.decided_at.isoformat() if item.decided_at else "",
                "reason": item.reason,
            }
        )
    return rows


def export_plan(campaign: ReviewCampaign, fmt: str = "csv", *, through_seq: int | None = None):
    """The campaign's audit events as an audit export (with its manifest): every step of it, verifiable offline."""
    from accessrequests.audit import exports

    return exports.plan({"campaign": campaign.reference}, fmt, through_seq=through_seq)
