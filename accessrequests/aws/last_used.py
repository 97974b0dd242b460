"""When access was last used, from IAM: service-last-accessed data and access-key last use.

IAM prepares last-accessed data asynchronously: ``GenerateServiceLastAccessedDetails`` starts a job for one
entity (user, role or group ARN) and returns its id; ``GetServiceLastAccessedDetails`` with that id answers
``IN_PROGRESS`` until the report is ready, then ``COMPLETED`` (or ``FAILED``) with one entry per service and, at
ACTION_LEVEL granularity, the tracked actions of services that support it. Callers keep the job id and ask again
later instead of waiting here (a report can take seconds to minutes).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import ClientError

from .client import error_details
from .reuse import kept_client


@dataclass(frozen=True)
class ServiceUse:
    """One service in IAM's report: when the entity last authenticated to it, and its tracked actions."""

    namespace: str
    last_authenticated: datetime | None
    actions: dict[str, datetime | None] = field(default_factory=dict)  # "codepipeline:GetPipeline" -> time


@dataclass(frozen=True)
class LastAccessed:
    status: str  # "IN_PROGRESS" | "COMPLETED" | "FAILED"
    services: tuple[ServiceUse, ...] = ()
    error: str = ""


def _iam(account_id: str, role_arn: str | None) -> Any:
    return kept_client("iam", role_arn=role_arn, account_id=account_id)


def start_job(arn: str, *, account_id: str, role_arn: str | None = None) -> str:
    """Ask IAM to prepare the last-accessed report of one entity, action by action; returns the job id."""
    answer = _iam(account_id, role_arn).generate_service_last_accessed_details(
        Arn=arn, Granularity="ACTION_LEVEL"
    )
    return str(answer["JobId"])


def read_job(job_id: str, *, account_id: str, role_arn: str | None = None) -> LastAccessed:
    """The report of a job: IN_PROGRESS (ask again later), COMPLETED with every service, or FAILED."""
    iam = _iam(account_id, role_arn)
    services: list[ServiceUse] = []
    marker: str | None = None
    while True:
        kwargs: dict[str, Any] = {"JobId": job_id}
        if marker:
            kwargs["Marker"] = marker
        answer = iam.get_service_last_accessed_details(**kwargs)
        status = str(answer.get("JobStatus", ""))
        if status != "COMPLETED":
            return LastAccessed(status=status, error=str((answer.get("Error") or {}).get("Message", "")))
        for entry in answer.get("ServicesLastAccessed", []):
            namespace = str(entry.get("ServiceNamespace", ""))
            actions = {
                f"{namespace}:{tracked['ActionName']}": tracked.get("LastAccessedTime")
                for tracked in entry.get("TrackedActionsLastAccessed", []) or []
                if tracked.get("ActionName")
            }
            services.append(ServiceUse(namespace, entry.get("LastAuthenticated"), actions))
        if not answer.get("IsTruncated"):
            return LastAccessed(status="COMPLETED", services=tuple(services))
        marker = answer.get("Marker")


@dataclass(frozen=True)
class KeyUse:
    access_key_id: str
    status: str
    last_used: datetime | None
    service: str


def access_keys_last_used(user_name: str, *, account_id: str, role_arn: str | None = None) -> list[KeyUse]:
    """Every access key of an IAM user and when each was last used (None: never)."""
    iam = _iam(account_id, role_arn)
    found = []
    try:
        keys = iam.list_access_keys(UserName=user_name)["AccessKeyMetadata"]
    except ClientError as exc:
        if error_details(exc)[0] == "NoSuchEntity":
            return []
        raise
    for key in keys:
        used = iam.get_access_key_last_used(AccessKeyId=key["AccessKeyId"]).get("AccessKeyLastUsed", {})
        service = str(used.get("ServiceName", ""))
        found.append(
            KeyUse(
                access_key_id=str(key["AccessKeyId"]),
                status=str(key.get("Status", "")),
                last_used=used.get("LastUsedDate"),
                service="" if service == "N/A" else service,
            )
        )
    return found
