"""Approval routing: which rule covers a request, and who may decide under it."""

from __future__ import annotations

from collections.abc import Sequence

from django.db.models import Q, QuerySet

from accessrequests.models import (
    AccessLevel,
    ApprovalRule,
    AwsAccount,
    Environment,
    PermissionSet,
    Pipeline,
    RequestKind,
)


def match_rule(
    *,
    account: AwsAccount,
    kind: str,
    level: str,
    pipelines: Sequence[Pipeline],
    permission_set: PermissionSet | None = None,
) -> ApprovalRule | None:
    """The first enabled rule (by priority) that covers the account, every pipeline, the kind and the level; a
    privileged permission set only under a rule that opts in to privileged sets."""
    wanted = {p.pk for p in pipelines}
    candidates = (
        ApprovalRule.objects.filter(enabled=True)
        .filter(Q(accounts=account) | Q(accounts__isnull=True))
        .distinct()
        .prefetch_related("pipelines")
        .order_by("priority", "name")
    )
    for rule in candidates:
        if rule.kinds and kind not in rule.kinds:
            continue
        if rule.levels and (level or "") not in rule.levels:
            continue
        if (
            permission_set is not None
            and permission_set.is_privileged
            and not rule.allow_privileged_permission_sets
        ):
            continue
        rule_pipelines = {p.pk for p in rule.pipelines.all()}
        if rule_pipelines and not wanted <= rule_pipelines:
            continue
        return rule
    return None


def is_low_risk(*, account: AwsAccount, kind: str, level: str) -> bool:
    """Viewer access to pipelines outside production is low risk (eligible for auto-approval)."""
    return (
        kind == RequestKind.PIPELINE
        and level == AccessLevel.VIEWER
        and account.environment != Environment.PRODUCTION
    )


def rules_for_approver(user) -> QuerySet[ApprovalRule]:
    """Rules under which this user may decide: named directly or through one of their groups."""
    if not user.is_authenticated:
        return ApprovalRule.objects.none()
    return ApprovalRule.objects.filter(
        Q(approver_users=user) | Q(approver_groups__in=user.groups.all())
    ).distinct()
