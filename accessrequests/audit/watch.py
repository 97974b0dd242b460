"""Watching the audit trail: the periodic verification and what a failure sets off.

Beat runs ``audit_integrity_check`` every 15 minutes. When the trail verifies, the state says so. When it does not,
the state turns red (the audit pages show a banner, the API a header, /healthz a failing ``audit`` field), and an
``audit.integrity_failed`` event is recorded and mailed to admins and auditors — once per first broken sequence
number, not every 15 minutes. When it verifies again (say after a restore), ``audit.integrity_restored`` is recorded.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from accessrequests.audit import integrity
from accessrequests.audit import trail as audit
from accessrequests.models import AuditIntegrity
from accessrequests.notify import hooks as notify


def audit_integrity_check() -> dict[str, Any]:
    """Verify the trail against the local checkpoints and record the outcome; returns the report as a dict."""
    report = integrity.verify_trail(include_s3=False)
    now = timezone.now()
    first = report.first
    summary = report.as_dict()
    with transaction.atomic():
        state, _ = AuditIntegrity.objects.select_for_update().get_or_create(pk=AuditIntegrity.SINGLETON)
        if first is None:
            AuditIntegrity.objects.filter(pk=state.pk).update(
                ok=True, checked_at=now, broken_seq=None, reason="", failing_since=None, report=summary
            )
            if not state.ok:
                audit.record(
                    action="audit.integrity_restored",
                    object_type="audit_trail",
                    before={"broken_seq": state.broken_seq, "reason": state.reason},
                    after={"last_seq": report.last_seq, "checked_at": now},
                )
            return summary
        reason = f"{first.reason} [{first.where}]"  # the page shows the number beside it
        AuditIntegrity.objects.filter(pk=state.pk).update(
            ok=False,
            checked_at=now,
            broken_seq=first.seq,
            reason=reason,
            failing_since=state.failing_since or now,
            report=summary,
        )
        # One incident per first broken number: the wording may change between runs (our own failure event
        # can take the number of a deleted one), the incident does not.
        if state.ok or state.broken_seq != first.seq:
            event = audit.record(
                action="audit.integrity_failed",
                object_type="audit_trail",
                after={
                    "seq": first.seq,
                    "reason": first.reason,
                    "where": first.where,
                    "findings": summary["findings"],
                    "checked_at": now,
                },
            )
            notify.on_integrity_failed(event)
    return summary
