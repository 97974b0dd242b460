"""The facts a second admin must approve, besides the rules: which they are, and how a change of them reads.

Reads only (``governance.governed_changes`` writes). Each governed object has *facts*, a plain dict in canonical form
(names, sorted lists), the way ``accessrequests.governance.rules_file`` turns a rule into a spec:

- an account: its environment (it feeds low-risk auto-approval, chat approval and routing);
- a principal: the portal users linked to it (whose access a request is, who may not approve it);
- a user: superuser or not, the governed groups they are in, the principals linked to them;
- a governed group: its members;
- a SCIM group: the principals its members are linked to.

A group is governed when a rule names it (approvers, break-glass, eligibility) or it is one of the portal's role
groups: its members decide who approves. Membership of any other group is an ordinary edit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Model, Q, QuerySet

from accessrequests.core import roles
from accessrequests.governance.rules_file import describe_diff
from accessrequests.models import AwsAccount, Principal, PrincipalKind, RuleTarget, ScimGroup

# The account's governed fields. Its tags are not: Organizations owns them (the catalog sync reads them, audits
# a change and tells the admins), and with an environment tag the environment too
# (``permissions.account_environment_problem``).
ACCOUNT_FIELDS = ("environment",)


def governed_groups() -> QuerySet[Group]:
    """Groups whose membership moves who approves: role groups and every group a rule names."""
    return Group.objects.filter(
        Q(name__in=roles.ROLE_GROUPS)
        | Q(approval_rules__isnull=False)
        | Q(break_glass_rules__isnull=False)
        | Q(eligibility_rules__isnull=False)
    ).distinct()


def governed_group_ids() -> set[int]:
    return set(governed_groups().values_list("pk", flat=True))


def is_governed_group(group: Group) -> bool:
    return group.pk is not None and governed_groups().filter(pk=group.pk).exists()


def principal_ref(principal: Principal) -> str:
    """How a principal reads in a change, unique among principals: kind, name and its account or store."""
    if principal.account is not None:
        home = principal.account.account_id
    else:  # an Identity Center principal (the database holds that one of the two is set)
        home = principal.identity_center.identity_store_id if principal.identity_center is not None else "?"
    return f"{principal.get_kind_display()} {principal.name} ({home})"


def principals_by_ref(refs: Iterable[str]) -> dict[str, Principal]:
    """The principals ``refs`` name (those that still exist)."""
    wanted = set(refs)
    labels = [str(label) for label in PrincipalKind.labels]
    names = set()
    for ref in wanted:
        label = next((la for la in labels if ref.startswith(la + " ")), None)
        if label is not None and " (" in ref:
            names.add(ref[len(label) + 1 : ref.rindex(" (")])
    found: dict[str, Principal] = {}
    for principal in Principal.objects.filter(name__in=names).select_related("account", "identity_center"):
        ref = principal_ref(principal)
        if ref in wanted:
            found[ref] = principal
    return found


def _principal_refs(principals: Iterable[Principal]) -> list[str]:
    return sorted(principal_ref(p) for p in principals)


def _usernames(users: Iterable) -> list[str]:
    return sorted(u.get_username() for u in users)


def account_facts(account: AwsAccount) -> dict[str, Any]:
    return {field: getattr(account, field) for field in ACCOUNT_FIELDS}


def principal_facts(principal: Principal) -> dict[str, Any]:
    return {"users": _usernames(principal.users.all())}


def user_facts(user, *, governed: set[int] | None = None) -> dict[str, Any]:
    governed = governed_group_ids() if governed is None else governed
    return {
        "superuser": bool(user.is_superuser),
        "groups": sorted(g.name for g in user.groups.all() if g.pk in governed),
        "principals": _principal_refs(user.principals.select_related("account", "identity_center")),
    }


def group_facts(group: Group) -> dict[str, Any]:
    return {"users": _usernames(group.user_set.all())}


def scim_group_facts(group: ScimGroup) -> dict[str, Any]:
    return {"principals": _principal_refs(group.principals.select_related("account", "identity_center"))}


@dataclass(frozen=True)
class Subject:
    """One kind of governed object: how it is found, named and read as facts."""

    target: str
    model: type[Model]
    noun: str
    facts: Callable[[Any], dict[str, Any]]
    name: Callable[[Any], str]

    def load(self, pk: int | None, *, lock: bool = False) -> Any:
        qs = self.model._default_manager.filter(pk=pk)
        return (qs.select_for_update() if lock else qs).first()


SUBJECTS: dict[str, Subject] = {
    s.target: s
    for s in (
        Subject(
            RuleTarget.ACCOUNT, AwsAccount, "account", account_facts, lambda a: f"{a.name} ({a.account_id})"
        ),
        Subject(RuleTarget.PRINCIPAL_LINKS, Principal, "principal", principal_facts, principal_ref),
        Subject(RuleTarget.USER_ACCESS, get_user_model(), "user", user_facts, lambda u: u.get_username()),
        Subject(RuleTarget.GROUP_MEMBERS, Group, "group", group_facts, lambda g: g.name),
        Subject(
            RuleTarget.SCIM_PRINCIPALS, ScimGroup, "SCIM group", scim_group_facts, lambda g: g.display_name
        ),
    )
}


def describe(target: str, name: str, before: dict[str, Any], after: dict[str, Any]) -> str:
    """The change in words: "account 'production (111122223333)': environment production → development"."""
    phrases = describe_diff(before, after, target=target)
    return f"{SUBJECTS[target].noun} '{name}': " + "; ".join(phrases)


def as_lines(facts: dict[str, Any] | None) -> str:
    """Facts as the change page shows them, one per line."""
    if facts is None:
        return "—"
    lines = []
    for key, value in facts.items():
        if isinstance(value, list):
            value = ", ".join(value) or "(none)"
        elif isinstance(value, bool):
            value = "yes" if value else "no"
        lines.append(f"{key}: {value}")
    return "\n".join(lines)
