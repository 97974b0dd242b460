"""Shared parts of the provisioning tests: the demo world in the database, a fault-injecting AWS proxy, and
reading back what IAM really holds so moto's own policy evaluator can judge it."""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import urllib.parse
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3
from moto.iam.access_control import IAMPolicy, PermissionResult

from accessrequests.aws.client import clear_credentials_cache
from accessrequests.models import (
    AccessLevel,
    AwsAccount,
    Grant,
    PassableRole,
    Pipeline,
    Principal,
    RequestKind,
)
from accessrequests.services.catalog import catalog_sync
from accessrequests.services.requests import RequestDraft, request_approve, request_submit
from tests.conftest import WorkerProcess, make_user
from tests.factories import make_rule

MANAGEMENT = "123456789012"
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

    def approve(self, principal: str | Principal = "mateojackson", **fields: Any) -> Grant:
        """File a request through the real workflow and approve it; returns its (queued) grant."""
        req = request_submit(requester=self.requester, draft=self.draft(principal, **fields))
        request_approve(request_id=req.pk, reviewer=self.approver, comment="ok")
        return Grant.objects.get(request=req)


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


def _action(headers: Any, body: bytes) -> str:
    target = headers.get("X-Amz-Target")
    if target:
        return str(target).rsplit(".", 1)[-1]
    fields = urllib.parse.parse_qs(body.decode("utf-8", "replace"))
    return fields.get("Action", [""])[0]


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
    """

    upstream: str
    fail_writes: list[tuple[int, str]] = field(default_factory=list)
    hold: bool = False
    calls: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    held: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        proxy = self
        target = urllib.parse.urlsplit(self.upstream)

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                action = _action(self.headers, body)
                answer = proxy._intercept(action)
                if answer is not None:
                    status, code = answer
                    self._send(status, {"Content-Type": "text/xml"}, _error(status, code, "Rate exceeded"))
                    return
                connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("connection", "host")}
                headers["Host"] = target.netloc
                connection.request(self.command, self.path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                connection.close()
                skip = {"connection", "transfer-encoding", "content-length"}
                self._send(
                    response.status,
                    {k: v for k, v in response.getheaders() if k.lower() not in skip},
                    payload,
                )

            def _send(self, status: int, headers: dict[str, str], payload: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(payload)
                self.close_connection = True

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
            self.calls[action] += 1
        if is_write and self.hold:
            self.held.set()
            self.release.wait(60)
        return None

    def writes(self) -> Counter:
        return Counter({a: n for a, n in self.calls.items() if a.startswith(WRITE_PREFIXES)})

    def close(self) -> None:
        self.release.set()
        self._server.shutdown()
        self._server.server_close()


class Workers:
    """Real ``celery worker`` processes for one test; whatever happens, they are stopped at its end."""

    def __init__(self) -> None:
        self.started: list[WorkerProcess] = []

    def start(self, env: dict[str, str], name: str = "w1", *, purge: bool = True) -> WorkerProcess:
        if purge and not self.started:
            from portal.celery import app

            app.control.purge()  # nothing left over from an earlier test reaches this test's workers
        worker = WorkerProcess(env, name=name).start()
        self.started.append(worker)
        return worker

    def stop_all(self) -> None:
        # A cold shutdown (SIGQUIT): the tests are done with them, and a warm one waits seconds for nothing.
        for worker in self.started:
            worker.stop(signal.SIGQUIT, timeout=10)
