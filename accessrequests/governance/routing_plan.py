"""What a rules change does to routing: every account whose requests another rule would route, from which rule to
which, with the approvals each needs, and the moves to fewer approvals called out.

Pure: account facts and the approval rules before and after come in (``rules.all_account_facts`` or
``governance.Catalog.account_facts``; ``governance.route_rules``), and ``scope.route`` decides, as it does for a
filing. Routing depends on the request too, so each account is tried for every kind, for every level where a rule
can tell levels apart (pipeline and cross-account access), for every pipeline a rule names in it and any other,
and for standard and privileged permission sets. Accounts no rule can tell apart (the same named id or none, the
same named units above them, the same values of the tag keys rules name, the same environment) are tried once:
3,000 accounts cost what the few dozen kinds of them cost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from accessrequests.core.scope import AccountFacts, RouteRule, in_order, route
from accessrequests.models import AccessLevel, RequestKind

# The pipelines of a request for "any pipeline a rule does not name": in no rule's list of pipelines.
_OTHER_PIPELINE = frozenset({"(any other pipeline)"})
_LEVELED = (RequestKind.PIPELINE, RequestKind.CROSS_ACCOUNT)
_NOUNS: dict[str, str] = {
    RequestKind.PIPELINE: "pipeline access",
    RequestKind.CROSS_ACCOUNT: "cross-account access",
    RequestKind.PASS_ROLE: "PassRole",
    RequestKind.PERMISSION_SET: "permission sets",
}


@dataclass(frozen=True)
class Situation:
    """One shape of request as routing sees it: kind, level, a privileged permission set, and the pipeline (an
    ARN a rule names, or "" for any other)."""

    kind: str
    level: str = ""
    privileged: bool = False
    pipeline: str = ""


def situations(pipelines: Sequence[str] = ()) -> list[Situation]:
    """Every request shape to try in an account where rules name ``pipelines``."""
    found = []
    for kind in RequestKind.values:
        if kind in _LEVELED:
            found += [
                Situation(kind, level, pipeline=p) for p in ("", *pipelines) for level in AccessLevel.values
            ]
        elif kind == RequestKind.PERMISSION_SET:
            found += [Situation(kind), Situation(kind, privileged=True)]
        else:
            found.append(Situation(kind))
    return found


def _route(rules: Sequence[RouteRule], account: AccountFacts, situation: Situation) -> RouteRule | None:
    if situation.pipeline:
        pipelines = frozenset({situation.pipeline})
    else:
        pipelines = _OTHER_PIPELINE if situation.kind in _LEVELED else frozenset()
    return route(
        rules,
        account,
        kind=situation.kind,
        level=situation.level,
        pipelines=pipelines,
        privileged=situation.privileged,
    )


@dataclass
class Move:
    """Requests of these shapes in one account go from one rule (or none: refused) to another (or none)."""

    before: RouteRule | None
    after: RouteRule | None
    situations: list[Situation] = field(default_factory=list)

    @property
    def fewer_approvals(self) -> bool:
        return (
            self.before is not None
            and self.after is not None
            and self.after.approvals < self.before.approvals
        )

    def words(self, everything: bool) -> str:
        label = [
            rule.label if rule is not None else "no rule (refused)" for rule in (self.before, self.after)
        ]
        return f"{label[0]} → {label[1]} for {'every kind of access' if everything else _shapes(self.situations)}"


@dataclass
class AccountMoves:
    account: AccountFacts
    moves: list[Move]
    tried: int  # how many request shapes were tried in the account

    @property
    def fewer_approvals(self) -> bool:
        return any(move.fewer_approvals for move in self.moves)

    def line(self) -> str:
        everything = len(self.moves) == 1 and len(self.moves[0].situations) == self.tried
        return f"  {self.account}: " + "; ".join(move.words(everything) for move in self.moves)


@dataclass
class RoutingPlan:
    """The accounts whose routing moves, and the rules that keep their accounts but ask fewer approvals."""

    accounts: list[AccountMoves]
    # (rule name, approvals before, approvals after, accounts it routes requests of)
    fewer_in_place: list[tuple[str, int, int, int]]

    @property
    def moves_to_fewer(self) -> list[AccountMoves]:
        return [a for a in self.accounts if a.fewer_approvals]

    def lines(self, limit: int | None = None) -> list[str]:
        """The plan in words; ``limit`` caps the accounts listed per section (the admin's page)."""
        fewer, others = self.moves_to_fewer, [a for a in self.accounts if not a.fewer_approvals]
        lines = [
            f"Routing: {_count(len(self.accounts))} move{'s' if len(self.accounts) == 1 else ''} to another rule."
            if self.accounts
            else "Routing: no account moves to another rule."
        ]
        for heading, group in (
            (f"⚠ {_count(len(fewer))} move{'s' if len(fewer) == 1 else ''} to fewer approvals:", fewer),
            (f"{'Other moves' if fewer else 'Moves'} ({_count(len(others))}):", others),
        ):
            if not group:
                continue
            lines.append(heading)
            shown = group if limit is None else group[:limit]
            lines += [account.line() for account in shown]
            if len(group) > len(shown):
                lines.append(f"  … and {_count(len(group) - len(shown))} more")
        for name, before, after, count in self.fewer_in_place:
            lines.append(
                f"⚠ The rule '{name}' asks fewer approvals ({before} → {after}) for the requests it routes in "
                f"{_count(count)}."
            )
        return lines


def _count(n: int) -> str:
    return f"{n:,} account{'s' if n != 1 else ''}"


def _shapes(found: Sequence[Situation]) -> str:
    """Request shapes in a few words: "pipeline access (viewer, operator), PassRole, privileged permission sets"."""
    parts = []
    for kind in RequestKind.values:
        mine = [s for s in found if s.kind == kind]
        if not mine:
            continue
        noun = _NOUNS[kind]
        if kind == RequestKind.PERMISSION_SET:
            privileged = {s.privileged for s in mine}
            parts.append(
                noun
                if len(privileged) == 2
                else f"{'privileged' if True in privileged else 'standard'} {noun}"
            )
            continue
        if kind not in _LEVELED:
            parts.append(noun)
            continue
        for pipeline in dict.fromkeys(s.pipeline for s in mine):
            levels = [s.level for s in mine if s.pipeline == pipeline]
            where = f" to {pipeline.rsplit(':', 1)[-1]}" if pipeline else ""
            which = "" if len(levels) == len(AccessLevel.values) else f" ({', '.join(levels)})"
            parts.append(f"{noun}{where}{which}")
    return ", ".join(parts)


def _pipelines_by_account(rules: Iterable[RouteRule]) -> dict[str, list[str]]:
    """The pipelines rules name, by the account in their ARN."""
    found: dict[str, list[str]] = {}
    for arn in sorted(set().union(*(r.pipelines for r in rules))):
        found.setdefault(arn.split(":")[4] if arn.count(":") >= 5 else "", []).append(arn)
    return found


def _compare(
    shapes: Sequence[Situation],
    before: tuple[Sequence[RouteRule], AccountFacts],
    after: tuple[Sequence[RouteRule], AccountFacts],
) -> tuple[list[Move], set[tuple[str, int, int]]]:
    """Route every shape before and after: the moves to another rule, and the rules kept with fewer approvals."""
    moves: dict[tuple[str, str], Move] = {}
    fewer: set[tuple[str, int, int]] = set()
    for situation in shapes:
        old, new = _route(*before, situation), _route(*after, situation)
        old_name, new_name = (old.name if old else ""), (new.name if new else "")
        if old_name != new_name:
            moves.setdefault((old_name, new_name), Move(old, new)).situations.append(situation)
        elif old is not None and new is not None and new.approvals < old.approvals:
            fewer.add((old.name, old.approvals, new.approvals))
    return list(moves.values()), fewer


def _plan(moved: list[AccountMoves], in_place: dict[tuple[str, int, int], set[str]]) -> RoutingPlan:
    moved.sort(key=lambda a: a.account.account_id)
    return RoutingPlan(
        accounts=moved,
        fewer_in_place=[(name, old, new, len(ids)) for (name, old, new), ids in sorted(in_place.items())],
    )


def plan_routing(
    accounts: Iterable[AccountFacts], before: Iterable[RouteRule], after: Iterable[RouteRule]
) -> RoutingPlan:
    """How routing moves from ``before`` to ``after`` (enabled rules only) for ``accounts``."""
    before, after = in_order(before), in_order(after)
    both = before + after
    named_accounts = set().union(*(r.scope.accounts for r in both))
    named_units = set().union(*(r.scope.units for r in both))
    tag_keys = sorted(set().union(*({key for key, _ in r.scope.tags} for r in both)))
    pipelines = _pipelines_by_account(both)

    classes: dict[tuple, list[AccountFacts]] = {}
    for account in accounts:
        signature = (
            account.account_id if account.account_id in named_accounts else "",
            frozenset(account.units & named_units),
            tuple(account.tags.get(key) for key in tag_keys),
            account.environment,
            tuple(pipelines.get(account.account_id, ())),
        )
        classes.setdefault(signature, []).append(account)

    moved: list[AccountMoves] = []
    in_place: dict[tuple[str, int, int], set[str]] = {}
    for members in classes.values():
        shapes = situations(pipelines.get(members[0].account_id, ()))
        moves, fewer = _compare(shapes, (before, members[0]), (after, members[0]))
        for key in fewer:
            in_place.setdefault(key, set()).update(m.account_id for m in members)
        if moves:
            moved += [AccountMoves(member, moves, len(shapes)) for member in members]
    return _plan(moved, in_place)


def plan_account_change(before: AccountFacts, after: AccountFacts, rules: Iterable[RouteRule]) -> RoutingPlan:
    """How routing moves for one account whose facts change under the same rules (an admin's new environment)."""
    rules = in_order(rules)
    shapes = situations(_pipelines_by_account(rules).get(before.account_id, ()))
    moves, fewer = _compare(shapes, (rules, before), (rules, after))
    # The rule stays and asks fewer approvals only when the rule itself changes: not here.
    assert not fewer
    return _plan([AccountMoves(after, moves, len(shapes))] if moves else [], {})
