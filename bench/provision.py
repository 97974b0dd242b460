"""Provisioning throughput: 1,000 approved grants for 100 IAM users, applied by two Celery worker processes
against a moto server, beside a plain boto3 loop doing the same job in the same run.

What is measured:

- **Gatehouse**: the grants (10 per user, each GetPipeline on its own pipeline) are approved rows in the database;
  each grant asks for its reconcile (``enqueue_reconcile``, as ``grant_create`` does on approval: a message is
  sent unless one for the same user is already waiting), and two ``celery worker``
  processes (one process each) apply them. The clock runs from the first enqueue until the database says all
  1,000 are active; each reconcile reads IAM, writes only what differs, reads back and verifies, and records
  the audit trail. AWS write calls are counted from the request ids the engine recorded.
- **Plain loop**: one thread, one boto3 client, one ``PutUserPolicy`` per grant with that user's policy so far,
  no database, no queue, no verification: the naive provisioner's cost on the same moto server.
- **Plain loop, coalesced**: the same loop writing only the final document per user (the writes Gatehouse ends
  up making), for reference.

    .venv/bin/python bench/provision.py                                   # SQLite + filesystem broker
    DATABASE_URL=postgres://root@127.0.0.1:5432/gatehouse_bench_provision \\
        CELERY_BROKER_URL=redis://127.0.0.1:6379/6 .venv/bin/python bench/provision.py [--stream]

A PostgreSQL database named here is emptied first, so its name must contain "bench".
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SQLITE = ROOT / "var" / "bench-provision.sqlite3"
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DATABASE_URL", f"sqlite:///{SQLITE}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Queues of this run's own: a test run or a demo sharing the broker neither takes nor purges these messages.
os.environ["GATEHOUSE_QUEUE_PREFIX"] = f"bench{os.getpid()}-"
# And cache keys (the marks of reconciles on their way) of its own: ids start again in each fresh database.
os.environ["GATEHOUSE_CACHE_PREFIX"] = f"bench{os.getpid()}"
os.environ["LOG_LEVEL"] = os.environ.get("LOG_LEVEL", "WARNING")

from accessrequests.aws.motoserver import DUMMY_CREDENTIALS, start_moto_server, stop_moto_server  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"


def start_aws() -> tuple[subprocess.Popen[bytes], str]:
    os.environ.update(DUMMY_CREDENTIALS)
    process, url = start_moto_server()
    os.environ["AWS_ENDPOINT_URL"] = url
    os.environ["AWS_DEFAULT_REGION"] = REGION
    return process, url


def fresh_database() -> None:
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "sqlite":
        connection.close()
        SQLITE.unlink(missing_ok=True)
    # It empties the database it is given, so it only accepts one that says it is for benchmarks.
    if connection.vendor != "sqlite" and "bench" not in str(connection.settings_dict["NAME"]):
        raise SystemExit("DATABASE_URL must name a database whose name contains 'bench'; it will be emptied")
    call_command("migrate", verbosity=0)
    if connection.vendor != "sqlite":
        call_command("flush", interactive=False, verbosity=0)


def seed(grants: int, principals: int, iam) -> list:
    """Users in IAM and approved requests in the database (built as rows: 1,000 trips through the services
    would measure the request workflow, which bench/pages.py covers)."""
    from django.contrib.auth.models import User
    from django.utils import timezone

    from accessrequests.models import (
        AccessLevel,
        AccessRequest,
        ApprovalRule,
        AwsAccount,
        Principal,
        PrincipalKind,
        RequestKind,
        RequestStatus,
    )
    from accessrequests.policy import documents as policy

    account = AwsAccount.objects.create(account_id=ACCOUNT, name="bench")
    rule = ApprovalRule.objects.create(name="bench")
    requester = User.objects.create_user("bench-requester")
    people = []
    for n in range(principals):
        name = f"bench-user-{n:03d}"
        iam.create_user(UserName=name)
        people.append(
            Principal(
                kind=PrincipalKind.IAM_USER,
                name=name,
                external_id=f"arn:aws:iam::{ACCOUNT}:user/{name}",
                account=account,
            )
        )
    people = Principal.objects.bulk_create(people)
    now = timezone.now()
    requests = []
    for n in range(grants):
        statements = policy.pipeline_statements(
            region=REGION,
            account_id=ACCOUNT,
            pipelines=[f"pipeline-{n:04d}"],
            actions=["codepipeline:GetPipeline"],
        )
        requests.append(
            AccessRequest(
                requester=requester,
                principal=people[n % principals],
                kind=RequestKind.PIPELINE,
                account=account,
                level=AccessLevel.CUSTOM,
                actions=["codepipeline:GetPipeline"],
                statements=policy.coalesce(statements),
                justification="bench",
                starts_at=now,
                duration_hours=8,
                ends_at=now + timedelta(hours=8),
                rule=rule,
                status=RequestStatus.APPROVED,
                decided_at=now,
            )
        )
    return AccessRequest.objects.bulk_create(requests)


def grant_for(req: Any) -> Any:
    from accessrequests.models import Delivery, Grant, GrantStatus

    return Grant(
        request=req,
        principal_id=req.principal_id,
        account_id=req.account_id,
        delivery=Delivery.IAM_POLICY,
        statements=req.statements,
        status=GrantStatus.QUEUED,
        starts_at=req.starts_at,
        expires_at=req.ends_at,
    )


def start_workers(count: int) -> list[subprocess.Popen[bytes]]:
    from django.db import connection

    from portal.celery import QUEUES

    env = dict(os.environ)
    if connection.vendor == "sqlite":
        env["DATABASE_URL"] = f"sqlite:///{SQLITE}"
    artifacts = ROOT / "var" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    workers = []
    for n in range(1, count + 1):
        log = open(artifacts / f"bench-provision-worker-{n}.log", "wb")  # noqa: SIM115 - owned by the child
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "portal",
                    "worker",
                    "-Q",
                    QUEUES,
                    "-n",
                    f"bench{n}-{os.getpid()}@%h",
                    "--concurrency",
                    "1",
                    "--pool",
                    "prefork",
                    "-l",
                    "warning",
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    return workers


def wait_ready(count: int, timeout: float = 60) -> None:
    from accessrequests.models import WorkerHeartbeat

    deadline = time.monotonic() + timeout
    while WorkerHeartbeat.objects.filter(hostname__startswith="bench").count() < count:
        if time.monotonic() > deadline:
            raise SystemExit("the workers did not start; see var/artifacts/bench-provision-worker-*.log")
        time.sleep(0.2)


def stop(workers: list[subprocess.Popen[bytes]]) -> None:
    import signal

    for worker in workers:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGQUIT)
    for worker in workers:
        try:
            worker.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)


def queued_messages(queue: str) -> int:
    from portal.celery import app

    with app.connection_for_write() as conn:
        return int(
            conn.default_channel.queue_declare(queue=queue, durable=True, auto_delete=False).message_count
        )


def run_gatehouse(requests: list, *, stream: bool, timeout: float) -> dict[str, float]:
    """Approve (batch: all grants exist before the first message; stream: each grant is created and its
    message sent one after the other while the workers run) and wait until every grant is active."""
    from accessrequests.models import Grant, GrantStatus
    from accessrequests.provisioning.grants import enqueue_reconcile
    from portal.celery import queue_name

    if not stream:
        Grant.objects.bulk_create(grant_for(req) for req in requests)
    started = time.perf_counter()
    # Each approved grant asks for its reconcile, in approval order, as grant_create does.
    for req in requests:
        if stream:
            grant_for(req).save()
        enqueue_reconcile(principal_id=req.principal_id, account_id=req.account_id)
    sent = time.perf_counter() - started
    deadline = time.monotonic() + timeout
    while Grant.objects.filter(status=GrantStatus.ACTIVE).count() < len(requests):
        if time.monotonic() > deadline:
            failed = Grant.objects.filter(status=GrantStatus.FAILED).count()
            raise SystemExit(f"not all grants active after {timeout}s ({failed} failed)")
        time.sleep(0.05)
    active = time.perf_counter() - started
    # The messages of grants an earlier reconcile already applied are still queued; each is a no-op.
    while queued_messages(queue_name("provisioning")) and time.monotonic() < deadline:
        time.sleep(0.05)
    drained = time.perf_counter() - started
    ids = {i for row in Grant.objects.values_list("aws_request_ids", flat=True) for i in row}
    return {"sent": sent, "active": active, "drained": drained, "writes": len(ids)}


def purge() -> None:
    from portal.celery import QUEUES, app

    with app.connection_for_write() as conn:
        for queue in QUEUES.split(","):
            conn.default_channel.queue_purge(queue)


def run_plain(iam, grants: int, principals: int, coalesced: bool) -> tuple[float, int]:
    from accessrequests.policy import documents as policy

    statements: dict[str, list[dict]] = {}
    for n in range(grants):
        statements.setdefault(f"plain-user-{n % principals:03d}", []).extend(
            policy.pipeline_statements(
                region=REGION,
                account_id=ACCOUNT,
                pipelines=[f"pipeline-{n:04d}"],
                actions=["codepipeline:GetPipeline"],
            )
        )
    suffix = "c" if coalesced else "n"
    for user in statements:
        iam.create_user(UserName=f"{user}{suffix}")
    writes = 0
    started = time.perf_counter()
    if coalesced:
        for user, user_statements in statements.items():
            document = json.dumps({"Version": "2012-10-17", "Statement": user_statements})
            iam.put_user_policy(UserName=f"{user}{suffix}", PolicyName="plain", PolicyDocument=document)
            writes += 1
    else:
        so_far: dict[str, list[dict]] = {}
        for n in range(grants):
            user = f"plain-user-{n % principals:03d}"
            so_far.setdefault(user, []).append(statements[user][len(so_far.get(user, []))])
            document = json.dumps({"Version": "2012-10-17", "Statement": so_far[user]})
            iam.put_user_policy(UserName=f"{user}{suffix}", PolicyName="plain", PolicyDocument=document)
            writes += 1
    return time.perf_counter() - started, writes


def verify(iam, principals: int, grants: int) -> None:
    from moto.iam.access_control import IAMPolicy, PermissionResult

    for n in range(grants):
        user = f"bench-user-{n % principals:03d}"
        document = iam.get_user_policy(UserName=user, PolicyName="gatehouse")["PolicyDocument"]
        arn = f"arn:aws:codepipeline:{REGION}:{ACCOUNT}:pipeline-{n:04d}"
        result = IAMPolicy(json.dumps(document)).is_action_permitted("codepipeline:GetPipeline", arn)
        if result != PermissionResult.PERMITTED:
            raise SystemExit(f"{user} lacks grant {n} after the run")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--grants", type=int, default=1000)
    parser.add_argument("--principals", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument(
        "--stream", action="store_true", help="approve one grant after the other while the workers run"
    )
    args = parser.parse_args()

    moto, url = start_aws()
    import django

    django.setup()
    import boto3
    from django.db import connection

    from portal.celery import app

    iam = boto3.client("iam", region_name=REGION, endpoint_url=url)
    workers: list[subprocess.Popen[bytes]] = []
    try:
        fresh_database()
        requests = seed(args.grants, args.principals, iam)
        workers = start_workers(args.workers)
        wait_ready(args.workers)
        measured = run_gatehouse(requests, stream=args.stream, timeout=args.timeout)
        elapsed, writes = measured["active"], int(measured["writes"])
        verify(iam, args.principals, args.grants)
        plain_elapsed, plain_writes = run_plain(iam, args.grants, args.principals, coalesced=False)
        coalesced_elapsed, coalesced_writes = run_plain(iam, args.grants, args.principals, coalesced=True)
    finally:
        stop(workers)
        purge()
        stop_moto_server(moto)
    broker = app.connection_for_write().as_uri()
    print(f"database {connection.vendor}, broker {broker}, {args.workers} worker processes, moto at {url}")
    print(
        f"{args.grants:,} grants for {args.principals} IAM users ({args.grants // args.principals} GetPipeline "
        f"grants each; {'approved one after the other while the workers ran' if args.stream else 'all approved, then queued'}); "
        "every one verified in IAM afterwards"
    )
    rows = [
        ("Gatehouse (queue, lock, read, write, read back, audit)", elapsed, writes),
        ("plain boto3 loop, one PutUserPolicy per grant", plain_elapsed, plain_writes),
        ("plain boto3 loop, final document per user only", coalesced_elapsed, coalesced_writes),
    ]
    print(f"{'':58} {'seconds':>8} {'grants/s':>9} {'writes':>7} {'writes/grant':>13}")
    for label, seconds, count in rows:
        print(
            f"{label:58} {seconds:8.2f} {args.grants / seconds:9.1f} {count:7d} {count / args.grants:13.3f}"
        )
    print(f"Gatehouse time / plain loop time: {elapsed / plain_elapsed:.2f}")
    print(
        f"all {args.grants:,} reconciles asked for after {measured['sent']:.2f} s (grant rows saved first with --stream)"
    )
    print(f"every queued message consumed (no-op reconciles included) after {measured['drained']:.2f} s")


if __name__ == "__main__":
    main()
