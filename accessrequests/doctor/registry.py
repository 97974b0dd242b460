"""The doctor's checks: each a small function registered under a name, run in registration order.

A check answers a ``Result``: ``ok``, ``warn`` (works, but someone should look) or ``fail`` (something Gatehouse
does will not work), with a message saying what it found and, unless ok, a fix in words. A check may name the
checks it needs (``needs``): when one of those failed it is not run, and fails saying which to fix first. Checks
read; none of them changes anything.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from django.utils import timezone
from django.utils.timesince import timesince

Status = Literal["ok", "warn", "fail"]
STATUSES: tuple[Status, ...] = ("ok", "warn", "fail")


@dataclass(frozen=True)
class Result:
    status: Status
    message: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status != "ok" and not self.fix:
            raise ValueError(f"a {self.status} result needs a fix in words: {self.message}")


def ok(message: str, **details: Any) -> Result:
    return Result("ok", message, details=details)


def warn(message: str, *, fix: str, **details: Any) -> Result:
    return Result("warn", message, fix, details)


def fail(message: str, *, fix: str, **details: Any) -> Result:
    return Result("fail", message, fix, details)


def since(when: datetime) -> str:
    """How long ago, in words ("2 hours"), with plain spaces: messages go to terminals and JSON."""
    if timezone.now() - when < timedelta(minutes=1):
        return "less than a minute"
    return timesince(when).replace("\xa0", " ")


@dataclass
class Context:
    """What one run shares: its options, and what earlier checks learned (``facts``) for later ones."""

    account_limit: int = 25
    timeout: float = 2.0
    facts: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    title: str  # what it checks, in words (README's table, the unknown-name error)
    run: Callable[[Context], Result]
    needs: tuple[str, ...] = ()


CHECKS: dict[str, Check] = {}


def check(
    name: str, title: str, *, needs: Iterable[str] = ()
) -> Callable[[Callable[[Context], Result]], Check]:
    """Register a check; the checks it needs must be registered before it."""

    def register(function: Callable[[Context], Result]) -> Check:
        needed = tuple(needs)
        unknown = [n for n in needed if n not in CHECKS]
        if name in CHECKS or unknown:
            raise ValueError(f"check {name}: registered twice, or needs unknown checks {unknown}")
        made = Check(name=name, title=title, run=function, needs=needed)
        CHECKS[name] = made
        return made

    return register


@dataclass(frozen=True)
class Outcome:
    check: Check
    result: Result
    seconds: float


@dataclass
class Report:
    outcomes: list[Outcome]
    checked_at: datetime

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.result.status == status)

    @property
    def status(self) -> Status:
        return "fail" if self.count("fail") else "warn" if self.count("warn") else "ok"


class UnknownCheck(ValueError):
    pass


def select(only: Iterable[str] = ()) -> list[Check]:
    """The checks to run: all, or those named (a name, or a group such as ``aws`` for every ``aws.*``) with the
    checks they need, in registration order."""
    wanted = list(only)
    if not wanted:
        return list(CHECKS.values())
    chosen: set[str] = set()
    for name in wanted:
        found = [c for c in CHECKS if c == name or c.startswith(f"{name}.")]
        if not found:
            raise UnknownCheck(f"no check is named {name!r}; the checks are: {', '.join(CHECKS)}")
        chosen.update(found)
    pending = list(chosen)
    while pending:
        for needed in CHECKS[pending.pop()].needs:
            if needed not in chosen:
                chosen.add(needed)
                pending.append(needed)
    return [c for c in CHECKS.values() if c.name in chosen]


def run(checks: Iterable[Check], context: Context) -> Report:
    outcomes: list[Outcome] = []
    failed: set[str] = set()
    for item in checks:
        started = time.monotonic()
        blocked = [n for n in item.needs if n in failed]
        if blocked:
            result = fail(
                f"not checked: {', '.join(blocked)} failed",
                fix=f"fix {', '.join(blocked)} first, then run the doctor again",
            )
        else:
            try:
                result = item.run(context)
            except Exception as exc:  # a check that breaks must not hide the others
                result = fail(
                    f"the check could not finish: {exc.__class__.__name__}: {exc}",
                    fix="fix what the message names; if it names nothing of your deployment, report it as a "
                    "Gatehouse bug with this message",
                )
        if result.status == "fail":
            failed.add(item.name)
        outcomes.append(Outcome(item, result, time.monotonic() - started))
    return Report(outcomes=outcomes, checked_at=timezone.now())
