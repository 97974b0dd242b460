"""Access reviews: periodic campaigns of items, each kept or revoked by a reviewer, and the
post-review every break-glass use needs."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q

from accessrequests.models.requests import AccessRequest, ApprovalRule, Grant


class CampaignStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"


class UnreviewedOutcome(models.TextChoices):
    """What happens to an item nobody reviewed by the campaign's deadline (GATEHOUSE_REVIEW_UNREVIEWED)."""

    REMIND = "remind", "Keep reminding the reviewers"
    REVOKE = "revoke", "Revoke the access"


class ReviewCampaign(models.Model):
    """One access review: every grant in scope when it started, each an item for its rule's approvers.

    The settings it started under are copied onto it, so a campaign is judged by the rules it was announced with
    even when the settings change while it runs.
    """

    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="Empty when beat started it on schedule.",
    )  # fmt: skip
    started_at = models.DateTimeField()
    deadline = models.DateTimeField()
    status = models.CharField(max_length=10, choices=CampaignStatus.choices, default=CampaignStatus.OPEN)
    closed_at = models.DateTimeField(null=True, blank=True)
    min_age_days = models.PositiveIntegerField(help_text="Grants lasting longer than this are in scope.")
    unused_days = models.PositiveIntegerField(
        help_text="Access unused this long is flagged: revoke suggested."
    )
    on_deadline = models.CharField(max_length=10, choices=UnreviewedOutcome.choices)
    reminders_sent = models.PositiveIntegerField(default=0)
    next_reminder_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status=CampaignStatus.OPEN, closed_at__isnull=True)
                | Q(status=CampaignStatus.CLOSED, closed_at__isnull=False),
                name="%(app_label)s_%(class)s_closed_has_time",
            ),
            models.CheckConstraint(
                condition=Q(deadline__gt=models.F("started_at")),
                name="%(app_label)s_%(class)s_deadline_after_start",
            ),
            # Two beat processes (or an admin and beat) racing to start one: only one campaign is open at a time.
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="open"), name="%(app_label)s_%(class)s_one_open"
            ),
        ]

    def __str__(self) -> str:
        return self.reference

    @property
    def reference(self) -> str:
        return f"AR-{self.pk:06d}" if self.pk else "AR-new"


class ItemDecision(models.TextChoices):
    KEEP = "keep", "Kept"
    REVOKE = "revoke", "Revoked"
    REVOKED_UNREVIEWED = "revoked_unreviewed", "Revoked unreviewed (past the deadline)"
    ENDED = "ended", "Ended before review"


class EvidenceStatus(models.TextChoices):
    PENDING = "pending", "Not asked yet"
    IN_PROGRESS = "in_progress", "AWS is preparing it"
    COMPLETED = "completed", "Read from AWS"
    UNAVAILABLE = "unavailable", "Not available for this access"
    FAILED = "failed", "AWS did not answer"


class ReviewItem(models.Model):
    """One grant under review: the evidence of its use, and the reviewer's keep or revoke with a reason."""

    campaign = models.ForeignKey(ReviewCampaign, on_delete=models.PROTECT, related_name="items")
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="review_items")
    rule = models.ForeignKey(
        ApprovalRule, on_delete=models.PROTECT, related_name="review_items",
        help_text="Its approvers review the item (never someone the access reaches).",
    )  # fmt: skip
    evidence_status = models.CharField(
        max_length=12, choices=EvidenceStatus.choices, default=EvidenceStatus.PENDING
    )
    evidence_job_id = models.CharField(max_length=100, blank=True)
    evidence = models.JSONField(
        default=dict, blank=True, help_text="What IAM said, as shown to the reviewer."
    )
    evidence_at = models.DateTimeField(null=True, blank=True)
    evidence_asked_at = models.DateTimeField(
        null=True, blank=True, help_text="When IAM was asked for the report now being prepared (its job id)."
    )
    evidence_attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Reads that failed in a row; Gatehouse stops asking by itself after a few."
    )
    evidence_next_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the hourly tick asks IAM again after a failed read (none: it stopped).",
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    decision = models.CharField(max_length=20, choices=ItemDecision.choices, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, max_length=2000)

    class Meta:
        ordering = ["pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["campaign", "grant"], name="%(app_label)s_%(class)s_once_per_campaign"
            ),
            models.CheckConstraint(
                condition=Q(decision="", decided_at__isnull=True)
                | (~Q(decision="") & Q(decided_at__isnull=False)),
                name="%(app_label)s_%(class)s_decided_has_time",
            ),
            # A person's keep or revoke always says why.
            models.CheckConstraint(
                condition=~Q(decision__in=["keep", "revoke"]) | (Q(decided_by__isnull=False) & ~Q(reason="")),
                name="%(app_label)s_%(class)s_decision_has_reviewer_and_reason",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.campaign.reference} item {self.pk}"

    def is_unused(self, now) -> bool:
        """Not used in the campaign's N days ("revoke suggested"): never used since it was applied that long ago,
        or last used before then. Without evidence nothing is suggested."""
        if self.evidence_status != EvidenceStatus.COMPLETED:
            return False
        cutoff = now - timedelta(days=self.campaign.unused_days)
        if self.last_used_at is not None:
            return self.last_used_at < cutoff
        applied = self.grant.applied_at or self.grant.starts_at
        return applied < cutoff


class PostReviewOutcome(models.TextChoices):
    JUSTIFIED = "justified", "Justified"
    NOT_JUSTIFIED = "not_justified", "Not justified (access revoked if still live)"


class BreakGlassReview(models.Model):
    """The review after the fact that every break-glass use needs from another approver, due by ``due_at``."""

    request = models.OneToOneField(AccessRequest, on_delete=models.PROTECT, related_name="break_glass_review")
    due_at = models.DateTimeField()
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.CharField(max_length=20, choices=PostReviewOutcome.choices, blank=True)
    comment = models.TextField(blank=True, max_length=2000)
    overdue_reported_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sweep recorded (and told admins) that the review is late."
    )

    class Meta:
        ordering = ["due_at", "id"]
        indexes = [models.Index(fields=["reviewed_at", "due_at"], name="bg_review_open_due")]
        constraints = [
            models.CheckConstraint(
                condition=Q(reviewed_at__isnull=True, reviewer__isnull=True, outcome="")
                | (Q(reviewed_at__isnull=False, reviewer__isnull=False) & ~Q(outcome="") & ~Q(comment="")),
                name="%(app_label)s_%(class)s_reviewed_is_whole",
            ),
        ]

    def __str__(self) -> str:
        return f"post-review of {self.request.reference}"
