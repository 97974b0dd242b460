"""The access report: who could use which access in AWS between two times, why, approved by whom, and when it
ended. One row per recipient of a grant — the person or principal who can actually use it, which is not always
the principal the request named: the outside principal (or account) a cross-account role trusts, an Identity
Center user by the name people know them by.

Who can use a grant is the one shared answer the authorization rules use (``accessrequests.authz.recipients``): the
principal, every member of a group, the outside principal or account a cross-account role trusts.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.urls import reverse

from accessrequests.audit.exports import csv_cell
from accessrequests.authz import recipients as shared_recipients
from accessrequests.authz import selectors
from accessrequests.models import DecisionOutcome, Grant, GrantStatus

ENDED_STATUSES = (GrantStatus.REVOKED, GrantStatus.EXPIRED, GrantStatus.ABANDONED)
MAX_ROWS_ON_PAGE = 500


@dataclass(frozen=True)
class Recipient:
    kind: str
    name: str
    identifier: str


def recipients_of(grant: Grant) -> list[Recipient]:
    """Who can use the access a grant gives, as rows of the report (``accessrequests.authz.recipients`` decides)."""
    found = []
    for recipient in shared_recipients.recipients_of(grant.request):
        principal = recipient.principal
        if principal is not None:
            found.append(Recipient(principal.get_kind_display(), principal.label, principal.external_id))
        elif recipient.arn.endswith(":root"):
            found.append(Recipient("Outside account", recipient.label, recipient.arn))
        else:
            found.append(Recipient("Outside principal", recipient.label, recipient.arn))
    return found


@dataclass(frozen=True)
class Row:
    """One recipient of one grant, flat, the same for the page and the exports."""

    recipient: str
    recipient_kind: str
    recipient_id: str
    via_principal: str
    account_id: str
    account_name: str
    access: str
    permission_set: str
    pipelines: str
    request: str
    request_url: str
    requested_by: str
    justification: str
    ticket: str
    approved_by: str
    approver_comments: str
    applied_at: datetime | None
    ends_at: datetime | None
    ended_at: datetime | None
    status: str

    @property
    def request_id(self) -> int:
        return int(self.request.removeprefix("GH-"))


def _access(grant: Grant) -> str:
    req = grant.request
    what = req.get_kind_display()
    if req.level:
        what += f" · {req.get_level_display()}"
    if req.pass_role_id:
        what += f" ({req.pass_role.name})"  # type: ignore[union-attr]
    return what


def rows_for(grants) -> Iterator[Row]:
    for grant in grants:
        req = grant.request
        approvals = [d for d in req.decisions.all() if d.outcome == DecisionOutcome.APPROVE]
        approved_by = ", ".join(d.reviewer.get_username() for d in approvals)
        if not approved_by and req.decided_at and not req.decisions.all():
            approved_by = f"auto-approved (rule {req.rule.name})"
        ended = grant.revoked_at if grant.status in ENDED_STATUSES else None
        for recipient in recipients_of(grant):
            yield Row(
                recipient=recipient.name,
                recipient_kind=recipient.kind,
                recipient_id=recipient.identifier,
                via_principal=grant.principal.external_id,
                account_id=grant.account.account_id,
                account_name=grant.account.name,
                access=_access(grant),
                permission_set=req.permission_set.name if req.permission_set_id else "",  # type: ignore[union-attr]
                pipelines=", ".join(p.name for p in req.pipelines.all()),
                request=req.reference,
                request_url=settings.SITE_URL + reverse("request_detail", args=[req.pk]),
                requested_by=req.requester.get_username(),
                justification=req.justification,
                ticket=req.ticket,
                approved_by=approved_by,
                approver_comments=" | ".join(
                    f"{d.reviewer.get_username()}: {d.comment}" for d in approvals if d.comment
                ),
                applied_at=grant.applied_at,
                ends_at=grant.expires_at,
                ended_at=ended,
                status=grant.get_status_display(),
            )


def report(**filters: Any) -> list[Row]:
    """Rows per recipient, sorted by recipient and then by when the access began."""
    grants = selectors.access_report(**filters).select_related("request__permission_set", "request__rule")
    return sorted(
        rows_for(grants), key=lambda r: (r.recipient.lower(), r.applied_at or datetime.min, r.request)
    )


FIELDS = tuple(Row.__dataclass_fields__)
FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def _plain(row: Row) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in asdict(row).items()}


def to_csv(rows: list[Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    for row in rows:
        writer.writerow([csv_cell(v) for v in _plain(row).values()])
    return buffer.getvalue()


def to_jsonl(rows: list[Row]) -> str:
    return "".join(json.dumps(_plain(row), ensure_ascii=False, sort_keys=True) + "\n" for row in rows)


def render(rows: list[Row], fmt: str) -> str:
    if fmt == "csv":
        return to_csv(rows)
    if fmt == "jsonl":
        return to_jsonl(rows)
    raise ValueError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
