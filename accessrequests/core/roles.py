"""The portal's roles are Django groups, created by a migration and checked through these helpers."""

from __future__ import annotations

REQUESTERS = "requesters"
APPROVERS = "approvers"
ADMINS = "admins"
AUDITORS = "auditors"
ROLE_GROUPS = (REQUESTERS, APPROVERS, ADMINS, AUDITORS)


def in_group(user, name: str) -> bool:
    if not user.is_authenticated:
        return False
    cache = getattr(user, "_gatehouse_groups", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._gatehouse_groups = cache
    return name in cache


def load_groups(users) -> None:
    """Read the groups of many users in one query, so that the helpers here ask nothing more about them."""
    from django.contrib.auth import get_user_model

    wanted = {user.pk: user for user in users if getattr(user, "_gatehouse_groups", None) is None}
    if not wanted:
        return
    names: dict[int, set[str]] = {pk: set() for pk in wanted}
    membership = get_user_model().groups.through.objects.filter(user_id__in=list(wanted))
    for user_id, name in membership.values_list("user_id", "group__name"):
        names[user_id].add(name)
    for pk, user in wanted.items():
        user._gatehouse_groups = names[pk]


def is_admin(user) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or in_group(user, ADMINS)))


def is_approver(user) -> bool:
    return in_group(user, APPROVERS) or is_admin(user)


def is_auditor(user) -> bool:
    return in_group(user, AUDITORS)
