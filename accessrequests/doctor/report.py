"""The doctor's report for people (aligned lines, each problem with its fix) and for monitoring (JSON that
``report.schema.json`` describes)."""

from __future__ import annotations

import json
import logging
import shutil
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

from django.conf import settings

from accessrequests.core.wording import counted

from .registry import STATUSES, Report

logger = logging.getLogger(__name__)
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")
FORMAT = 1
LABELS = {"ok": "ok", "warn": "warn", "fail": "FAIL"}


@cache
def schema() -> dict[str, Any]:
    return dict(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def as_dict(report: Report) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "status": report.status,
        "checked_at": report.checked_at.isoformat(),
        "gatehouse_version": settings.GATEHOUSE_VERSION,
        "summary": {status: report.count(status) for status in STATUSES},
        "checks": [
            {
                "name": o.check.name,
                "title": o.check.title,
                "status": o.result.status,
                "message": o.result.message,
                "fix": o.result.fix,
                "seconds": round(o.seconds, 3),
                "details": o.result.details,
            }
            for o in report.outcomes
        ],
    }


def as_json(report: Report) -> str:
    return json.dumps(as_dict(report), indent=2, default=str)


def summary(report: Report) -> str:
    parts = [
        f"{report.count('ok')} ok",
        counted(report.count("warn"), "warning"),
        counted(report.count("fail"), "failure"),
    ]
    return f"Gatehouse doctor: {counted(len(report.outcomes), 'check')}: {', '.join(parts)}"


def as_text(report: Report, width: int | None = None) -> str:
    width = width or max(80, min(shutil.get_terminal_size((110, 24)).columns, 140))
    name_width = max((len(o.check.name) for o in report.outcomes), default=0)
    indent = " " * (6 + name_width + 2)
    lines = [summary(report), ""]
    for outcome in report.outcomes:
        result = outcome.result
        head = f"{LABELS[result.status]:<6}{outcome.check.name:<{name_width}}  "
        lines += textwrap.wrap(
            result.message,
            width,
            initial_indent=head,
            subsequent_indent=indent,
            break_on_hyphens=False,
            break_long_words=False,
        ) or [head.rstrip()]
        if result.status != "ok":
            lines += textwrap.wrap(
                f"fix: {result.fix}", width, initial_indent=indent, subsequent_indent=indent + "     ",
                break_on_hyphens=False, break_long_words=False,
            )  # fmt: skip
    if report.status == "fail":
        lines += ["", "Exit status 1: fix the failures above, starting with the first."]
    return "\n".join(lines)


LAST_RUN_KEY = "doctor:last-run"


def remember(report: Report) -> None:
    """Keep this run's outcome in the cache for /healthz to show (with its time) without running the checks again;
    a cache that does not answer loses the summary, never the run."""
    from django.core.cache import cache

    body = {
        "status": report.status,
        "checked_at": report.checked_at.isoformat(),
        "summary": {status: report.count(status) for status in STATUSES},
        "problems": [
            {
                "name": o.check.name,
                "status": o.result.status,
                "message": o.result.message,
                "fix": o.result.fix,
            }
            for o in report.outcomes
            if o.result.status != "ok"
        ],
    }
    try:
        cache.set(LAST_RUN_KEY, body, timeout=None)
    except Exception as exc:  # the cache is Redis on most deployments; the run's output stands without it
        logger.warning("doctor: the cache did not keep this run for /healthz: %s", exc.__class__.__name__)


def last_run() -> dict[str, Any] | None:
    from django.core.cache import cache

    try:
        found = cache.get(LAST_RUN_KEY)
    except Exception:  # a cache that does not answer: no run to show
        return None
    return found if isinstance(found, dict) else None
