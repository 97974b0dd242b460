"""IAM's last-accessed data, which moto does not implement, answered by a stand-in at the HTTP boundary.

``manage.py demo`` starts ``LastAccessedEndpoint`` in front of its moto server and gives every process the
endpoint's URL as ``AWS_ENDPOINT_URL``: Gatehouse's AWS code (``aws/last_used.py``) is the production code and
cannot tell. The endpoint forwards every call to moto except three, which ``LastAccessedStandIn`` answers in AWS's
documented query/XML shapes:

- ``GenerateServiceLastAccessedDetails`` (Arn, Granularity): a new JobId;
- ``GetServiceLastAccessedDetails`` (JobId): ``IN_PROGRESS`` the first ``polls_before_done`` times it is asked about
  a job (IAM prepares reports asynchronously), then ``COMPLETED`` with CodePipeline, IAM and every service the entity
  used, and at ACTION_LEVEL the tracked actions; an unknown job id is AWS's ``NoSuchEntity`` error;
- ``GetAccessKeyLastUsed`` (AccessKeyId): the key's last use, or AWS's answer for a key never used.

What it answers is what it saw: a call that passes the endpoint signed with an IAM user's access key (the demo
users' keys are in ``var/demo-aws-keys.json``) is a use, by that user, of the action called. Users and keys are
learned from moto's own answers (CreateUser, CreateAccessKey, ListAccessKeys, ...) as they pass. The tests set
``uses`` and ``key_uses`` themselves (``tests/last_accessed_standin.py``).
"""

from __future__ import annotations

import http.client
import itertools
import re
import threading
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from xml.sax.saxutils import escape

NS = "https://iam.amazonaws.com/doc/2010-05-08/"
SERVICE_NAMES = {"codepipeline": "AWS CodePipeline", "iam": "AWS Identity and Access Management"}
# SigV4: "Credential=AKIA.../20240101/us-east-1/codepipeline/aws4_request"
_CREDENTIAL = re.compile(r"Credential=([A-Z0-9]+)/\d{8}/([a-z0-9-]+)/([a-z0-9-]+)/aws4_request")

Answer = bytes | tuple[int, bytes]


def _time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _envelope(action: str, result: str, request_id: str) -> bytes:
    return (
        f'<{action}Response xmlns="{NS}"><{action}Result>{result}</{action}Result>'
        f"<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{action}Response>"
    ).encode()


def action_of(headers: Any, body: bytes) -> str:
    """The AWS action a request calls: the JSON protocols name it in X-Amz-Target, the query protocol (IAM, STS)
    in the form field Action."""
    target = headers.get("X-Amz-Target")
    if target:
        return str(target).rsplit(".", 1)[-1]
    return query_fields(body).get("Action", "")


def query_fields(body: bytes) -> dict[str, str]:
    return {k: v[0] for k, v in urllib.parse.parse_qs(body.decode("utf-8", "replace")).items()}


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
    user_arns: dict[str, str] = field(default_factory=dict)  # user name -> ARN, learned from moto's answers
    key_users: dict[str, str] = field(default_factory=dict)  # access key id -> user name, likewise

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    def answers(self) -> dict[str, Any]:
        return {
            "GenerateServiceLastAccessedDetails": self.generate,
            "GetServiceLastAccessedDetails": self.get,
            "GetAccessKeyLastUsed": self.key_last_used,
        }

    # --- what passes by ---

    def learn(self, payload: bytes) -> None:
        """Remember the users and access keys an IAM answer names (any element with UserName and Arn, or
        UserName and AccessKeyId)."""
        if b"<UserName>" not in payload:
            return
        try:
            root = ET.fromstring(payload)  # noqa: S314 - moto's answer on 127.0.0.1, not outside input
        except ET.ParseError:
            return
        with self._lock:
            for element in root.iter():
                name = element.findtext("{*}UserName")
                if not name:
                    continue
                arn = element.findtext("{*}Arn")
                key = element.findtext("{*}AccessKeyId")
                if arn and ":user/" in arn:
                    self.user_arns[name] = arn
                if key:
                    self.key_users[key] = name

    def record(self, authorization: str, action: str, *, now: datetime | None = None) -> None:
        """A call signed with a known user's access key is a use of ``service:action`` by that user."""
        match = _CREDENTIAL.search(authorization or "")
        if not match or not action:
            return
        key, region, service = match.groups()
        now = now or datetime.now(UTC)
        with self._lock:
            arn = self.user_arns.get(self.key_users.get(key, ""))
            if arn is None:
                return
            self.key_uses[key] = now
            uses = [u for u in self.uses.get(arn, []) if u.action != f"{service}:{action}"]
            self.uses[arn] = [*uses, Use(f"{service}:{action}", now, region)]

    # --- the three answers ---

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

    def get(self, fields: dict[str, str]) -> Answer:
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
            uses = list(self.uses.get(job["arn"], []))
        head = f"<JobType>{job['granularity']}</JobType><JobCreationDate>{_time(job['created'])}</JobCreationDate>"
        if not done:
            return _envelope(
                "GetServiceLastAccessedDetails",
                f"<JobStatus>IN_PROGRESS</JobStatus>{head}<ServicesLastAccessed/><IsTruncated>false</IsTruncated>",
                f"req-get-{job_id}-{job['polls']}",
            )
        members = []
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
        with self._lock:
            used = self.key_uses.get(key_id)
            name = self.key_users.get(key_id, "")
        if used is None:
            inner = "<Region>N/A</Region><ServiceName>N/A</ServiceName>"
        else:
            inner = f"<LastUsedDate>{_time(used)}</LastUsedDate><Region>us-east-1</Region><ServiceName>codepipeline</ServiceName>"
        user = f"<UserName>{escape(name)}</UserName>" if name else ""
        return _envelope(
            "GetAccessKeyLastUsed",
            f"{user}<AccessKeyLastUsed>{inner}</AccessKeyLastUsed>",
            f"req-keyused-{escape(key_id)}",
        )


def forward(upstream: str, method: str, path: str, headers: Any, body: bytes) -> tuple[int, list, bytes]:
    """Send one request on to ``upstream`` as it came; returns (status, headers, body)."""
    target = urllib.parse.urlsplit(upstream)
    connection = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port, timeout=60)
    try:
        sent = {k: v for k, v in headers.items() if k.lower() not in ("connection", "host")}
        sent["Host"] = target.netloc
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        connection.close()


class Relay(BaseHTTPRequestHandler):
    """A request handler that answers one request per connection, quietly (the base of the endpoint's handler and
    of the tests' fault-injecting proxy)."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def reply(self, status: int, headers: Iterable[tuple[str, str]], payload: bytes) -> None:
        self.close_connection = True
        try:
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
        except OSError:
            pass  # the caller went away (a killed worker): what was asked has been done all the same


class LastAccessedEndpoint:
    """An HTTP endpoint on 127.0.0.1 in front of ``upstream`` (the moto server): the stand-in's three answers,
    everything else forwarded, and what passes by observed. ``start()`` returns it; ``url`` is its address."""

    def __init__(self, upstream: str, standin: LastAccessedStandIn | None = None) -> None:
        self.upstream = upstream
        self.standin = standin or LastAccessedStandIn()
        endpoint = self

        class Handler(Relay):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = action_of(self.headers, body)
                answer = endpoint.standin.answers().get(action)
                if answer is not None:
                    answered = answer(query_fields(body))
                    status, payload = answered if isinstance(answered, tuple) else (200, answered)
                    self.reply(status, [("Content-Type", "text/xml")], payload)
                    return
                status, headers, payload = forward(
                    endpoint.upstream, self.command, self.path, self.headers, body
                )
                endpoint.standin.record(self.headers.get("Authorization", ""), action)
                if status < 300:
                    endpoint.standin.learn(payload)
                skip = {"connection", "transfer-encoding", "content-length"}
                self.reply(status, [(k, v) for k, v in headers if k.lower() not in skip], payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True, name="last-accessed")

    def start(self) -> LastAccessedEndpoint:
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
