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


def is_admin(user) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or in_group(user, ADMINS)))


def is_approver(user) -> bool:
    return in_group(user, APPROVERS) or is_admin(user)


def is_auditor(user) -> bool:
    return in_group(user, AUDITORS)
