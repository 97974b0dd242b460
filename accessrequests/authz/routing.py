"""Approval routing: which rule covers a request, and who may decide under it.

The matching is ``accessrequests.core.scope`` (pure functions over plain data); this module loads what it matches from
the database: an account's facts (environment, Organizations tags, the units above it) and the enabled approval
rules as ``RouteRule``s. Eligibility (``permissions``) and the review pickers use the same scopes.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q, QuerySet

from accessrequests.core.scope import AccountFacts, AccountScope, RouteRule, covers, route
from accessrequests.models import (
    KNOWN_ENVIRONMENTS,
    AccessLevel,
    ApprovalRule,
    AwsAccount,
    Environment,
    OrganizationalUnit,
    PermissionSet,
    Pipeline,
    RequestKind,
)

# Deep enough for any Organization: units nest at most five levels below the root.
_LINEAGE = "parent__parent__parent__parent__parent"


def unit_lineage(unit_id: int | None) -> frozenset[str]:
    """The ids (``ou-…``, ``r-…``) of a unit and of every unit above it, in one query."""
    if unit_id is None:
        return frozenset()
    unit = OrganizationalUnit.objects.select_related(_LINEAGE).filter(pk=unit_id).first()
    found, seen = [], set()
    while unit is not None and unit.pk not in seen:
        seen.add(unit.pk)
        found.append(unit.ou_id)
        unit = unit.parent
    return frozenset(found)


def account_facts(account: AwsAccount) -> AccountFacts:
    """What routing and eligibility know of ``account``. The units above it are read once per account object
    (a filing asks several times) and again if its unit changed."""
    cached = getattr(account, "_gatehouse_lineage", None)
    if cached is None or cached[0] != account.ou_id:
        cached = (account.ou_id, unit_lineage(account.ou_id))
        account._gatehouse_lineage = cached  # type: ignore[attr-defined]
    return AccountFacts(
        account_id=account.account_id,
        name=account.name,
        environment=account.environment,
        tags=dict(account.tags or {}),
        units=cached[1],
    )


def lineages(units: Iterable[tuple[int, str, int | None]]) -> dict[int, frozenset[str]]:
    """Every unit's lineage from rows of (pk, ou_id, parent pk), with no query per unit."""
    rows = {pk: (ou_id, parent) for pk, ou_id, parent in units}
    found: dict[int, frozenset[str]] = {}

    def walk(pk: int, seen: frozenset[int]) -> frozenset[str]:
        if pk in found:
            return found[pk]
        ou_id, parent = rows[pk]
        above = walk(parent, seen | {pk}) if parent in rows and parent not in seen else frozenset()
        found[pk] = above | {ou_id}
        return found[pk]

    for pk in rows:
        walk(pk, frozenset())
    return found


def all_account_facts(accounts: QuerySet[AwsAccount] | None = None) -> dict[int, AccountFacts]:
    """Facts of every account of ``accounts`` (default: the requestable ones), by primary key: two queries,
    whatever the size of the organization."""
    if accounts is None:
        accounts = AwsAccount.objects.filter(enabled=True, present=True)
    units = lineages(OrganizationalUnit.objects.values_list("pk", "ou_id", "parent_id"))
    return {
        pk: AccountFacts(
            account_id=account_id,
            name=name,
            environment=environment,
            tags=tags or {},
            units=units.get(ou_id, frozenset()) if ou_id else frozenset(),
        )
        for pk, account_id, name, environment, tags, ou_id in accounts.values_list(
            "pk", "account_id", "name", "environment", "tags", "ou_id"
        )
    }


def scope_of(rule: Any) -> AccountScope:
    """An approval or eligibility rule's account scope, from its (prefetched) accounts and units."""
    cached = getattr(rule, "_gatehouse_scope", None)
    if cached is None:
        cached = AccountScope.of(
            accounts=[a.account_id for a in rule.accounts.all()],
            units=[u.ou_id for u in rule.units.all()],
            tags=rule.account_tags or {},
            environments=rule.environments or [],
        )
        rule._gatehouse_scope = cached
    return cached


def route_rules() -> list[RouteRule]:
    """The enabled approval rules, in the order they are tried, each with the row as ``ref``: four queries
    however many accounts, units or pipelines they name."""
    rules = list(ApprovalRule.objects.filter(enabled=True).order_by("priority", "name"))
    named: dict[str, dict[int, set[str]]] = {"accounts": {}, "units": {}, "pipelines": {}}
    for relation, value in (
        ("accounts", "awsaccount__account_id"),
        ("units", "organizationalunit__ou_id"),
        ("pipelines", "pipeline__arn"),
    ):
        through = getattr(ApprovalRule, relation).through.objects.filter(approvalrule__enabled=True)
        for rule_id, item in through.values_list("approvalrule_id", value):
            named[relation].setdefault(rule_id, set()).add(item)
    return [
        RouteRule(
            name=rule.name,
            priority=rule.priority,
            approvals=rule.approvals_required,
            scope=AccountScope.of(
                accounts=named["accounts"].get(rule.pk, ()),
                units=named["units"].get(rule.pk, ()),
                tags=rule.account_tags or {},
                environments=rule.environments or [],
            ),
            pipelines=frozenset(named["pipelines"].get(rule.pk, ())),
            kinds=frozenset(rule.kinds or []),
            levels=frozenset(rule.levels or []),
            allow_privileged=rule.allow_privileged_permission_sets,
            ref=rule,
        )
        for rule in rules
    ]


def match_rule(
    *,
    account: AwsAccount,
    kind: str,
    level: str,
    pipelines: Sequence[Pipeline],
    permission_set: PermissionSet | None = None,
) -> ApprovalRule | None:
    """The first enabled rule (by priority, then name) that covers the account, every pipeline, the kind and the
    level; a privileged permission set only under a rule that opts in to privileged sets. An account whose
    environment is unknown only under a rule that names it (``scope.covers``)."""
    found = route(
        route_rules(),
        account_facts(account),
        kind=kind,
        level=level,
        pipelines=frozenset(p.arn for p in pipelines),
        privileged=permission_set is not None and permission_set.is_privileged,
    )
    return found.ref if found is not None else None


def unrouted_reason(*, account: AwsAccount, kind: str) -> str:
    """Why no rule routes a request in ``account``, and what would fix it."""
    if account.environment == Environment.UNKNOWN:
        tag = account.environment_tag
        choices = " or ".join(KNOWN_ENVIRONMENTS)
        if tag is not None:
            return (
                f"Account {account} has no environment Gatehouse knows: its tag {tag[0]}={tag[1]} in "
                f"Organizations names none. Tag it `environment=…` there ({choices}); until then no approval "
                "rule routes its requests."
            )
        return (
            f"Account {account} has no environment: tag it `environment=…` in Organizations ({choices}), or "
            "ask a Gatehouse admin to set it. Until then no approval rule routes its requests."
        )
    label = RequestKind(kind).label.lower() if kind in RequestKind.values else kind
    return f"No approval rule covers {label} on account {account}. Ask a Gatehouse admin to add one."


def covered_accounts(scopes: Iterable[AccountScope]) -> QuerySet[AwsAccount]:
    """The accounts any of ``scopes`` routes (the pickers of the review queue): matched in memory, by the same
    function as a filing."""
    scopes = list(scopes)
    if not scopes:
        return AwsAccount.objects.none()
    facts = all_account_facts(AwsAccount.objects.all())
    wanted = [pk for pk, account in facts.items() if any(covers(s, account) for s in scopes)]
    return AwsAccount.objects.filter(pk__in=wanted)


def is_low_risk(*, account: AwsAccount, kind: str, level: str) -> bool:
    """Viewer access to pipelines in an account known to be outside production is low risk (eligible for
    auto-approval); an account whose environment is unknown is not."""
    return (
        kind == RequestKind.PIPELINE
        and level == AccessLevel.VIEWER
        and account.environment in KNOWN_ENVIRONMENTS
        and account.environment != Environment.PRODUCTION
    )


def rules_for_approver(user) -> QuerySet[ApprovalRule]:
    """Rules under which this user may decide: named directly or through one of their groups."""
    if not user.is_authenticated:
        return ApprovalRule.objects.none()
    return ApprovalRule.objects.filter(
        Q(approver_users=user) | Q(approver_groups__in=user.groups.all())
    ).distinct()


def approvers_among(rule_id: int, user_ids: Iterable[int]) -> set[int]:
    """Which of these users the rule covers (``rules_for_approver`` asked from the rule's side): named directly or
    through one of their groups; one query for any number of users."""
    return set(
        get_user_model()
        .objects.filter(pk__in=list(user_ids))
        .filter(Q(approval_rules=rule_id) | Q(groups__approval_rules=rule_id))
        .values_list("pk", flat=True)
        .distinct()
    )
