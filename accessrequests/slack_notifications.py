"""Slack app notifications (placeholder until the Slack app lands)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="accessrequests.tasks.slack_update_message")
def slack_update_message(request_id: int) -> int:
    return 0
