"""Which accounts a rule covers, and which approval rule routes a request: pure functions over plain data.

A rule's account scope names up to four dimensions: accounts (12-digit ids), organizational units (a unit covers
every unit below it), account tags (every key listed must carry one of its values) and environments. An account is
in scope when it matches every dimension the rule names, each by any one of its values (AND across dimensions, OR
within one); a rule that names none covers any account.

Routing fails closed. An account whose environment is unknown (no environment tag in Organizations, none set by an
admin) is routed only by a rule that names it explicitly, by account id, unit or tag: a catch-all rule and a rule
that names environments never cover it, so it cannot land on a weaker catch-all by being new. An eligibility rule
is a restriction, so there the unknown environment counts as every environment (the restriction applies).

Request routing (``rules.match_rule``), eligibility (``permissions.eligibility_problem``), the pickers and the plan
of a rules change (``routing_plan``) all come here, with facts and specs loaded from the database
(``accessrequests.authz.routing``) or a rules file (``accessrequests.governance.rules_file``), so they cannot disagree. Nothing here
touches the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

UNKNOWN = "unknown"


@dataclass(frozen=True)
class AccountFacts:
    """What the organization says an account is. ``units``: the id (``ou-…``, ``r-…``) of its unit and of every
    unit above it."""

    account_id: str
    name: str = ""
    environment: str = UNKNOWN
    tags: Mapping[str, str] = field(default_factory=dict)
    units: frozenset[str] = frozenset()

    def __str__(self) -> str:
        return f"{self.account_id} {self.name}".strip()


@dataclass(frozen=True)
class AccountScope:
    """The accounts a rule covers, as the rule names them (see the module docstring for how they combine)."""

    accounts: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()
    tags: tuple[tuple[str, frozenset[str]], ...] = ()
    environments: frozenset[str] = frozenset()

    @classmethod
    def of(
        cls,
        *,
        accounts: Iterable[str] = (),
        units: Iterable[str] = (),
        tags: Mapping[str, Iterable[str]] | None = None,
        environments: Iterable[str] = (),
    ) -> AccountScope:
        return cls(
            accounts=frozenset(accounts),
            units=frozenset(units),
            tags=tuple(sorted((key, frozenset(values)) for key, values in (tags or {}).items())),
            environments=frozenset(environments),
        )

    @property
    def explicit(self) -> bool:
        """Whether it names accounts by what they are (id, unit, tag), which is what may route an account whose
        environment is unknown."""
        return bool(self.accounts or self.units or self.tags)

    @property
    def any_account(self) -> bool:
        return not (self.explicit or self.environments)


def covers(scope: AccountScope, account: AccountFacts, *, restriction: bool = False) -> bool:
    """Whether ``scope`` covers ``account``. ``restriction``: the scope restricts (an eligibility rule), so an
    unknown environment counts as every environment; otherwise it routes, and fails closed on one."""
    if scope.accounts and account.account_id not in scope.accounts:
        return False
    if scope.units and not scope.units & account.units:
        return False
    for key, values in scope.tags:
        if key not in account.tags or account.tags[key] not in values:
            return False
    unknown = account.environment == UNKNOWN
    if scope.environments and account.environment not in scope.environments and not (unknown and restriction):
        return False
    return restriction or not unknown or (scope.explicit and not scope.environments)


@dataclass(frozen=True)
class RouteRule:
    """An approval rule as routing sees it. ``pipelines`` are ARNs; ``ref`` is what the caller wants back (the
    database row, or a rules file's spec)."""

    name: str
    priority: int
    approvals: int
    scope: AccountScope = AccountScope()
    pipelines: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    levels: frozenset[str] = frozenset()
    allow_privileged: bool = False
    ref: Any = field(default=None, compare=False, hash=False)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.approvals} approval{'s' if self.approvals != 1 else ''})"


def in_order(rules: Iterable[RouteRule]) -> list[RouteRule]:
    """The order rules are tried in: ascending priority, then name."""
    return sorted(rules, key=lambda rule: (rule.priority, rule.name))


def route(
    rules: Sequence[RouteRule],
    account: AccountFacts,
    *,
    kind: str,
    level: str,
    pipelines: frozenset[str] = frozenset(),
    privileged: bool = False,
) -> RouteRule | None:
    """The first rule of ``rules`` (already :func:`in_order`, enabled ones only) that covers the account, the kind,
    the level and every pipeline; a privileged permission set only under a rule that opts in to them."""
    for rule in rules:
        if rule.kinds and kind not in rule.kinds:
            continue
        if rule.levels and (level or "") not in rule.levels:
            continue
        if privileged and not rule.allow_privileged:
            continue
        if rule.pipelines and not pipelines <= rule.pipelines:
            continue
        if covers(rule.scope, account):
            return rule
    return None


def scope_words(
    *,
    accounts: Sequence[str] = (),
    units: Sequence[str] = (),
    tags: Mapping[str, Sequence[str]] | None = None,
    environments: Sequence[str] = (),
    routing: bool = False,
) -> str:
    """A scope in words, for sentences and plans: "any account", "production or staging accounts in Root /
    Workloads (or a unit below) tagged team=payments". ``routing``: say that a catch-all leaves out accounts whose
    environment is unknown."""
    if not (accounts or units or tags or environments):
        return "any account with a known environment" if routing else "any account"
    if accounts:
        words = ", ".join(accounts) + (f" (if {' or '.join(environments)})" if environments else "")
    else:
        words = f"{' or '.join(environments)} accounts" if environments else "accounts"
    if units:
        words += f" in {' or '.join(units)} (or a unit below)"
    if tags:
        words += " tagged " + " and ".join(f"{key}={'|'.join(values)}" for key, values in tags.items())
    return words
