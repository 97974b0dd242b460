"""What the notifications say: plain-text email subjects and bodies, and Slack messages.

Emails are plain text so they read the same in every client and in a terminal; every message names the request
reference and links to the page where the reader can act.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from django.urls import reverse

from accessrequests.core.wording import counted
from accessrequests.models import AccessRequest, DecisionOutcome, Grant, RequestStatus


def review_url(req: AccessRequest) -> str:
    return settings.SITE_URL + reverse("review", args=[req.pk])


def request_url(req: AccessRequest) -> str:
    return settings.SITE_URL + reverse("request_detail", args=[req.pk])


def _when(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def access_line(req: AccessRequest) -> str:
    """One line saying what is asked for, e.g. "Pipeline actions (Viewer) on my-pipeline in sandbox"."""
    what = req.get_kind_display()
    if req.level:
        what += f" ({req.get_level_display()})"
    targets = [p.name for p in req.pipelines.all()]
    if req.pass_role_id:
        targets.append(req.pass_role.name)  # type: ignore[union-attr]
    if req.permission_set_id:
        targets.append(req.permission_set.name)  # type: ignore[union-attr]
    if targets:
        what += " on " + ", ".join(targets)
    return f"{what} in {req.account.name}"


def duration_line(req: AccessRequest) -> str:
    if req.duration_hours is None:  # permanent
        return "permanent (until revoked)"
    return f"{counted(req.duration_hours, 'hour')} from {_when(req.starts_at)}"


def _facts(req: AccessRequest) -> str:
    principal = f"{req.principal.get_kind_display()} {req.principal.label} ({req.principal.external_id})"
    if req.on_behalf:
        principal += " - on behalf of someone else: not linked to the requester"
    lines = [
        f"Request:        {req.reference}",
        f"Requested by:   {req.requester.get_username()}",
        f"For principal:  {principal}",
        f"Account:        {req.account.name} ({req.account.account_id}, {req.account.get_environment_display()})",
        f"Access:         {access_line(req)}",
    ]
    if req.actions:
        lines.append(f"Actions:        {', '.join(req.actions)}")
    if req.trusted_account_id or req.trusted_principal_arn:
        lines.append(f"Outside party:  {req.trusted_account_id or req.trusted_principal_arn}")
    lines.append(f"Duration:       {duration_line(req)}")
    lines.append(f"Approvals:      {req.approval_progress()}")
    if req.ticket:
        lines.append(f"Ticket:         {req.ticket}")
    lines.append(f"Justification:  {req.justification}")
    return "\n".join(lines)


def _signature() -> str:
    return (
        "\n\n-- \nGatehouse, the AWS access portal. You get this email because of your role in this request."
    )


def new_request(req: AccessRequest) -> tuple[str, str]:
    subject = f"[Gatehouse] {req.reference} needs your review: {access_line(req)}"
    needed = req.approvals_required
    body = (
        f"{req.requester.get_username()} asks for access, and you are an approver under the rule "
        f"“{req.rule.name}” ({counted(needed, 'approval')} needed).\n\n"
        f"{_facts(req)}\n\n"
        f"Review the exact policy and approve or deny it:\n{review_url(req)}" + _signature()
    )
    return subject, body


def _comments(req: AccessRequest, outcome: str) -> str:
    decisions = req.decisions.counting().filter(outcome=outcome).select_related("reviewer")
    return "\n".join(
        f"{d.reviewer.get_username()}: {d.comment}" if d.comment else f"{d.reviewer.get_username()}"
        for d in decisions
    )


def decided(req: AccessRequest) -> tuple[str, str]:
    if req.status == RequestStatus.APPROVED:
        subject = f"[Gatehouse] {req.reference} approved: {access_line(req)}"
        body = (
            f"Your request {req.reference} was approved by:\n{_comments(req, DecisionOutcome.APPROVE)}\n\n"
            "Gatehouse is applying it in AWS now; you will get another email when it is live.\n\n"
        )
    else:
        subject = f"[Gatehouse] {req.reference} denied: {access_line(req)}"
        body = (
            f"Your request {req.reference} was denied by:\n{_comments(req, DecisionOutcome.DENY)}\n\n"
            "You can file a new request that answers the reviewer's concern.\n\n"
        )
    body += f"{_facts(req)}\n\n{request_url(req)}" + _signature()
    return subject, body


def applied(grant: Grant) -> tuple[str, str]:
    req = grant.request
    until = f"until {_when(grant.expires_at)}" if grant.expires_at else "until it is revoked (permanent)"
    subject = f"[Gatehouse] {req.reference} is live: {access_line(req)}"
    body = (
        f"Your access for {req.reference} is live in AWS {until}.\n"
        "IAM changes can take a minute or two to reach every AWS region.\n\n"
        f"{_facts(req)}\n\n{request_url(req)}" + _signature()
    )
    return subject, body


def failed(grant: Grant) -> tuple[str, str]:
    req = grant.request
    reason = grant.last_error or "no reason was recorded"
    subject = f"[Gatehouse] {req.reference} could not be applied"
    body = (
        f"Gatehouse could not apply your approved access for {req.reference}.\n\n"
        f"Reason: {reason}\n\n"
        "Gatehouse retries on its own, and admins see the failure on their dashboard; "
        "if it persists, ask them (or the rule's contact"
        f"{': ' + req.rule.contact if req.rule.contact else ''}).\n\n"
        f"{_facts(req)}\n\n{request_url(req)}" + _signature()
    )
    return subject, body


def expiring(grant: Grant) -> tuple[str, str]:
    req = grant.request
    assert grant.expires_at is not None
    subject = f"[Gatehouse] {req.reference} ends {_when(grant.expires_at)}: {access_line(req)}"
    body = (
        f"Your access for {req.reference} ends at {_when(grant.expires_at)}, in less than 24 hours.\n"
        "If you still need it, ask for an extension before then (the same access, continued without a gap\n"
        f"once approved): {settings.SITE_URL}{reverse('new_request')}?extends={grant.pk}\n\n"
        f"{_facts(req)}\n\n{request_url(req)}" + _signature()
    )
    return subject, body


def slack_escape(value: str) -> str:
    """Slack's three control characters; user text must not turn into links or mentions."""
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_new_request(req: AccessRequest) -> str:
    head = f"*{req.reference}* {slack_escape(req.requester.get_username())} asks for {slack_escape(access_line(req))}"
    if req.on_behalf:
        head += f" on behalf of {slack_escape(req.principal.name)}"
    lines = [
        head + f", {slack_escape(duration_line(req))}.",
        f"> {slack_escape(req.justification)}",
    ]
    if req.status == RequestStatus.PENDING:
        lines.append(f"<{review_url(req)}|Review it in Gatehouse>")
    else:
        lines.append(f"{req.get_status_display()} by the rule “{slack_escape(req.rule.name)}”.")
    return "\n".join(lines)


def slack_decided(req: AccessRequest) -> str:
    verb = "approved" if req.status == RequestStatus.APPROVED else "denied"
    outcome = DecisionOutcome.APPROVE if req.status == RequestStatus.APPROVED else DecisionOutcome.DENY
    who = slack_escape(_comments(req, outcome).replace("\n", "; "))
    return f"*{req.reference}* was {verb} ({slack_escape(access_line(req))}) by {who}.\n<{request_url(req)}|Open it>"


def integrity_failed(finding: dict) -> tuple[str, str]:
    """To admins and auditors when the periodic verification finds the audit trail broken."""
    where = f"seq {finding['seq']}" if finding.get("seq") is not None else "the trail"
    subject = f"[Gatehouse] Audit trail integrity check failed at {where}"
    body = "\n".join(
        [
            "The periodic verification of the audit trail found it changed or incomplete.",
            "",
            f"First problem:  {finding['reason']}",
            f"Found in:       {finding['where']}",
            f"Checked at:     {finding['checked_at']}",
            "",
            "Until this is explained, treat the audit pages and exports after that point as unproven. Run",
            "`python manage.py verify_audit` for the full report (it also compares with the S3 archive), and",
            "compare the database with its backups and the checkpoints in S3.",
            "",
            f"Audit log: {settings.SITE_URL + reverse('audit_log')}",
        ]
    )
    return subject, body


def identity_change_words(event) -> str:
    """What the identity provider changed, in a sentence (the dashboard shows it too)."""
    after = event.after or {}
    who = after.get("user", "someone")
    source = event.actor_label.removesuffix(" (identity provider)")
    if event.action == "identity.roles_synced":
        added, removed = after.get("added") or [], after.get("removed") or []
        parts = [f"gave {who} the role{'s' if len(added) != 1 else ''} {', '.join(added)}"] if added else []
        if removed:
            parts.append(f"took {', '.join(removed)} from {who}")
    else:
        before = set((event.before or {}).get("principals", []))
        now = set(after.get("principals", []))
        parts = [f"linked {who} to {', '.join(sorted(now - before))}"] if now - before else []
        if before - now:
            parts.append(f"unlinked {who} from {', '.join(sorted(before - now))}")
    return f"The identity provider ({source}) " + " and ".join(parts or [f"changed {who}"]) + "."


def identity_changed(event) -> tuple[str, str]:
    """To admins when the identity provider changes a role or a principal link: applied with no second admin."""
    words = identity_change_words(event)
    subject = f"[Gatehouse] Identity provider changed {(event.after or {}).get('user', 'a user')}'s " + (
        "roles" if event.action == "identity.roles_synced" else "principals"
    )
    body = (
        f"{words}\n\nThe identity provider owns these facts, so Gatehouse applied the change at once, without a "
        "second admin. If it is not what you expect, fix it in the identity provider (the next sync or sign-in "
        "puts it back otherwise).\n\n"
        f"When: {_when(event.created_at)}\n"
        f"Audit log: {settings.SITE_URL + reverse('audit_log')}?action={event.action}\n\n-- \n"
        "Gatehouse, the AWS access portal. You get this email because you are a Gatehouse admin."
    )
    return subject, body


def accounts_changed(run) -> tuple[str, str]:
    """To admins, after a catalog sync that changed accounts' tags or environments in Organizations' name."""
    changes = run.result.get("organization_changes") or []
    counts = run.result.get("account_tags") or {}
    total = counts.get("changed", len(changes))
    moved = counts.get("environments_changed", 0)
    subject = f"[Gatehouse] Organizations changed the tags of {total} account{'s' if total != 1 else ''}" + (
        f" ({moved} environment{'s' if moved != 1 else ''} changed)" if moved else ""
    )
    lines = []
    for change in changes:
        before, after = change["environment"]
        what = f"environment {before} → {after}" if before != after else f"tags changed (environment {after})"
        why = f" (tag {change['tag']})" if change.get("tag") else " (no environment tag)"
        lines.append(f"  {change['account_id']} {change['name']}: {what}{why}")
    unknown = [c for c in changes if c["environment"][1] == "unknown"]
    body = (
        "The catalog sync read these accounts' tags in Organizations, which decide their environment and so the "
        "approval rule that routes their requests:\n\n"
        + "\n".join(lines)
        + (
            f"\n  … and {total - len(changes)} more (the audit trail has each)"
            if total > len(changes)
            else ""
        )
        + (
            f"\n\n{len(unknown)} of them {'has' if len(unknown) == 1 else 'have'} no environment now: Gatehouse "
            "refuses requests there until the account is tagged environment=… in Organizations (or, untagged, an "
            "admin sets its environment)."
            if unknown
            else ""
        )
        + f"\n\nAccounts: {settings.SITE_URL + reverse('admin:accessrequests_awsaccount_changelist')}"
        + _signature()
    )
    return subject, body


# --- governance: break-glass and access reviews ---------------------------------------------------------


def break_glass(req: AccessRequest) -> tuple[str, str]:
    """To every approver of the rule, admins and auditors, the moment someone breaks the glass."""
    subject = f"[Gatehouse] BREAK-GLASS {req.reference} by {req.requester.get_username()}: {access_line(req)}"
    due = getattr(getattr(req, "break_glass_review", None), "due_at", None)
    body = (
        f"{req.requester.get_username()} used break-glass under the rule “{req.rule.name}”: the access was "
        "applied at once, with no approver.\n\n"
        f"Incident:       {req.incident}\n{_facts(req)}\n\n"
        "Another approver of the rule must review this use"
        + (f" by {_when(due)}" if due else "")
        + f" (the requester cannot):\n{request_url(req)}"
        + _signature()
    )
    return subject, body


def slack_break_glass(req: AccessRequest) -> str:
    return (
        f":rotating_light: *BREAK-GLASS {req.reference}* {slack_escape(req.requester.get_username())} has "
        f"{slack_escape(access_line(req))} now, {slack_escape(duration_line(req))}, no approver. Incident "
        f"{slack_escape(req.incident)}.\n> {slack_escape(req.justification)}\n<{request_url(req)}|Review it afterwards>"
    )


def post_review_overdue(req: AccessRequest, due_at: datetime) -> tuple[str, str]:
    subject = f"[Gatehouse] Break-glass {req.reference} is not reviewed: it was due {_when(due_at)}"
    body = (
        f"Nobody has reviewed the break-glass use {req.reference} by {req.requester.get_username()} (incident "
        f"{req.incident}), due {_when(due_at)}. An approver of the rule “{req.rule.name}” other than the "
        f"requester reviews it here:\n{request_url(req)}" + _signature()
    )
    return subject, body


def campaign_url(campaign) -> str:
    return settings.SITE_URL + reverse("review_campaign", args=[campaign.pk])


def review_started(campaign, open_items: int) -> tuple[str, str]:
    subject = f"[Gatehouse] Access review {campaign.reference}: {counted(open_items, 'item')} for you"
    body = (
        f"An access review started. {counted(open_items, 'grant')} under your approval rules "
        f"need{'s' if open_items == 1 else ''} a keep or revoke, with a reason, by {_when(campaign.deadline)}. "
        f"Each shows when the access was last used.\n\n{campaign_url(campaign)}" + _signature()
    )
    return subject, body


def review_reminder(campaign, open_items: int, overdue: bool) -> tuple[str, str]:
    state = "is past its deadline" if overdue else f"ends {_when(campaign.deadline)}"
    subject = (
        f"[Gatehouse] Reminder: {counted(open_items, 'access review item')} "
        f"{'waits' if open_items == 1 else 'wait'} for you"
    )
    body = (
        f"The access review {campaign.reference} {state}; {counted(open_items, 'item')} "
        f"under your rules {'are' if open_items != 1 else 'is'} not reviewed yet.\n\n{campaign_url(campaign)}"
        + _signature()
    )
    return subject, body
