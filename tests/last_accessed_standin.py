"""A stand-in for IAM's last-accessed data, which moto does not implement, at the HTTP boundary.

``LastAccessedStandIn`` plugs into ``AwsProxy.answer`` and answers, in AWS's documented query/XML shapes:

- ``GenerateServiceLastAccessedDetails`` (Arn, Granularity): a new JobId;
- ``GetServiceLastAccessedDetails`` (JobId): ``IN_PROGRESS`` the first ``polls_before_done`` times it is asked about
  a job, then ``COMPLETED`` with the services (and, at ACTION_LEVEL, the tracked actions) the test set for that ARN;
  an unknown job id is AWS's ``NoSuchEntity`` error;
- ``GetAccessKeyLastUsed`` (AccessKeyId): the time the test set, or AWS's answer for a key never used.

Everything else goes on to moto unchanged.
"""

from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from xml.sax.saxutils import escape

NS = "https://iam.amazonaws.com/doc/2010-05-08/"
SERVICE_NAMES = {"codepipeline": "AWS CodePipeline", "iam": "AWS Identity and Access Management"}


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(action: str, result: str, request_id: str) -> bytes:
    return (
        f'<{action}Response xmlns="{NS}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    ).encode()


@dataclass
class Use:
    """When an entity last used one action (``codepipeline:GetPipeline``)."""

    action: str
    at: datetime
    region: str = "us-east-1"


@dataclass
class LastAccessedStandIn:
    polls_before_done: int = 1
    uses: dict[str, list[Use]] = field(default_factory=dict)  # entity ARN -> its uses
    key_uses: dict[str, datetime] = field(default_factory=dict)  # access key id -> last use
    jobs: dict[str, dict] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def answers(self) -> dict:
        return {
            "GenerateServiceLastAccessedDetails": self.generate,
            "GetServiceLastAccessedDetails": self.get,
            "GetAccessKeyLastUsed": self.key_last_used,
        }

    def generate(self, fields: dict[str, str]) -> bytes:
        with self._lock:
            job_id = str(uuid.UUID(int=next(self._ids)))  # AWS's job ids are 36-character UUIDs
            self.jobs[job_id] = {
                "arn": fields.get("Arn", ""),
                "granularity": fields.get("Granularity", "SERVICE_LEVEL"),
                "polls": 0,
                "created": datetime.now(UTC),
            }
        return _envelope(
            "GenerateServiceLastAccessedDetails", f"<JobId>{job_id}</JobId>", f"req-generate-{job_id}"
        )

    def get(self, fields: dict[str, str]) -> bytes | tuple[int, bytes]:
        job_id = fields.get("JobId", "")
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return 404, (
                    f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>NoSuchEntity</Code>'
                    f"<Message>No job {escape(job_id)}</Message></Error><RequestId>req-nojob</RequestId>"
                    "</ErrorResponse>"
                ).encode()
            job["polls"] += 1
            done = job["polls"] > self.polls_before_done
        head = f"<JobType>{job['granularity']}</JobType><JobCreationDate>{_time(job['created'])}</JobCreationDate>"
        if not done:
            return _envelope(
                "GetServiceLastAccessedDetails",
                f"<JobStatus>IN_PROGRESS</JobStatus>{head}<ServicesLastAccessed/><IsTruncated>false</IsTruncated>",
                f"req-get-{job_id}-{job['polls']}",
            )
        members = []
        uses = self.uses.get(job["arn"], [])
        for namespace in sorted({u.action.split(":")[0] for u in uses} | {"codepipeline", "iam"}):
            mine = [u for u in uses if u.action.split(":")[0] == namespace]
            newest = max(mine, key=lambda u: u.at) if mine else None
            member = (
                f"<ServiceName>{SERVICE_NAMES.get(namespace, namespace)}</ServiceName>"
                f"<ServiceNamespace>{namespace}</ServiceNamespace>"
                f"<TotalAuthenticatedEntities>{1 if newest else 0}</TotalAuthenticatedEntities>"
            )
            if newest is not None:
                member += (
                    f"<LastAuthenticated>{_time(newest.at)}</LastAuthenticated>"
                    f"<LastAuthenticatedEntity>{escape(job['arn'])}</LastAuthenticatedEntity>"
                    f"<LastAuthenticatedRegion>{newest.region}</LastAuthenticatedRegion>"
                )
            if job["granularity"] == "ACTION_LEVEL":
                tracked = "".join(
                    f"<member><ActionName>{u.action.split(':', 1)[1]}</ActionName>"
                    f"<LastAccessedEntity>{escape(job['arn'])}</LastAccessedEntity>"
                    f"<LastAccessedRegion>{u.region}</LastAccessedRegion>"
                    f"<LastAccessedTime>{_time(u.at)}</LastAccessedTime></member>"
                    for u in mine
                )
                member += f"<TrackedActionsLastAccessed>{tracked}</TrackedActionsLastAccessed>"
            members.append(f"<member>{member}</member>")
        return _envelope(
            "GetServiceLastAccessedDetails",
            f"<JobStatus>COMPLETED</JobStatus>{head}<JobCompletionDate>{_time(datetime.now(UTC))}</JobCompletionDate>"
            f"<ServicesLastAccessed>{''.join(members)}</ServicesLastAccessed><IsTruncated>false</IsTruncated>",
            f"req-get-{job_id}-{job['polls']}",
        )

    def key_last_used(self, fields: dict[str, str]) -> bytes:
        key_id = fields.get("AccessKeyId", "")
        used = self.key_uses.get(key_id)
        if used is None:
            inner = "<Region>N/A</Region><ServiceName>N/A</ServiceName>"
        else:
            inner = f"<LastUsedDate>{_time(used)}</LastUsedDate><Region>us-east-1</Region><ServiceName>codepipeline</ServiceName>"
        return _envelope(
            "GetAccessKeyLastUsed",
            f"<AccessKeyLastUsed>{inner}</AccessKeyLastUsed>",
            f"req-keyused-{escape(key_id)}",
        )
