"""The Slack message that announces a request in its rule's channel and is updated in place as it moves."""

from __future__ import annotations

from django.conf import settings
from django.db import models

from accessrequests.models.requests import AccessRequest


class SlackMessage(models.Model):
    """One channel message per request: posted once (``ts`` set when Slack answered), then edited with
    ``chat.update`` for every change, and followed by reminders in its thread while the request waits."""

    request = models.OneToOneField(AccessRequest, on_delete=models.CASCADE, related_name="slack_message")
    channel = models.CharField(max_length=100)
    ts = models.CharField(max_length=32, blank=True, help_text="Slack's id of the message, once posted.")
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    next_reminder_at = models.DateTimeField(null=True, blank=True)
    posted_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["next_reminder_at"], name="slackmsg_next_reminder")]

    def __str__(self) -> str:
        return f"Slack message for {self.request.reference}"
