"""Access review evidence: when each item's access was last used, read from IAM.

One asynchronous last-accessed job per item (``GenerateServiceLastAccessedDetails`` at ACTION_LEVEL, then
``GetServiceLastAccessedDetails`` with its id until IAM says COMPLETED), and for IAM users the last use of each access
key. The task ``gather_review_evidence`` calls ``review_item_gather_evidence`` again while the job is in progress;
what was read is stored on the item and recorded as an event of the campaign.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from accessrequests import audit
from accessrequests.aws import errors as aws_errors
from accessrequests.aws import last_used
from accessrequests.models import Delivery, EvidenceStatus, Grant, PrincipalKind, ReviewItem
from accessrequests.services.reviews import _item_facts, _record


def granted_actions(statements: Iterable[dict[str, Any]]) -> list[str]:
    found: list[str] = []
    for statement in statements:
        actions = statement.get("Action", [])
        for action in [actions] if isinstance(actions, str) else actions:
            if action not in found:
                found.append(action)
    return sorted(found)


def last_use_of(report: last_used.LastAccessed, actions: list[str]) -> datetime | None:
    """The newest use of any granted action: action by action where IAM tracks the service's actions, else the
    service's last authentication (the closest IAM can say)."""
    namespaces = {a.split(":", 1)[0].lower() for a in actions if ":" in a}
    newest: datetime | None = None
    for service in report.services:
        if service.namespace.lower() not in namespaces:
            continue
        if service.actions:
            wanted = [a.lower() for a in actions]
            times = [
                when
                for name, when in service.actions.items()
                if when is not None and any(fnmatch.fnmatchcase(name.lower(), w) for w in wanted)
            ]
        else:
            times = [service.last_authenticated] if service.last_authenticated else []
        for when in times:
            newest = when if newest is None or when > newest else newest
    return newest


def _entity_arn(grant: Grant) -> str | None:
    if grant.delivery == Delivery.CROSS_ACCOUNT_ROLE:
        return str(grant.details.get("role_arn") or "") or None
    if grant.principal.is_iam:
        return grant.principal.external_id
    return None


def _masked(key_id: str) -> str:
    return f"…{key_id[-4:]}" if len(key_id) > 4 else key_id


def review_item_gather_evidence(*, item_id: int) -> str:
    """Read when the item's access was last used (idempotent: a job already started is only asked again).
    Returns the evidence status: ``in_progress`` means call again later."""
    item = (
        ReviewItem.objects.select_related(
            "campaign", "rule", "grant__request", "grant__principal", "grant__account"
        )
        .filter(pk=item_id)
        .first()
    )
    if (
        item is None
        or item.decision
        or item.evidence_status in (EvidenceStatus.COMPLETED, EvidenceStatus.UNAVAILABLE)
    ):
        return item.evidence_status if item else "missing"
    grant = item.grant
    arn = _entity_arn(grant)
    if arn is None:
        why = (
            "Identity Center access is used through a role AWS manages for the permission set; its use is in "
            "CloudTrail, not in IAM's last-accessed data."
            if grant.delivery == Delivery.IDENTITY_CENTER
            else "Gatehouse does not know the IAM entity that holds this access."
        )
        return _store_evidence(item, EvidenceStatus.UNAVAILABLE, {"unavailable": why}, None)
    account_id = grant.account.account_id
    role_arn = grant.account.provisioning_role_arn or None
    try:
        job_id = item.evidence_job_id
        if not job_id:
            job_id = last_used.start_job(arn, account_id=account_id, role_arn=role_arn)
            ReviewItem.objects.filter(pk=item.pk, evidence_job_id="").update(
                evidence_job_id=job_id, evidence_status=EvidenceStatus.IN_PROGRESS
            )
            item.refresh_from_db(fields=["evidence_job_id"])
            job_id = item.evidence_job_id
        report = last_used.read_job(job_id, account_id=account_id, role_arn=role_arn)
        if report.status == "IN_PROGRESS":
            return EvidenceStatus.IN_PROGRESS
        if report.status != "COMPLETED":
            # A failed job is started again on the next try.
            ReviewItem.objects.filter(pk=item.pk, evidence_job_id=job_id).update(evidence_job_id="")
            return _store_evidence(
                item,
                EvidenceStatus.FAILED,
                {"error": report.error or f"IAM's job ended {report.status}"},
                None,
            )
        keys = (
            last_used.access_keys_last_used(grant.principal.name, account_id=account_id, role_arn=role_arn)
            if grant.principal.kind == PrincipalKind.IAM_USER and grant.delivery == Delivery.IAM_POLICY
            else []
        )
    except Exception as exc:
        if not aws_errors.is_aws_error(exc):
            raise
        # IAM keeps a job's report for a while only: the next try starts a new job rather than ask for a lost one.
        ReviewItem.objects.filter(pk=item.pk, decision="").update(evidence_job_id="")
        return _store_evidence(item, EvidenceStatus.FAILED, {"error": aws_errors.describe(exc)}, None)
    actions = granted_actions(grant.statements)
    namespaces = {a.split(":", 1)[0].lower() for a in actions}
    newest = last_use_of(report, actions)
    evidence = {
        "entity": arn,
        "granted_actions": actions,
        "services": [
            {
                "namespace": s.namespace,
                "last_authenticated": s.last_authenticated,
                "actions": {name: when for name, when in sorted(s.actions.items()) if when is not None},
            }
            for s in report.services
            if s.namespace.lower() in namespaces
        ],
        "access_keys": [
            {
                "key": _masked(k.access_key_id),
                "status": k.status,
                "last_used": k.last_used,
                "service": k.service,
            }
            for k in keys
        ],
        "job_id": job_id,
    }
    return _store_evidence(item, EvidenceStatus.COMPLETED, evidence, newest)


def _store_evidence(item: ReviewItem, status: str, evidence: dict[str, Any], newest: datetime | None) -> str:
    now = timezone.now()
    evidence = audit._jsonable(evidence)
    with transaction.atomic():
        updated = ReviewItem.objects.filter(pk=item.pk, decision="").update(
            evidence_status=status, evidence=evidence, evidence_at=now, last_used_at=newest
        )
        if updated and status != EvidenceStatus.FAILED:
            item.evidence_status, item.last_used_at = status, newest
            _record(
                item.campaign,
                "review.evidence_read",
                item=item,
                after={
                    **_item_facts(item),
                    "evidence_status": status,
                    "last_used_at": newest,
                    "unused": item.is_unused(now),
                    "evidence": evidence,
                },
            )
    return status
