"""Notifications: one row per message that should leave Gatehouse (an email to one person, a Slack post for one
rule), so a task that runs twice — a redelivered message, a retry, two beat runs — sends it once."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from accessrequests.models.requests import AccessRequest, Grant


class NotificationChannel(models.TextChoices):
    EMAIL = "email", "Email"
    SLACK = "slack", "Slack"
    SLACK_DM = "slack_dm", "Slack direct message"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"
    # An announcement that was interrupted and is no longer worth sending (the request was decided meanwhile).
    NOT_NEEDED = "not_needed", "Not needed"


class Notification(models.Model):
    """One message for one recipient about one event, claimed before it is sent and marked once it was.

    ``event_key`` names the event (``request.created:42``, ``grant.expiring:7``); ``recipient`` is an email
    address, or ``rule:<id>`` for a Slack webhook (the webhook URL is a secret and is never stored here).
    A failed send stays retryable until ``attempts`` reaches the limit of the sending task.
    """

    event_key = models.CharField(max_length=100)
    channel = models.CharField(max_length=10, choices=NotificationChannel.choices)
    recipient = models.CharField(max_length=254)
    request = models.ForeignKey(
        AccessRequest, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    grant = models.ForeignKey(
        Grant, null=True, blank=True, on_delete=models.CASCADE, related_name="notifications"
    )
    status = models.CharField(
        max_length=10, choices=NotificationStatus.choices, default=NotificationStatus.PENDING
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(
        max_length=500, blank=True, help_text="Why the last send failed; no secrets."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            # The idempotence key: a second task for the same event finds this row instead of sending again.
            models.UniqueConstraint(
                fields=["event_key", "channel", "recipient"],
                name="%(app_label)s_%(class)s_once_per_recipient",
            ),
            models.CheckConstraint(
                condition=~Q(status="sent") | Q(sent_at__isnull=False),
                name="%(app_label)s_%(class)s_sent_has_time",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.event_key} {self.channel} to {self.recipient} ({self.status})"
