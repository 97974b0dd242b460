"""What the Slack app says: the request message (the exact change, its state, the buttons), reminders and DMs.

One function renders the whole message from the request as it is now, so every update is the same call and an
update that runs twice, or late, still shows the truth.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import reverse

from accessrequests.core.wording import counted
from accessrequests.models import AccessRequest, DecisionOutcome, GrantStatus, RequestStatus
from accessrequests.notify.text import access_line, duration_line, review_url, slack_escape

APPROVE, DENY, CLAIM = "gatehouse_approve", "gatehouse_deny", "gatehouse_claim"
ACTIONS = (APPROVE, DENY, CLAIM)
SECTION_LIMIT = 2900  # Slack refuses section text over 3,000 characters


def _names(req: AccessRequest, outcome: str) -> list[str]:
    decisions = req.decisions.counting().filter(outcome=outcome).select_related("reviewer")
    return [slack_escape(d.reviewer.get_username()) for d in decisions]


def status_line(req: AccessRequest) -> str:
    """ "approved by X · 1 of 2", "claimed by X", "denied", "applied", "expired unreviewed", ..."""
    if req.status == RequestStatus.PENDING:
        approved = _names(req, DecisionOutcome.APPROVE)
        parts = []
        if approved:
            parts.append(f"approved by {', '.join(approved)} · {len(approved)} of {req.approvals_required}")
        else:
            parts.append(f"waiting for review · 0 of {req.approvals_required}")
        message = getattr(req, "slack_message", None)
        if message is not None and message.claimed_by_id:
            parts.append(f"claimed by {slack_escape(message.claimed_by.get_username())}")
        return " · ".join(parts)
    if req.status == RequestStatus.APPROVED:
        who = ", ".join(_names(req, DecisionOutcome.APPROVE)) or f"the rule “{slack_escape(req.rule.name)}”"
        grant = getattr(req, "grant", None)
        if grant is not None and grant.status == GrantStatus.ACTIVE:
            until = grant.expires_at.strftime("%Y-%m-%d %H:%M UTC") if grant.expires_at else "revoked"
            return f"approved by {who} · applied, live until {until}"
        if grant is not None and grant.status in (
            GrantStatus.REVOKED,
            GrantStatus.EXPIRED,
            GrantStatus.ABANDONED,
        ):
            return f"approved by {who} · applied, now {grant.get_status_display().lower()}"
        if grant is not None and grant.status == GrantStatus.FAILED:
            return f"approved by {who} · applying failed, retrying"
        return f"approved by {who} · applying"
    if req.status == RequestStatus.DENIED:
        return f"denied by {', '.join(_names(req, DecisionOutcome.DENY))}"
    if req.status == RequestStatus.EXPIRED:
        return "expired unreviewed"
    return "cancelled by the requester"


def _change(req: AccessRequest) -> str:
    """The exact statements, one line each: effect, actions, resources (and conditions)."""
    lines = []
    for statement in req.statements:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        actions = [actions] if isinstance(actions, str) else actions
        resources = [resources] if isinstance(resources, str) else resources
        line = f"{statement.get('Effect', 'Allow')} {', '.join(actions)} on {', '.join(resources)}"
        if statement.get("Condition"):
            line += f" when {statement['Condition']}"
        lines.append(line)
    if req.permission_set_id:
        lines.append(f"Identity Center permission set {req.permission_set.name}")  # type: ignore[union-attr]
    text = "\n".join(lines) or "(no statements)"
    if len(text) > SECTION_LIMIT - 100:
        text = text[: SECTION_LIMIT - 120] + "\n… (cut here; the whole change is on the review page)"
    return slack_escape(text)


def request_message(req: AccessRequest) -> tuple[str, list[dict[str, Any]]]:
    """The fallback text and the blocks of a request's channel message, as the request is now."""
    who = slack_escape(req.requester.get_username())
    principal = f"{slack_escape(req.principal.external_id)} ({req.principal.get_kind_display()})"
    if req.on_behalf:
        principal += " — *on behalf*: not linked to the requester"
    status = status_line(req)
    text = f"{req.reference} {slack_escape(access_line(req))}: {status}"
    blocks: list[dict[str, Any]] = [
        {
            "type": "section",
            "text": {
                "type": "mrkdwn",
                "text": f"*<{review_url(req)}|{req.reference}>* {who} asks for {slack_escape(access_line(req))}",
            },
        },
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Principal*\n{principal}"},
                {
                    "type": "mrkdwn",
                    "text": f"*Account*\n{slack_escape(req.account.name)} ({req.account.account_id})",
                },
                {"type": "mrkdwn", "text": f"*Duration*\n{slack_escape(duration_line(req))}"},
                {"type": "mrkdwn", "text": f"*Rule*\n{slack_escape(req.rule.name)}"},
            ],
        },
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*Why*\n>{slack_escape(req.justification)}"}},
        {"type": "section", "text": {"type": "mrkdwn", "text": f"*The exact change*\n```{_change(req)}```"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"*Status:* {status}"}]},
    ]
    buttons: list[dict[str, Any]] = []
    if req.status == RequestStatus.PENDING:
        value = str(req.pk)
        buttons = [
            {"type": "button", "action_id": APPROVE, "style": "primary", "value": value,
             "text": {"type": "plain_text", "text": "Approve"}},
            {"type": "button", "action_id": DENY, "style": "danger", "value": value,
             "text": {"type": "plain_text", "text": "Deny"}},
            {"type": "button", "action_id": CLAIM, "value": value, "text": {"type": "plain_text", "text": "Claim"}},
        ]  # fmt: skip
    buttons.append(
        {"type": "button", "action_id": "gatehouse_open", "url": review_url(req),
         "text": {"type": "plain_text", "text": "Open in Gatehouse"}}
    )  # fmt: skip
    blocks.append({"type": "actions", "elements": buttons})
    return text, blocks


def reminder(req: AccessRequest, waited_hours: int) -> str:
    return (
        f"Still waiting for review after {waited_hours} h: {req.reference} ({status_line(req)}). "
        f"<{review_url(req)}|Review it in Gatehouse>"
    )


def step_up_link(req: AccessRequest, url: str, minutes: int, verb: str) -> str:
    return (
        f"To {verb} {req.reference}, open it in Gatehouse; it asks for your authenticator code first "
        f"(this link is yours alone and works for {counted(minutes, 'minute')}): <{url}|Review {req.reference}>"
    )


def requester_dm(req: AccessRequest, event: str) -> str:
    url = settings.SITE_URL + reverse("request_detail", args=[req.pk])
    if event == "applied":
        return f"Your access for {req.reference} ({slack_escape(access_line(req))}) is live: {status_line(req)}. <{url}|Open it>"
    return f"Your request {req.reference} ({slack_escape(access_line(req))}) was {status_line(req)}. <{url}|Open it>"


COMMAND_USAGE = (
    "Break-glass from Slack: `/gatehouse break-glass INC-123 <the AccessDenied message> -- <what is broken and "
    "why you need this now>`. It gives your own principal the access the message asks for, at once and for one "
    "hour, where an approval rule names you for break-glass; everyone who must know is told."
)


def command_refused(problem: str) -> str:
    return f"Nothing was applied: {slack_escape(problem)}"


def break_glass_applied(req: AccessRequest) -> str:
    url = settings.SITE_URL + reverse("request_detail", args=[req.pk])
    return (
        f"Break-glass {req.reference} ({slack_escape(access_line(req))}) is being applied now, for "
        f"{duration_line(req)}. Every approver of the rule “{slack_escape(req.rule.name)}”, the admins and the auditors "
        f"have been told; another approver reviews it afterwards. <{url}|Open {req.reference}>"
    )
