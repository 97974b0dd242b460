"""How a grant's end reaches AWS: the removal, AWS seen refusing it, and the deny that ends older sessions."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accessrequests.models.requests import Grant


class EndState(models.TextChoices):
    CHECKING = "checking", "Not yet confirmed in AWS"
    CONFIRMED = "confirmed", "Confirmed in AWS"
    # The principal still holds the access through something Gatehouse did not create (a policy or an
    # assignment made by hand before or beside the grant): Gatehouse's part is gone, and it says so.
    HELD_ELSEWHERE = "held_elsewhere", "Still allowed by something Gatehouse did not create"


class FenceKind(models.TextChoices):
    """Where the deny that refuses sessions issued before the end lives (none where AWS needs none)."""

    NONE = "none", "None needed"
    PERMISSION_SET = "permission_set", "Statement in the shared permission set's inline policy"
    PORTAL_PERMISSION_SET = "portal_permission_set", "Statement in the portal-owned permission set"
    IAM_ROLE = "iam_role", "The role's inline policy gatehouse-ended-sessions"


class AccessEnd(models.Model):
    """The end of one grant in AWS.

    ``ended_at`` is when Gatehouse's removal was written. Sessions issued before it (an Identity Center
    session of the permission set's role, an assumed role) may outlive the removal, so a deny scoped to them
    (``fence``: ``aws:TokenIssueTime`` before ``ended_at``, and for a shared permission set the person's
    ``aws:userid``) is kept in AWS until ``sessions_until``, when the longest such session has expired anyway,
    and then removed. ``confirmed_at`` is when the policies read back from AWS, evaluated for a session issued
    before the end, refused every action the grant gave. ``residual`` says why some session may outlive the
    end, where AWS gives no way to end it sooner.
    """

    grant = models.OneToOneField(Grant, on_delete=models.PROTECT, related_name="access_end")
    ended_at = models.DateTimeField()
    state = models.CharField(max_length=16, choices=EndState.choices, default=EndState.CHECKING)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    outcome = models.TextField(blank=True, help_text="The last check, in words.")
    checks = models.PositiveIntegerField(default=0)
    next_check_at = models.DateTimeField(null=True, blank=True)
    fence_kind = models.CharField(max_length=24, choices=FenceKind.choices, default=FenceKind.NONE)
    fence_account_id = models.CharField(max_length=12, blank=True)
    fence_target = models.CharField(max_length=2048, blank=True, help_text="Permission set ARN or role name.")
    fence = models.JSONField(default=list, blank=True, help_text="The deny statements, as written to AWS.")
    sessions_until = models.DateTimeField(
        null=True, blank=True, help_text="Sessions issued before the end cannot live past this."
    )
    fence_written_at = models.DateTimeField(null=True, blank=True)
    fence_removed_at = models.DateTimeField(null=True, blank=True)
    fence_checked_at = models.DateTimeField(null=True, blank=True)
    residual = models.TextField(blank=True, help_text="Why a session issued before may outlive the end.")

    class Meta:
        indexes = [
            models.Index(fields=["state", "next_check_at"], name="accessend_state_next"),
            models.Index(fields=["fence_kind", "sessions_until"], name="accessend_fence_until"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=~Q(state=EndState.CONFIRMED) | Q(confirmed_at__isnull=False),
                name="%(app_label)s_%(class)s_confirmed_has_time",
            ),
            models.CheckConstraint(
                condition=Q(fence_kind=FenceKind.NONE)
                | (~Q(fence_target="") & Q(sessions_until__isnull=False)),
                name="%(app_label)s_%(class)s_fence_has_target",
            ),
        ]

    def __str__(self) -> str:
        return f"end of grant {self.grant_id}"

    @property
    def fence_live(self) -> bool:
        return self.fence_kind != FenceKind.NONE and self.fence_removed_at is None
