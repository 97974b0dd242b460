"""The pickers' search: accounts, organizational units and pipelines a user may choose, a page at a time.

The request form and the review queue used to render a select with every account; at thousands of accounts
that is a page of megabytes and a query of every row. The pickers ask this search instead (JSON for the
typeahead, an HTML page of results without JavaScript). Only what the user may use is ever offered: the
accounts they may request in (``selectors.requestable_accounts``), or for the review queue the accounts their
approval rules cover (``selectors.reviewable_accounts``).

Paging is by keyset (``after``: the last name and id shown), so page 100 costs what page 1 costs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q, QuerySet

from accessrequests.authz import selectors
from accessrequests.models import AwsAccount, OrganizationalUnit, Pipeline

KINDS = ("account", "ou", "pipeline")
SCOPES = ("request", "review")
PAGE = 20
MAX_QUERY = 100


class SearchError(ValueError):
    """The search cannot be answered as asked; the message says what to change."""


@dataclass
class Result:
    value: str  # what the form field takes: an account id, a unit id, a pipeline's database id
    label: str
    detail: str = ""


@dataclass
class Results:
    kind: str
    items: list[Result] = field(default_factory=list)
    after: str = ""  # pass back as ``after`` for the next page; empty on the last page

    def as_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "results": [{"value": r.value, "label": r.label, "detail": r.detail} for r in self.items],
            "next": self.after or None,
        }


def _cursor(after: str) -> tuple[str, int] | None:
    if not after:
        return None
    name, _, pk = after.rpartition("|")
    if not pk.isdigit() or len(pk) > 12 or len(name) > 200:
        raise SearchError("That page link is not valid any more; search again.")
    return name, int(pk)


def _page(qs: QuerySet, name_field: str, after: str) -> tuple[list[Any], str]:
    cursor = _cursor(after)
    if cursor is not None:
        name, pk = cursor
        qs = qs.filter(Q(**{f"{name_field}__gt": name}) | Q(**{name_field: name, "pk__gt": pk}))
    rows = list(qs.order_by(name_field, "pk")[: PAGE + 1])
    more = len(rows) > PAGE
    rows = rows[:PAGE]
    return rows, (f"{getattr(rows[-1], name_field)}|{rows[-1].pk}" if more and rows else "")


def unit_by_id(ou_id: str) -> OrganizationalUnit | None:
    if not ou_id:
        return None
    if len(ou_id) > 68:
        raise SearchError("That is not an organizational unit id (ou-… or r-…).")
    unit = OrganizationalUnit.objects.filter(ou_id=ou_id, present=True).first()
    if unit is None:
        raise SearchError(f"There is no organizational unit {ou_id}; choose one from the list.")
    return unit


def accounts_for(user, scope: str) -> QuerySet[AwsAccount]:
    if scope == "review":
        return selectors.reviewable_accounts(user)
    return selectors.requestable_accounts(user)


def search(
    user, *, kind: str, q: str = "", ou: str = "", account: str = "", scope: str = "request", after: str = ""
) -> Results:
    """One page of what ``user`` may choose of ``kind`` matching ``q`` (a name fragment or the start of an id),
    within unit ``ou`` (and the units below it), pipelines within ``account``. Raises SearchError on bad input."""
    if kind not in KINDS:
        raise SearchError("Search for an account, an organizational unit (ou) or a pipeline.")
    if scope not in SCOPES:
        raise SearchError("Unknown search scope.")
    q = (q or "").strip()
    if len(q) > MAX_QUERY:
        raise SearchError(f"Search for at most {MAX_QUERY} characters.")
    unit = unit_by_id(ou.strip())
    accounts = accounts_for(user, scope)
    results = Results(kind=kind)

    if kind == "account":
        qs = accounts.select_related("ou")
        if unit is not None:
            qs = qs.filter(selectors.units_under(unit))
        if q:
            qs = qs.filter(Q(name__icontains=q) | Q(account_id__startswith=q))
        rows, results.after = _page(qs, "name", after)
        results.items = [
            Result(value=a.account_id, label=f"{a.name} ({a.account_id})", detail=a.ou.path if a.ou else "")
            for a in rows
        ]
    elif kind == "ou":
        units = OrganizationalUnit.objects.filter(present=True)
        if (
            not accounts.query.is_empty()
            and accounts.count() < AwsAccount.objects.filter(enabled=True, present=True).count()
        ):
            # Only units holding an account this user may use (and the units above them).
            paths = set(accounts.exclude(ou=None).values_list("ou__path", flat=True).distinct())
            wanted = {" / ".join(p.split(" / ")[:n]) for p in paths for n in range(1, p.count(" / ") + 2)}
            units = units.filter(path__in=wanted)
        elif accounts.query.is_empty():
            units = units.none()
        if unit is not None:
            units = units.filter(path__startswith=f"{unit.path} / ")
        if q:
            units = units.filter(Q(path__icontains=q) | Q(ou_id__startswith=q))
        rows, results.after = _page(units, "path", after)
        results.items = [Result(value=u.ou_id, label=u.path, detail=u.ou_id) for u in rows]
    else:
        pipes = Pipeline.objects.filter(present=True).select_related("account")
        if account:
            if not (account.isascii() and account.isdigit() and len(account) == 12):
                raise SearchError("An AWS account id is 12 digits, e.g. 123456789012.")
            chosen = accounts.filter(account_id=account).first()
            if chosen is None:
                raise SearchError(f"You cannot choose pipelines in account {account}.")
            pipes = pipes.filter(account=chosen)
        else:
            pipes = pipes.filter(account__in=accounts)
        if unit is not None:
            pipes = pipes.filter(account__in=AwsAccount.objects.filter(selectors.units_under(unit)))
        if q:
            pipes = pipes.filter(name__icontains=q)
        rows, results.after = _page(pipes, "name", after)
        results.items = [
            Result(
                value=str(p.pk),
                label=p.name,
                detail=f"{p.region} · {p.account.name} ({p.account.account_id})",
            )
            for p in rows
        ]
    return results
