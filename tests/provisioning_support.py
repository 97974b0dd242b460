"""Shared parts of the provisioning tests: the demo world in the database, a fault-injecting AWS proxy, and
reading back what IAM really holds so moto's own policy evaluator can judge it."""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any

import boto3
from moto.iam.access_control import IAMPolicy, PermissionResult

from accessrequests.aws.client import clear_credentials_cache
from accessrequests.catalog.sync import catalog_sync
from accessrequests.devworld.last_accessed import Relay, action_of, forward, query_fields
from accessrequests.models import (
    AccessLevel,
    AwsAccount,
    Grant,
    PassableRole,
    Pipeline,
    Principal,
    RequestKind,
)
from accessrequests.workflow.requests import RequestDraft, request_approve, request_submit
from portal.celery import QUEUE_NAMES
from tests.conftest import ARTIFACTS, ROOT, WorkerProcess, make_user
from tests.factories import fresh_factor, make_rule

MANAGEMENT = "123456789012"
OUTSIDE_ACCOUNT = "210987654321"
OUTSIDE_EXTERNAL_ID = "partner-42"
REGION = "us-east-1"
MY_PIPELINE_ARN = f"arn:aws:codepipeline:{REGION}:{MANAGEMENT}:my-pipeline"
WRITE_PREFIXES = (
    "Put",
    "Create",
    "Delete",
    "Attach",
    "Detach",
    "Update",
    "Provision",
    "Set",
    "Tag",
    "Untag",
    "Add",
    "Remove",
)


class PortalWorld:
    """The moto demo world synced into the catalog, a rule over the management account, people to use it."""

    def __init__(self, seeded: dict[str, Any]):
        self.seeded = seeded
        catalog_sync()
        self.account = AwsAccount.objects.get(account_id=MANAGEMENT)
        self.pipeline = Pipeline.objects.get(account=self.account, name="my-pipeline", region=REGION)
        self.requester = make_user("requester", "requesters")
        self.approver = make_user("approver", "approvers")
        self.admin = make_user("admin", "admins")
        self.rule = make_rule(accounts=[self.account], max_duration_hours=8)
        for principal in Principal.objects.all():
            principal.users.add(self.requester)

    def principal(self, name: str | Principal) -> Principal:
        return name if isinstance(name, Principal) else Principal.objects.get(name=name)

    def role(self, name: str) -> PassableRole:
        return PassableRole.objects.get(account=self.account, name=name)

    def draft(self, principal: str | Principal = "mateojackson", **fields: Any) -> RequestDraft:
        values: dict[str, Any] = {
            "principal": self.principal(principal),
            "kind": RequestKind.PIPELINE,
            "account": self.account,
            "pipelines": [self.pipeline],
            "level": AccessLevel.CUSTOM,
            "actions": ["codepipeline:GetPipeline"],
            "justification": "The pipeline failed and I need to read its definition",
            "duration_hours": 4,
        }
        values.update(fields)
        return RequestDraft(**values)

    def approve_cross_account(self) -> Grant:
        """mateojackson's viewer access on my-pipeline for an outside account, through a portal-owned role."""
        return self.approve(
            "mateojackson",
            kind=RequestKind.CROSS_ACCOUNT,
            level=AccessLevel.VIEWER,
            actions=[],
            trusted_account_id=OUTSIDE_ACCOUNT,
            external_id=OUTSIDE_EXTERNAL_ID,
        )

    def approve(self, principal: str | Principal = "mateojackson", **fields: Any) -> Grant:
        """File a request through the real workflow and approve it; returns its (queued) grant."""
        req = request_submit(requester=self.requester, draft=self.draft(principal, **fields))
        request_approve(
            request_id=req.pk, reviewer=self.approver, second_factor=fresh_factor(self.approver), comment="ok"
        )
        return Grant.objects.get(request=req)


def reconcile(grant: Grant) -> dict[str, Any]:
    """What the worker's task does for a grant's principal, run here (the tests of workers start real ones)."""
    from accessrequests.provisioning import engine as provisioning

    return provisioning.reconcile_principal(principal_id=grant.principal_id, account_id=grant.account_id)


def status_of(grant: Grant) -> str:
    grant.refresh_from_db()
    return grant.status


# --- reading back what AWS holds --------------------------------------------------------------------------


def iam_client(endpoint: str, **credentials: str) -> Any:
    return boto3.client("iam", region_name=REGION, endpoint_url=endpoint, **credentials)


def user_policies(iam: Any, user: str) -> list[dict[str, Any]]:
    """Every identity policy that applies to an IAM user: inline, attached, and those of its groups."""
    documents = [
        iam.get_user_policy(UserName=user, PolicyName=name)["PolicyDocument"]
        for name in iam.list_user_policies(UserName=user)["PolicyNames"]
    ]
    attached = iam.list_attached_user_policies(UserName=user)["AttachedPolicies"]
    for group in iam.list_groups_for_user(UserName=user)["Groups"]:
        documents += [
            iam.get_group_policy(GroupName=group["GroupName"], PolicyName=name)["PolicyDocument"]
            for name in iam.list_group_policies(GroupName=group["GroupName"])["PolicyNames"]
        ]
        attached += iam.list_attached_group_policies(GroupName=group["GroupName"])["AttachedPolicies"]
    for policy in attached:
        version = iam.get_policy(PolicyArn=policy["PolicyArn"])["Policy"]["DefaultVersionId"]
        documents.append(
            iam.get_policy_version(PolicyArn=policy["PolicyArn"], VersionId=version)["PolicyVersion"][
                "Document"
            ]
        )
    return [json.loads(urllib.parse.unquote(d)) if isinstance(d, str) else d for d in documents]


def permits(
    documents: Iterable[dict[str, Any]], action: str, resource: str, context: dict[str, str] | None = None
) -> bool:
    """moto's IAM evaluator over the read-back policies: some Allow matches and no Deny does."""
    results = [
        IAMPolicy(json.dumps(document)).is_action_permitted(
            action, resource, incoming_condition_values=context
        )
        for document in documents
    ]
    return PermissionResult.PERMITTED in results and PermissionResult.DENIED not in results


def admin_credentials(endpoint: str) -> dict[str, str]:
    """An IAM user that may do everything, for the portal's worker once moto enforces IAM."""
    iam = iam_client(endpoint)
    iam.create_user(UserName="gatehouse-hub")
    iam.put_user_policy(
        UserName="gatehouse-hub",
        PolicyName="admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="gatehouse-hub")["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def use_credentials(monkeypatch: Any, env: dict[str, str], credentials: dict[str, str]) -> None:
    """Point this process and a worker's environment at the same (real moto) credentials."""
    for name in ("AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(name, raising=False)
        env.pop(name, None)
    for name, value in credentials.items():
        monkeypatch.setenv(name, value)
        env[name] = value
    clear_credentials_cache()


def aws_env(base: dict[str, str], endpoint: str) -> dict[str, str]:
    env = dict(base)
    env.update({"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": REGION})
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        if name in os.environ:
            env[name] = os.environ[name]
    return env


# --- a fault-injecting proxy in front of moto -------------------------------------------------------------


def _error(status: int, code: str, message: str) -> bytes:
    return (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
        f"<RequestId>proxy-{code}</RequestId></ErrorResponse>"
    ).encode()


@dataclass
class AwsProxy:
    """A tiny HTTP proxy on 127.0.0.1 in front of the moto server: counts calls, fails or holds writes.

    ``fail_writes``: answers for the next IAM/SSO write calls instead of forwarding them, e.g.
    ``[(400, "Throttling"), (500, "InternalFailure")]``. ``hold`` makes every write wait until ``release``
    is set (``held`` is set when one arrives), so a test can kill a worker in the middle of applying.
    ``rewrite``: for a JSON-protocol action, a function that changes AWS's real answer before it is returned
    (e.g. an asynchronous Identity Center status that is still IN_PROGRESS, or FAILED).
    ``gate``: sees every call's action before it is forwarded and may answer it instead, with (status, code)
    (e.g. ``IdentityCenterLimits`` refusing what AWS's limits would refuse).
    """

    upstream: str
    fail_writes: list[tuple[int, str]] = field(default_factory=list)
    hold: bool = False
    rewrite: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = field(default_factory=dict)
    # For a query-protocol action (IAM), a function of the call's form fields that answers it here, in AWS's
    # XML (the body, or an HTTP status and the body), instead of forwarding it (what moto does not implement); None
    # forwards it after all.
    answer: dict[str, Callable[[dict[str, str]], bytes | tuple[int, bytes] | None]] = field(
        default_factory=dict
    )
    gate: Callable[[str], tuple[int, str] | None] | None = None
    calls: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self

        class Handler(Relay):
            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = action_of(self.headers, body)
                if action in proxy.answer:
                    answered = proxy.answer[action](query_fields(body))
                    if answered is not None:
                        status, payload = answered if isinstance(answered, tuple) else (200, answered)
                        proxy._count(action)
                        self._send(status, {"Content-Type": "text/xml"}, payload)
                        return
                answer = proxy._intercept(action)
                if answer is None and proxy.gate is not None:
                    answer = proxy.gate(action)
                if answer is not None:
                    status, code = answer
                    if self.headers.get("X-Amz-Target"):  # a JSON-protocol service answers errors in JSON
                        payload = json.dumps({"__type": code, "message": "Rate exceeded"}).encode()
                        headers = {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}
                        self._send(status, headers, payload)
                    else:
                        self._send(
                            status, {"Content-Type": "text/xml"}, _error(status, code, "Rate exceeded")
                        )
                    return
                status, headers, payload = forward(
                    proxy.upstream, self.command, self.path, self.headers, body
                )
                proxy._count(action)
                if action in proxy.rewrite and status == 200:
                    payload = json.dumps(proxy.rewrite[action](json.loads(payload))).encode()
                skip = {"connection", "transfer-encoding", "content-length"}
                self._send(status, {k: v for k, v in headers if k.lower() not in skip}, payload)

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.reply(status, headers.items(), payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _relay

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _intercept(self, action: str) -> tuple[int, str] | None:
        is_write = action.startswith(WRITE_PREFIXES)
        with self._lock:
            if is_write and self.fail_writes:
                self.failed[action] += 1
                return self.fail_writes.pop(0)
        if is_write and self.hold:
            self.held.set()
            self.release.wait(60)
        return None

    def _count(self, action: str) -> None:
        # Counted once AWS (moto) has answered: a call the proxy failed or never forwarded did not happen.
        with self._lock:
            self.calls[action] += 1

    def writes(self) -> Counter:
        return Counter({a: n for a, n in self.calls.items() if a.startswith(WRITE_PREFIXES)})

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class IdentityCenterLimits:
    """Identity Center as AWS runs it, played by the proxy in front of moto (which finishes everything at once).

    - Assignment creations and deletions are answered IN_PROGRESS, and their status polls say IN_PROGRESS for
      ``polls`` polls, or for ``seconds(request id)`` seconds, before SUCCEEDED.
    - Outstanding creations (deletions) are counted from the moment the proxy sees the request until a status
      poll reports it SUCCEEDED; ``peak`` keeps the highest count seen.
    - ``tps`` and ``outstanding_limit``, when set, are enforced as AWS does: beyond them, ThrottlingException.
      ``storm`` answers the next so many Identity Center calls, whatever they are, with ThrottlingException.
    """

    CHANGES = {
        "CreateAccountAssignment": ("create", "AccountAssignmentCreationStatus"),
        "DeleteAccountAssignment": ("delete", "AccountAssignmentDeletionStatus"),
    }
    POLLS = {
        "DescribeAccountAssignmentCreationStatus": ("create", "AccountAssignmentCreationStatus"),
        "DescribeAccountAssignmentDeletionStatus": ("delete", "AccountAssignmentDeletionStatus"),
    }

    def __init__(
        self,
        *,
        polls: int = 0,
        seconds: Callable[[str], float] | None = None,
        tps: float | None = None,
        outstanding_limit: int | None = None,
        storm: int = 0,
    ) -> None:
        self.polls, self.seconds, self.tps, self.outstanding_limit, self.storm = (
            polls,
            seconds,
            tps,
            outstanding_limit,
            storm,
        )
        self._lock = threading.Lock()
        self.outstanding: dict[str, int] = {"create": 0, "delete": 0}
        self.peak: dict[str, int] = {"create": 0, "delete": 0}
        self.done: Counter = Counter()
        self.in_progress_seconds: Counter = Counter()  # kind -> the time operations were made to take, summed
        self.throttled: Counter = Counter()  # why: "tps", "outstanding", "storm"
        self.calls = 0
        self._seen: dict[str, tuple[str, float, int]] = {}  # request id -> (kind, started, polls)
        self._tokens = float(tps or 0)
        self._refilled = time.monotonic()

    def install(self, proxy: AwsProxy) -> AwsProxy:
        proxy.gate = self.gate
        for action in self.CHANGES:
            proxy.rewrite[action] = functools.partial(self._started, action)
        for action in self.POLLS:
            proxy.rewrite[action] = functools.partial(self._polled, action)
        return proxy

    def gate(self, action: str) -> tuple[int, str] | None:
        with self._lock:
            self.calls += 1
            if self.storm > 0:
                self.storm -= 1
                self.throttled["storm"] += 1
                return (400, "ThrottlingException")
            if self.tps:
                now = time.monotonic()
                self._tokens = min(self.tps, self._tokens + (now - self._refilled) * self.tps)
                self._refilled = now
                if self._tokens < 1:
                    self.throttled["tps"] += 1
                    return (400, "ThrottlingException")
                self._tokens -= 1
            if action in self.CHANGES:
                kind = self.CHANGES[action][0]
                if (
                    kind == "create"
                    and self.outstanding_limit
                    and self.outstanding[kind] >= self.outstanding_limit
                ):
                    self.throttled["outstanding"] += 1
                    return (400, "ThrottlingException")
                self.outstanding[kind] += 1
                self.peak[kind] = max(self.peak[kind], self.outstanding[kind])
        return None

    def _started(self, action: str, answer: dict[str, Any]) -> dict[str, Any]:
        kind, key = self.CHANGES[action]
        status = answer[key]
        with self._lock:
            self._seen[status["RequestId"]] = (kind, time.monotonic(), 0)
            if self.seconds is not None:
                self.in_progress_seconds[kind] += self.seconds(status["RequestId"])
        status["Status"] = "IN_PROGRESS"
        return answer

    def _polled(self, action: str, answer: dict[str, Any]) -> dict[str, Any]:
        kind, key = self.POLLS[action]
        status = answer[key]
        request_id = status["RequestId"]
        with self._lock:
            seen = self._seen.get(request_id)
            if seen is None:
                return answer  # not one this proxy started: as moto says
            _, started, polls = seen
            polls += 1
            running = (
                time.monotonic() - started < self.seconds(request_id)
                if self.seconds is not None
                else polls <= self.polls
            )
            if running:
                self._seen[request_id] = (kind, started, polls)
                status["Status"] = "IN_PROGRESS"
            else:
                del self._seen[request_id]
                self.outstanding[kind] -= 1
                self.done[kind] += 1
        return answer


_runs = itertools.count(1)


class Workers:
    """Real ``celery worker`` processes on queues of this test's own, stopped whatever happens.

    Other test runs on the same machine share the broker (the filesystem folder or Redis database), and their
    workers and purges must neither take this test's messages nor lose them; so the producer in this process
    and these workers use queue names with a prefix unique to the test (``GATEHOUSE_QUEUE_PREFIX``).
    """

    def __init__(self) -> None:
        from portal.celery import app

        self.app = app
        self.prefix = f"t{os.getpid()}n{next(_runs)}-"
        self.queues = [self.prefix + name for name in QUEUE_NAMES]
        self.started: list[WorkerProcess] = []
        conf = app.conf
        self._saved = (conf.task_default_queue, conf.task_routes)
        conf.task_default_queue = self.prefix + "gatehouse"
        conf.task_routes = {
            pattern: {**route, "queue": self.prefix + str(route["queue"])}
            for pattern, route in dict(conf.task_routes).items()
        }
        self._forget_routes()

    def _forget_routes(self) -> None:
        # Celery caches the routing table and the queue declarations on first use.
        self.app.amqp._rtable = None
        self.app.amqp.__dict__.pop("router", None)
        self.app.amqp.__dict__.pop("queues", None)

    def start(
        self,
        env: dict[str, str],
        name: str = "w1",
        *,
        concurrency: int = 1,
        pool: str = "prefork",
        queues: list[str] | None = None,
    ) -> WorkerProcess:
        """``queues``: only these of Gatehouse's queues (names without the prefix); all of them by default."""
        worker = _PrefixedWorker(
            {**env, "GATEHOUSE_QUEUE_PREFIX": self.prefix},
            queues=",".join(self.prefix + q for q in queues) if queues else ",".join(self.queues),
            name=name,
            concurrency=concurrency,
            pool=pool,
        )
        worker.start()
        self.started.append(worker)
        return worker

    def close(self) -> None:
        # A cold shutdown (SIGQUIT): the tests are done with them, and a warm one waits seconds for nothing.
        for worker in self.started:
            worker.stop(signal.SIGQUIT, timeout=10)
        # Leave nothing behind in the shared broker (a private one may be gone already: nothing to do then).
        with contextlib.suppress(Exception), self.app.connection_for_write() as conn:
            for queue in self.queues:
                conn.default_channel.queue_purge(queue)
        self.app.conf.task_default_queue, self.app.conf.task_routes = self._saved
        self._forget_routes()


class _PrefixedWorker(WorkerProcess):
    def __init__(
        self, env: dict[str, str], *, queues: str, name: str, concurrency: int = 1, pool: str = "prefork"
    ) -> None:
        super().__init__(env, concurrency=concurrency, name=name)
        self.queues = queues
        self.pool = pool
        self.log_path = ARTIFACTS / f"provisioning-worker-{name}.log"

    def start(self) -> WorkerProcess:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", self.queues,
                "-n", f"{self.name}-{os.getpid()}@%h", "--concurrency", str(self.concurrency), "--pool", self.pool,
                "-l", "info", "--without-gossip", "--without-mingle",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        return self
