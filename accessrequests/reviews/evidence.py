"""Access review evidence: when each item's access was last used, read from IAM.

One asynchronous last-accessed job per item (``GenerateServiceLastAccessedDetails`` at ACTION_LEVEL, then
``GetServiceLastAccessedDetails`` with its id until IAM says COMPLETED), and for IAM users the last use of each access
key. The task ``gather_review_evidence`` calls ``review_item_gather_evidence`` again while the job is in progress;
what was read is stored on the item and recorded as an event of the campaign.

A read that fails, for whatever reason (AWS refuses or answers garbage, the job fails or never finishes, a bug), is
stored on the item with its reason and recorded, so the reviewer sees it instead of a report "being prepared" for
ever. The hourly tick asks again after growing gaps (``evidence_retry_gap``), at most ``EVIDENCE_MAX_ATTEMPTS``
times in a row; then it stops, and a reviewer or an admin may press Retry (``reviews.review_item_evidence_retry``).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.aws import errors as aws_errors
from accessrequests.aws import last_used
from accessrequests.models import Delivery, EvidenceStatus, Grant, PrincipalKind, ReviewItem
from accessrequests.reviews.campaigns import EVIDENCE_MAX_ATTEMPTS, item_facts, record_review_event

EVIDENCE_FIRST_GAP = timedelta(minutes=30)  # then twice as long after each failure
# IAM prepares a report in seconds to minutes; a job still IN_PROGRESS after this is given up and asked again.
EVIDENCE_JOB_PATIENCE = timedelta(hours=1)


def evidence_retry_gap(attempts: int) -> timedelta:
    """How long after the ``attempts``-th failed read in a row the next one is made."""
    return EVIDENCE_FIRST_GAP * 2 ** max(attempts - 1, 0)


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
                evidence_job_id=job_id,
                evidence_status=EvidenceStatus.IN_PROGRESS,
                evidence_asked_at=timezone.now(),
            )
            item.refresh_from_db(fields=["evidence_job_id", "evidence_asked_at"])
            job_id = item.evidence_job_id
        report = last_used.read_job(job_id, account_id=account_id, role_arn=role_arn)
        if report.status == "IN_PROGRESS":
            asked = item.evidence_asked_at
            if asked is not None and timezone.now() - asked > EVIDENCE_JOB_PATIENCE:
                hours = EVIDENCE_JOB_PATIENCE.total_seconds() / 3600
                return _store_failure(item, f"IAM did not finish the usage report within {hours:g} hour(s)")
            return EvidenceStatus.IN_PROGRESS
        if report.status != "COMPLETED":
            # A failed job is started again on the next try.
            return _store_failure(item, report.error or f"IAM's job ended {report.status}")
        keys = (
            last_used.access_keys_last_used(grant.principal.name, account_id=account_id, role_arn=role_arn)
            if grant.principal.kind == PrincipalKind.IAM_USER and grant.delivery == Delivery.IAM_POLICY
            else []
        )
    except Exception as exc:
        if aws_errors.is_aws_error(exc):
            # IAM keeps a job's report for a while only: the next try starts a new job rather than ask for a lost
            # one.
            return _store_failure(item, aws_errors.describe(exc))
        # A bug, not AWS: the item says so (the worker's log has the traceback), and the task fails loudly.
        _store_failure(
            item, f"Gatehouse could not read it ({type(exc).__name__}); the worker's log has the details"
        )
        raise
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


def _store_failure(item: ReviewItem, reason: str) -> str:
    """Record a failed read: its reason on the item, when to ask again (none after too many), and the event."""
    now = timezone.now()
    with transaction.atomic():
        locked = ReviewItem.objects.select_for_update().filter(pk=item.pk, decision="").first()
        if locked is None:
            return EvidenceStatus.FAILED  # reviewed meanwhile: its evidence no longer matters
        attempts = locked.evidence_attempts + 1
        next_at = now + evidence_retry_gap(attempts) if attempts < EVIDENCE_MAX_ATTEMPTS else None
        ReviewItem.objects.filter(pk=item.pk).update(
            evidence_status=EvidenceStatus.FAILED,
            evidence={"error": reason},
            evidence_at=now,
            evidence_job_id="",
            evidence_asked_at=None,
            evidence_attempts=attempts,
            evidence_next_at=next_at,
        )
        record_review_event(
            item.campaign,
            "review.evidence_failed",
            item=item,
            after={**item_facts(item), "error": reason, "attempt": attempts, "next_try_at": next_at},
        )
    return EvidenceStatus.FAILED


def _store_evidence(item: ReviewItem, status: str, evidence: dict[str, Any], newest: datetime | None) -> str:
    now = timezone.now()
    evidence = audit._jsonable(evidence)
    with transaction.atomic():
        updated = ReviewItem.objects.filter(pk=item.pk, decision="").update(
            evidence_status=status,
            evidence=evidence,
            evidence_at=now,
            last_used_at=newest,
            evidence_attempts=0,
            evidence_next_at=None,
        )
        if updated:
            item.evidence_status, item.last_used_at = status, newest
            record_review_event(
                item.campaign,
                "review.evidence_read",
                item=item,
                after={
                    **item_facts(item),
                    "evidence_status": status,
                    "last_used_at": newest,
                    "unused": item.is_unused(now),
                    "evidence": evidence,
                },
            )
    return status
