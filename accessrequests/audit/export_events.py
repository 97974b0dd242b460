"""Taking records out of Gatehouse is itself recorded: one ``audit.exported`` event per export, whoever asks
(the audit page, the API, an access review's export, the access report)."""

from __future__ import annotations

from typing import Any

from accessrequests.audit import trail as audit


def export_recorded(
    *,
    actor: Any = None,
    actor_label: str | None = None,
    kind: str,
    fmt: str,
    filters: dict[str, Any],
    through_seq: int | None = None,
    rows: int | None = None,
    via: str | None = None,
    http_request: Any = None,
) -> None:
    """Record who took what out of the system, before the first byte leaves: ``kind`` is ``audit_export`` (the
    trail, to ``through_seq``) or ``access_report`` (``rows`` rows); ``via`` names a path other than the web;
    ``actor_label`` names a command run without a portal user."""
    after: dict[str, Any] = {"format": fmt, "filters": filters}
    if through_seq is not None:
        after["through_seq"] = through_seq
    if rows is not None:
        after["rows"] = rows
    if via:
        after["via"] = via
    audit.record(
        action="audit.exported",
        object_type=kind,
        actor=actor,
        actor_label=actor_label,
        after=after,
        http_request=http_request,
    )
