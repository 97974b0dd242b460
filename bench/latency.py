"""Approval to access: how long after an approver approves is the grant active, read back from AWS?

For each kind — an IAM policy grant (mateojackson, GetPipeline on my-pipeline) and an Identity Center grant
(paulo.santos, the CodePipelineReadOnly permission set) — ``--samples`` requests are filed and approved one at a
time through the real services (``request_submit``, ``request_approve``) while two idle ``celery worker``
processes wait on the broker. The clock starts just before ``request_approve`` and stops when the database says
the grant is active (the worker marks it so only after reading AWS back); the bench then reads AWS itself to
confirm, revokes the grant and waits until it is gone before the next sample.

Baseline, same run, same moto server: the bare AWS calls the worker has to make at the least — IAM:
``PutUserPolicy`` + ``GetUserPolicy``; Identity Center: ``CreateAccountAssignment`` + one
``DescribeAccountAssignmentCreationStatus`` + ``ListAccountAssignmentsForPrincipal`` — one plain boto3 client.

    DATABASE_URL=postgres://root@127.0.0.1:5432/gh_ic CELERY_BROKER_URL=redis://127.0.0.1:6379/11 \\
        .venv/bin/python bench/latency.py

It runs in a database of its own made the way the tests make theirs (``test_<name>_<pid>``), dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ["GATEHOUSE_QUEUE_PREFIX"] = f"latency{os.getpid()}-"
os.environ.setdefault("GATEHOUSE_CACHE_PREFIX", f"latency-{os.getpid()}")
os.environ["LOG_LEVEL"] = os.environ.get("LOG_LEVEL", "WARNING")

REGION = "us-east-1"
ACCOUNT = "123456789012"
PIPELINE_ARN = f"arn:aws:codepipeline:{REGION}:{ACCOUNT}:my-pipeline"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def start_workers(count: int, database_url: str) -> list[subprocess.Popen[bytes]]:
    from portal.celery import QUEUES

    env = {**os.environ, "DATABASE_URL": database_url, "GATEHOUSE_HEARTBEAT_SECONDS": "1"}
    artifacts = ROOT / "var" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    workers = []
    for n in range(1, count + 1):
        log = open(artifacts / f"bench-latency-worker-{n}.log", "wb")  # noqa: SIM115 - owned by the child
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", QUEUES,
                 "-n", f"latency{n}-{os.getpid()}@%h", "--concurrency", "1", "--pool", "prefork",
                 "-l", "warning", "--without-gossip", "--without-mingle"],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        )  # fmt: skip
    return workers


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGQUIT)
    for worker in workers:
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(interval)


def database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = (s["USER"] or "") + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s.get('HOST') or '127.0.0.1'}:{s.get('PORT') or 5432}/{s['NAME']}"


def measure(world: Any, kind: str, samples: int, aws: Any) -> tuple[list[float], list[float]]:
    """(approval to active, the approval service call alone) for each sample, in seconds."""
    from accessrequests.models import Grant, GrantStatus, PermissionSet, RequestKind
    from accessrequests.provisioning import engine as provisioning
    from accessrequests.workflow.requests import request_approve, request_submit
    from tests.factories import fresh_factor

    if kind == "iam":
        fields: dict[str, Any] = {}
        principal = "mateojackson"
    else:
        fields = {
            "kind": RequestKind.PERMISSION_SET,
            "permission_set": PermissionSet.objects.get(name="CodePipelineReadOnly"),
            "pipelines": [],
            "level": "",
        }
        principal = "paulo.santos"
    seconds, approving = [], []
    for _ in range(samples):
        req = request_submit(requester=world.requester, draft=world.draft(principal, **fields))
        started = time.perf_counter()
        request_approve(
            request_id=req.pk,
            reviewer=world.approver,
            second_factor=fresh_factor(world.approver),
            comment="ok",
        )
        approving.append(time.perf_counter() - started)
        grant = Grant.objects.get(request=req)
        wait_until(
            lambda g=grant: Grant.objects.filter(pk=g.pk, status=GrantStatus.ACTIVE).exists(), 60, "active"
        )
        seconds.append(time.perf_counter() - started)
        if not aws.holds(kind):
            raise SystemExit(f"grant {grant.pk} is active but AWS does not show it")
        provisioning.grant_revoke(grant_id=grant.pk, actor=world.requester)
        wait_until(
            lambda g=grant: Grant.objects.filter(pk=g.pk, status=GrantStatus.REVOKED).exists(),
            60,
            "revoked",
            interval=0.01,
        )
    return seconds, approving


class Aws:
    """A plain boto3 view of the moto server: reads for the bench, and the bare calls of the baseline."""

    def __init__(self, url: str, seeded: dict[str, Any]) -> None:
        import boto3

        self.iam = boto3.client("iam", region_name=REGION, endpoint_url=url)
        self.sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=url)
        center = seeded["identity_center"]
        self.instance_arn = center["instance_arn"]
        self.paulo = center["users"]["paulo.santos"]
        self.permission_set = center["permission_sets"]["CodePipelineReadOnly"]

    def holds(self, kind: str) -> bool:
        if kind == "iam":
            names = self.iam.list_user_policies(UserName="mateojackson")["PolicyNames"]
            return "gatehouse" in names and PIPELINE_ARN in str(
                self.iam.get_user_policy(UserName="mateojackson", PolicyName="gatehouse")["PolicyDocument"]
            )
        return self.permission_set in self._ic_assigned()

    def _ic_assigned(self) -> set[str]:
        answer = self.sso.list_account_assignments_for_principal(
            InstanceArn=self.instance_arn, PrincipalId=self.paulo, PrincipalType="USER"
        )
        return {a["PermissionSetArn"] for a in answer["AccountAssignments"] if a["AccountId"] == ACCOUNT}

    def bare(self, kind: str, samples: int) -> list[float]:
        import json

        seconds = []
        document = json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "codepipeline:GetPipeline", "Resource": PIPELINE_ARN}
                ],
            }
        )
        where = {
            "InstanceArn": self.instance_arn,
            "TargetId": ACCOUNT,
            "TargetType": "AWS_ACCOUNT",
            "PermissionSetArn": self.permission_set,
            "PrincipalType": "USER",
            "PrincipalId": self.paulo,
        }
        for _ in range(samples):
            started = time.perf_counter()
            if kind == "iam":
                self.iam.put_user_policy(
                    UserName="mateojackson", PolicyName="baseline", PolicyDocument=document
                )
                self.iam.get_user_policy(UserName="mateojackson", PolicyName="baseline")
                seconds.append(time.perf_counter() - started)
                self.iam.delete_user_policy(UserName="mateojackson", PolicyName="baseline")
            else:
                status = self.sso.create_account_assignment(**where)["AccountAssignmentCreationStatus"]
                self.sso.describe_account_assignment_creation_status(
                    InstanceArn=self.instance_arn, AccountAssignmentCreationRequestId=status["RequestId"]
                )
                self._ic_assigned()
                seconds.append(time.perf_counter() - started)
                self.sso.delete_account_assignment(**where)
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    from accessrequests.aws.motoserver import DUMMY_CREDENTIALS, start_moto_server, stop_moto_server

    os.environ.update(DUMMY_CREDENTIALS)
    moto, url = start_moto_server()
    os.environ["AWS_ENDPOINT_URL"] = url
    os.environ["AWS_DEFAULT_REGION"] = REGION
    import django

    django.setup()
    from django.db import connection

    from accessrequests.devworld.demo_world import seed_demo_world
    from accessrequests.models import WorkerHeartbeat
    from portal.celery import app
    from tests.provisioning_support import PortalWorld

    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        seeded = seed_demo_world()
        world = PortalWorld(seeded)
        aws = Aws(url, seeded)
        workers = start_workers(args.workers, database_url())
        wait_until(lambda: WorkerHeartbeat.objects.count() >= args.workers, 60, "the workers", interval=0.2)
        results = {}
        for kind in ("iam", "ic"):
            measure(world, kind, 3, aws)  # warm: the first reconcile of a process loads its modules
            results[kind] = (*measure(world, kind, args.samples, aws), aws.bare(kind, args.samples))
    finally:
        stop(workers)
        with app.connection_for_write() as conn:
            for queue in app.conf.task_queues or ():
                conn.default_channel.queue_purge(queue.name)
        stop_moto_server(moto)
        connection.creation.destroy_test_db(original_name, verbosity=0)
    print(
        f"database {connection.vendor}, broker {app.connection_for_write().as_uri()}, {args.workers} idle worker "
        f"processes, moto at {url}; {args.samples} approvals of each kind, one at a time"
    )
    print(f"{'':46} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    labels = {
        "iam": ("IAM policy grant: approval to active", "bare PutUserPolicy + GetUserPolicy"),
        "ic": (
            "Identity Center grant: approval to active",
            "bare Create + DescribeStatus + ListForPrincipal",
        ),
    }
    for kind, (gatehouse, approving, bare) in results.items():
        rows = (
            (labels[kind][0], gatehouse),
            ("  of which request_approve (commit, enqueue)", approving),
            (labels[kind][1], bare),
        )
        for label, values in rows:
            print(
                f"{label:46} {1000 * statistics.median(values):8.1f} {1000 * percentile(values, 0.95):8.1f} "
                f"{1000 * max(values):8.1f}"
            )


if __name__ == "__main__":
    main()
