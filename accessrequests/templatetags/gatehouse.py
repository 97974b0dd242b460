"""Template filters for Gatehouse pages."""

from __future__ import annotations

import re
from datetime import timedelta

from django import template

register = template.Library()


@register.filter
def plain(value) -> str:
    """Free text as it is: a hidden character (a right-to-left override, a zero-width space, stored before such
    characters were refused) is written out where it is, ``[U+202E]``, instead of disguising the text."""
    from accessrequests.core.plain_text import shown

    return shown("" if value is None else str(value))


@register.filter
def duration(value: timedelta | None) -> str:
    """A timedelta as a person would say it: '45 s', '12 min', '3 h 5 min', '2 d 4 h'."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    if seconds < 1:
        return f"{value.total_seconds() * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds} s"
    minutes, _ = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@register.filter
def due(value) -> str:
    """When something waiting for a person is due, from now: 'due in 3 h 5 min' or 'overdue by 2 d 4 h'."""
    from django.utils import timezone

    left = value - timezone.now()
    if left.total_seconds() <= 0:
        return f"overdue by {duration(-left)}"
    return f"due in {duration(left)}"


# What each event of a request's timeline means, in words (the audit log keeps the exact names).
EVENT_LABELS = {
    "request.created": "Filed",
    "request.auto_approved": "Approved automatically (low risk under its rule)",
    "request.approval_recorded": "Approval recorded",
    "request.approved": "Approved",
    "request.denied": "Denied",
    "request.cancelled": "Cancelled by the requester",
    "request.expired_unreviewed": "Closed: nobody reviewed it in time",
    "grant.queued": "Queued for AWS",
    "grant.applied": "Applied in AWS",
    "grant.verified": "Read back from AWS and verified",
    "grant.failed": "AWS refused or failed; will be retried",
    "grant.revoke_requested": "Revocation requested",
    "grant.abandon_requested": "Abandoned by an admin",
    "grant.expiring": "Expired; being removed from AWS",
    "grant.revoke_failed": "Removal from AWS failed; will be retried",
    "grant.revoked": "Removed from AWS (revoked)",
    "grant.expired": "Removed from AWS (expired)",
    "grant.abandoned": "Removed from AWS (abandoned)",
    "grant.retry_requested": "Retry requested by an admin",
    "request.break_glass": "Break-glass: applied at once with no approver",
    "request.break_glass_reviewed": "Break-glass reviewed afterwards",
    "request.break_glass_review_overdue": "Break-glass review overdue",
    "review.evidence_read": "Last use read from IAM (access review)",
    "review.item_kept": "Kept in an access review",
    "review.item_revoked": "Revoked in an access review",
    "review.item_revoked_unreviewed": "Revoked: nobody reviewed it by the access review's deadline",
    "review.item_ended": "Ended before its access review",
}


@register.filter
def event_label(action: str) -> str:
    """A timeline event in words; an unknown one keeps its name with the dots made readable."""
    return EVENT_LABELS.get(action) or action.replace(".", " ").replace("_", " ").capitalize()


_KEEP = {"IAM", "AWS", "TOTP", "MFA", "API", "ID", "OIDC", "SSO", "URL"}


@register.filter
def sentence_case(text: str) -> str:
    """'Two-Factor Authentication' -> 'Two-factor authentication' (allauth titles its pages in Title Case)."""
    first = True

    def lower(match: re.Match[str]) -> str:
        nonlocal first
        word = match.group(0)
        keep = first or word.upper() in _KEEP or not (word[0].isupper() and word[1:].islower())
        first = False
        # Only a Title-cased word is lowered: references (GH-000042), acronyms and names in capitals stay.
        return word if keep else word.lower()

    return re.sub(r"[A-Za-z]+", lower, str(text))
