"""Identity Center at its limits: 1,200 account assignment operations (600 creations, then each one's deletion)
through a proxy in front of moto that enforces what AWS enforces, beside the limits' lower bound and a same-run
baseline without the governor.

What runs:

- **The proxy** (``tests/provisioning_support.py``: ``AwsProxy`` + ``IdentityCenterLimits``) answers
  ThrottlingException beyond 20 calls a second (a token bucket holding one second's worth; every Identity Center
  call counts, status polls included) and beyond 10 outstanding creations; creations and deletions are answered
  IN_PROGRESS and stay so for 1-2 s (uniform, fixed per request id) before their status polls say SUCCEEDED.
- **Gatehouse**: worker processes (``--processes``, each with ``--threads`` threads, standing in for Celery
  worker slots) call ``accessrequests.aws.identity_center.create_assignment`` / ``delete_assignment`` — the
  functions the provisioning engine calls — with clients from Gatehouse's factory, so every call goes through
  the shared governor (Redis when ``CELERY_BROKER_URL`` is Redis, else the file lock) at its defaults: 20 TPS,
  10 outstanding creations and 10 deletions. Deletions are taken before creations when both wait.
  The database and Celery are not in this loop (``bench/provision.py`` measures those); this measures how close
  the governed calls come to Identity Center's limits.
- **Through Celery** (``--through celery``, first line): the real path. Every (user, permission set) pair is
  an approved permission-set request with its queued grant and one reconcile message, as ``grant_create``
  leaves them; ``--processes`` ``celery worker`` processes (``--threads`` threads each) reconcile through the
  database, the per-principal lock and the governor; each grant is revoked (``grant_revoke``, by its
  requester) as soon as the database says it is active, and the clock stops when all are revoked. The
  governor-driven functions directly follow as the second line. Needs PostgreSQL (a database whose name
  contains "bench": it is emptied) and Redis.
- **Baseline**: the same processes and threads with plain boto3 clients (botocore's adaptive retries, 10
  attempts, no governor) polling every 0.5 s, as a provisioner without the governor would.

Lower bound: max(calls / TPS, Σ creation in-progress time / outstanding limit), where calls are at least two per
operation (the change and one status poll that finds it done).

    CELERY_BROKER_URL=redis://127.0.0.1:6379/11 .venv/bin/python bench/identity_center.py
    .venv/bin/python bench/identity_center.py            # the governor in files (embedded profile)
    DATABASE_URL=postgres://root@127.0.0.1:5432/gatehouse_bench_ic CELERY_BROKER_URL=redis://127.0.0.1:6379/11 \
        .venv/bin/python bench/identity_center.py --through celery [--no-baseline]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# A governor of this run's own (the operating processes inherit it).
os.environ.setdefault("GATEHOUSE_CACHE_PREFIX", f"bench-ic-{os.getpid()}")
os.environ["LOG_LEVEL"] = os.environ.get("LOG_LEVEL", "WARNING")

ACCOUNT = "123456789012"
REGION = "us-east-1"


def in_progress_seconds(request_id: str) -> float:
    return random.Random(request_id).uniform(1.0, 2.0)


# --- the operating processes -------------------------------------------------------------------------------


def _plain_change(sso: Any, instance_arn: str, change: str, where: dict[str, str]) -> None:
    call, key, describe, request_key = {
        "create": (
            sso.create_account_assignment,
            "AccountAssignmentCreationStatus",
            sso.describe_account_assignment_creation_status,
            "AccountAssignmentCreationRequestId",
        ),
        "delete": (
            sso.delete_account_assignment,
            "AccountAssignmentDeletionStatus",
            sso.describe_account_assignment_deletion_status,
            "AccountAssignmentDeletionRequestId",
        ),
    }[change]
    status = call(InstanceArn=instance_arn, TargetType="AWS_ACCOUNT", **where)[key]
    while status["Status"] not in ("SUCCEEDED", "FAILED"):
        time.sleep(0.5)
        status = describe(InstanceArn=instance_arn, **{request_key: status["RequestId"]})[key]
    if status["Status"] == "FAILED":
        raise RuntimeError(status.get("FailureReason"))


def operator(
    mode: str, endpoint: str, instance_arn: str, threads: int, creates: Any, deletes: Any, results: Any
) -> None:
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    import logging

    import boto3
    from botocore.config import Config

    from accessrequests.aws import identity_center as ic

    logging.getLogger("urllib3").setLevel(logging.ERROR)  # more threads than pooled connections: fine here
    instance = ic.Instance(instance_arn=instance_arn, region=REGION)
    plain = boto3.session.Session().client(
        "sso-admin",
        region_name=REGION,
        endpoint_url=endpoint,
        config=Config(retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=threads),
    )

    def work() -> None:
        while True:
            try:
                task = deletes.get_nowait()  # taking access away first
            except queue.Empty:
                try:
                    task = creates.get(timeout=0.05)
                except queue.Empty:
                    continue
            if task is None:
                return
            change, principal_id, permission_set_arn = task
            where = {
                "TargetId": ACCOUNT,
                "PermissionSetArn": permission_set_arn,
                "PrincipalType": "USER",
                "PrincipalId": principal_id,
            }
            try:
                if mode == "plain":
                    _plain_change(plain, instance_arn, change, where)
                elif change == "create":
                    ic.create_assignment(
                        instance,
                        account_id=ACCOUNT,
                        permission_set_arn=permission_set_arn,
                        principal_type="USER",
                        principal_id=principal_id,
                    )
                else:
                    ic.delete_assignment(
                        instance,
                        account_id=ACCOUNT,
                        permission_set_arn=permission_set_arn,
                        principal_type="USER",
                        principal_id=principal_id,
                    )
                results.put((change, principal_id, permission_set_arn, ""))
            except Exception as exc:  # a failed operation is a figure of the run, not the end of it
                results.put((change, principal_id, permission_set_arn, f"{type(exc).__name__}: {exc}"[:200]))

    pool = [threading.Thread(target=work) for _ in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


# --- one run -------------------------------------------------------------------------------------------------


def run(
    mode: str, upstream: str, instance_arn: str, pairs: list[tuple[str, str]], args: Any
) -> dict[str, Any]:
    from tests.provisioning_support import AwsProxy, IdentityCenterLimits

    limits = IdentityCenterLimits(
        seconds=in_progress_seconds, tps=args.tps, outstanding_limit=args.outstanding
    )
    proxy = limits.install(AwsProxy(upstream))
    context = multiprocessing.get_context("spawn")
    creates, deletes, results = context.Queue(), context.Queue(), context.Queue()
    for principal_id, permission_set_arn in pairs:
        creates.put(("create", principal_id, permission_set_arn))
    processes = [
        context.Process(
            target=operator, args=(mode, proxy.url, instance_arn, args.threads, creates, deletes, results)
        )
        for _ in range(args.processes)
    ]
    started_at = time.perf_counter()
    for process in processes:
        process.start()
    failed: list[str] = []
    finished = 0
    deadline = time.monotonic() + args.timeout
    while finished < 2 * len(pairs) and time.monotonic() < deadline:
        try:
            change, principal_id, permission_set_arn, error = results.get(timeout=1)
        except queue.Empty:
            continue
        finished += 1
        if error:
            failed.append(f"{change}: {error}")
            if change == "create":
                finished += 1  # its deletion will not be asked for
        elif change == "create":
            deletes.put(("delete", principal_id, permission_set_arn))
    elapsed = time.perf_counter() - started_at
    for _ in range(args.processes * args.threads):
        creates.put(None)
    for process in processes:
        process.join(30)
        if process.is_alive():
            process.kill()
    proxy.close()
    operations = 2 * len(pairs)
    calls = limits.calls - sum(limits.throttled.values())
    bound_tps = 2 * operations / args.tps
    bound_outstanding = limits.in_progress_seconds["create"] / args.outstanding
    return {
        "mode": mode,
        "seconds": elapsed,
        "complete": finished >= operations,
        "failed": failed,
        "calls": calls,
        "throttled": dict(limits.throttled),
        "peak": dict(limits.peak),
        "bound": max(bound_tps, bound_outstanding),
        "bound_tps": bound_tps,
        "bound_outstanding": bound_outstanding,
        "polls_per_operation": (calls - operations) / operations,
    }


# --- through Celery: the approval, the workers, the database, the governor --------------------------------


def profiled_limits(**kwargs: Any) -> Any:
    """``IdentityCenterLimits`` that also keeps, per request id, when the proxy saw it start and when a poll was
    answered SUCCEEDED, and every answered call's action: where the slot time goes."""
    from collections import Counter

    from tests.provisioning_support import IdentityCenterLimits

    class Profiled(IdentityCenterLimits):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.actions: Counter = Counter()  # answered (not throttled) calls by action
            # (kind, request id) -> time: moto answers a deletion with its creation's request id
            self.started_at: dict[tuple[str, str], float] = {}
            self.done_at: dict[tuple[str, str], float] = {}

        def gate(self, action: str) -> tuple[int, str] | None:
            refused = super().gate(action)
            if refused is None:
                with self._lock:
                    self.actions[action] += 1
            return refused

        def _started(self, action: str, answer: dict[str, Any]) -> dict[str, Any]:
            answer = super()._started(action, answer)
            kind, key = self.CHANGES[action]
            self.started_at[(kind, answer[key]["RequestId"])] = time.monotonic()
            return answer

        def _polled(self, action: str, answer: dict[str, Any]) -> dict[str, Any]:
            answer = super()._polled(action, answer)
            kind, key = self.POLLS[action]
            request = (kind, answer[key]["RequestId"])
            if answer[key].get("Status") == "SUCCEEDED" and request not in self.done_at:
                self.done_at[request] = time.monotonic()
            return answer

    return Profiled(**kwargs)


def seed_portal(url: str, instance_arn: str, pairs: list[tuple[str, str]]) -> tuple[Any, list[Any]]:
    """The Identity Center, the account, its users and the permission sets as Gatehouse's catalog holds them,
    and one approved permission-set request per (user, set) pair: rows, as bench/provision.py builds them."""
    import boto3
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from accessrequests.models import (
        AccessRequest,
        ApprovalRule,
        AwsAccount,
        IdentityCenter,
        PermissionSet,
        PermissionSetRisk,
        Principal,
        PrincipalKind,
        RequestKind,
        RequestStatus,
    )

    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=url)
    store_id = sso.list_instances()["Instances"][0]["IdentityStoreId"]
    center = IdentityCenter.objects.create(
        instance_arn=instance_arn, identity_store_id=store_id, region=REGION
    )
    account = AwsAccount.objects.create(account_id=ACCOUNT, name="bench")
    rule = ApprovalRule.objects.create(name="bench")
    requester = User.objects.create_user("bench-requester")
    requester.groups.add(Group.objects.get_or_create(name="requesters")[0])
    people = {
        user_id: Principal.objects.create(
            kind=PrincipalKind.IC_USER, name=f"bench-{n:03d}", external_id=user_id, identity_center=center
        )
        for n, user_id in enumerate(dict.fromkeys(u for u, _ in pairs))
    }
    sets = {
        arn: PermissionSet.objects.create(
            identity_center=center,
            arn=arn,
            name=f"bench-{n:02d}",
            present=True,
            risk=PermissionSetRisk.STANDARD,
        )
        for n, arn in enumerate(dict.fromkeys(a for _, a in pairs))
    }
    now = timezone.now()
    # Approval order: round robin over the users, so the first messages reach different principals.
    ordered = sorted(pairs, key=lambda pair: (list(sets).index(pair[1]), list(people).index(pair[0])))
    requests = AccessRequest.objects.bulk_create(
        AccessRequest(
            requester=requester,
            principal=people[user_id],
            kind=RequestKind.PERMISSION_SET,
            account=account,
            permission_set=sets[arn],
            level="",
            actions=[],
            statements=[],
            justification="bench",
            starts_at=now,
            duration_hours=8,
            ends_at=now + timedelta(hours=8),
            rule=rule,
            status=RequestStatus.APPROVED,
            decided_at=now,
        )
        for user_id, arn in ordered
    )
    return requester, requests


def start_celery_workers(count: int, threads: int, env: dict[str, str]) -> list[Any]:
    import subprocess

    from portal.celery import QUEUES

    artifacts = ROOT / "var" / "artifacts"
    artifacts.mkdir(parents=True, exist_ok=True)
    workers = []
    for n in range(1, count + 1):
        log = open(artifacts / f"bench-ic-worker-{n}.log", "wb")  # noqa: SIM115 - owned by the child
        command = [sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", QUEUES]
        command += ["-n", f"bench{n}-{os.getpid()}@%h", "--concurrency", str(threads), "--pool", "threads"]
        command += ["-l", "warning", "--without-gossip", "--without-mingle"]
        workers.append(
            subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        )
    return workers


def run_celery(upstream: str, instance_arn: str, pairs: list[tuple[str, str]], args: Any) -> dict[str, Any]:
    """Approve every pair (a queued grant and its reconcile message, as ``grant_create`` leaves them), let the
    ``celery worker`` processes apply them through the database and the governor, revoke each grant
    (``grant_revoke``, as its requester) as soon as the database says it is active, and stop the clock when
    every grant is revoked."""
    from django.db.models import Q
    from django.utils import timezone

    from accessrequests.models import AuditEvent, Delivery, Grant, GrantStatus
    from accessrequests.provisioning.engine import grant_revoke
    from accessrequests.tasks import reconcile_principal
    from bench import provision
    from tests.provisioning_support import AwsProxy

    provision.fresh_database()
    requester, requests = seed_portal(upstream, instance_arn, pairs)
    limits = profiled_limits(seconds=in_progress_seconds, tps=args.tps, outstanding_limit=args.outstanding)
    proxy = limits.install(AwsProxy(upstream))
    env = {**os.environ, "AWS_ENDPOINT_URL": proxy.url}
    workers = start_celery_workers(args.processes, args.threads, env)
    try:
        provision.wait_ready(args.processes)
        grants = [provision.grant_for(req) for req in requests]
        for grant in grants:
            grant.delivery = Delivery.IDENTITY_CENTER
        Grant.objects.bulk_create(grants)
        started_at, started_clock = time.perf_counter(), timezone.now()
        for req in requests:  # one message per approved grant, in approval order, as grant_create sends it
            reconcile_principal.delay(req.principal_id, req.account_id)
        revoked: set[int] = set()
        deadline = time.monotonic() + args.timeout
        done = 0
        while time.monotonic() < deadline:
            for grant_id in (
                Grant.objects.filter(status=GrantStatus.ACTIVE)
                .exclude(pk__in=revoked)
                .values_list("pk", flat=True)
            ):
                grant_revoke(grant_id=grant_id, actor=requester)
                revoked.add(grant_id)
            done = Grant.objects.filter(status=GrantStatus.REVOKED).count()
            if done == len(requests):
                break
            time.sleep(0.1)
        elapsed = time.perf_counter() - started_at
        failed = Grant.objects.filter(~Q(status=GrantStatus.REVOKED)).count()
        failures = AuditEvent.objects.filter(action__in=["grant.failed", "grant.revoke_failed"]).count()
        # When grants went active and revoked, and how many distinct moments (one per reconcile that did them).
        waves = {
            name: (
                [(t - started_clock).total_seconds() for t in (min(times), max(times))] + [len(set(times))]
                if times
                else []
            )
            for name in ("applied_at", "revoked_at")
            for times in [list(Grant.objects.exclude(**{name: None}).values_list(name, flat=True))]
        }
    finally:
        provision.stop(workers)
        provision.purge()
        proxy.close()
    operations = 2 * len(pairs)
    calls = limits.calls - sum(limits.throttled.values())
    polls = sum(n for action, n in limits.actions.items() if action in limits.POLLS)
    bound_tps = 2 * operations / args.tps
    bound_outstanding = limits.in_progress_seconds["create"] / args.outstanding
    holds: dict[str, list[float]] = {"create": [], "delete": []}
    for (kind, request_id), started in limits.started_at.items():
        if (kind, request_id) in limits.done_at:
            holds[kind].append(limits.done_at[(kind, request_id)] - started)
    return {
        "mode": "celery",
        "tps": args.tps,
        "seconds": elapsed,
        "complete": done == len(requests),
        "failed": [f"{failed} grants not revoked, {failures} failures recorded"]
        if failed or failures
        else [],
        "calls": calls,
        "throttled": dict(limits.throttled),
        "peak": dict(limits.peak),
        "bound": max(bound_tps, bound_outstanding),
        "bound_tps": bound_tps,
        "bound_outstanding": bound_outstanding,
        "polls_per_operation": polls / operations,
        "actions": dict(limits.actions),
        "holds": holds,
        "in_progress": dict(limits.in_progress_seconds),
        "waves": waves,
    }


def seed(url: str, users: int, permission_sets: int) -> tuple[str, list[tuple[str, str]]]:
    import boto3

    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=url)
    store = boto3.client("identitystore", region_name=REGION, endpoint_url=url)
    instance = sso.list_instances()["Instances"][0]
    user_ids = [
        store.create_user(
            IdentityStoreId=instance["IdentityStoreId"],
            UserName=f"bench{n:03d}",
            DisplayName=f"bench{n:03d}",
            Name={"GivenName": "Bench", "FamilyName": f"{n:03d}"},
        )["UserId"]
        for n in range(users)
    ]
    arns = [
        sso.create_permission_set(InstanceArn=instance["InstanceArn"], Name=f"bench-{n:02d}")[
            "PermissionSet"
        ]["PermissionSetArn"]
        for n in range(permission_sets)
    ]
    return instance["InstanceArn"], [(u, a) for u in user_ids for a in arns]


def report(result: dict[str, Any], label: str) -> None:
    throttled = sum(result["throttled"].values())
    print(
        f"{label:44} {result['seconds']:8.1f} {result['seconds'] / result['bound']:7.2f} "
        f"{len(result['failed']):7d} {throttled:10d} {result['calls']:7d} {result['polls_per_operation']:11.2f} "
        f"{result['peak'].get('create', 0):5d}"
    )


def profile(result: dict[str, Any]) -> None:
    """Where the time of the Celery run went, as the proxy saw it."""
    operations = sum(len(h) for h in result["holds"].values())
    print(f"  celery: calls by action: {dict(sorted(result['actions'].items()))}")
    print(
        f"  celery: {result['calls'] / result['seconds']:.1f} calls/s answered on average; "
        f"{result['calls'] / max(1, operations):.2f} calls per operation"
    )
    for name, wave in result["waves"].items():
        if wave:
            print(
                f"  celery: {name.replace('_at', '')}: first {wave[0]:.1f} s, last {wave[1]:.1f} s after the first "
                f"message, at {wave[2]} distinct moments (one per reconcile that did them)"
            )
    # The same bound for the calls this path chose to make: how close the governor drove them to the limits.
    made = max(result["calls"] / result["tps"], result["bound_outstanding"])
    print(
        f"  celery: bound for the calls made max({result['calls']} / {result['tps']:g} TPS, "
        f"{result['bound_outstanding']:.1f} s) = {made:.1f} s; seconds / that = {result['seconds'] / made:.2f}"
    )
    for kind, holds in result["holds"].items():
        if holds:
            mean = sum(holds) / len(holds)
            spent = result["in_progress"].get(kind, 0) / len(holds)
            print(
                f"  celery: {kind}: outstanding (start seen -> SUCCEEDED answered) {mean:.2f} s on average "
                f"against {spent:.2f} s in progress; {sum(holds) / result['seconds']:.1f} outstanding on average"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--assignments", type=int, default=600, help="creations (each is deleted afterwards)")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--tps", type=float, default=20.0)
    parser.add_argument("--outstanding", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument(
        "--through",
        choices=["governor", "celery"],
        default="governor",
        help="celery: approvals, celery worker processes, the database and the governor (first line), then the "
        "governor-driven functions directly (second line); needs PostgreSQL (a database named *bench*) and Redis",
    )
    args = parser.parse_args()
    if args.through == "celery":
        import bench.provision  # noqa: F401 - before Django: this run's own queues, the database settings

    from accessrequests.aws.motoserver import DUMMY_CREDENTIALS, start_moto_server, stop_moto_server

    os.environ.update(DUMMY_CREDENTIALS)
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["GATEHOUSE_IC_TPS"] = str(args.tps)
    os.environ["GATEHOUSE_IC_OUTSTANDING"] = str(args.outstanding)
    moto, url = start_moto_server()
    import django

    django.setup()
    from accessrequests.aws import governor

    try:
        users = max(1, args.assignments // 10)
        instance_arn, pairs = seed(url, users, 10)
        pairs = pairs[: args.assignments]
        results = [run_celery(url, instance_arn, pairs, args)] if args.through == "celery" else []
        results.append(run("gatehouse", url, instance_arn, pairs, args))
        store = governor.current().store
        if not args.no_baseline:
            results.append(run("plain", url, instance_arn, pairs, args))
    finally:
        stop_moto_server(moto)
    first = results[0]
    plain = [r for r in results if r["mode"] == "plain"]
    print(
        f"{2 * len(pairs):,} assignment operations ({len(pairs)} creations, {len(pairs)} deletions), "
        f"{args.processes} processes x {args.threads} threads; proxy limits: {args.tps:g} TPS (status polls "
        f"count), {args.outstanding} outstanding creations, 1-2 s IN_PROGRESS; governor in "
        f"{type(store).__name__}"
    )
    print(
        f"lower bound {first['bound']:.1f} s = max({2 * 2 * len(pairs)} calls / {args.tps:g} TPS = "
        f"{first['bound_tps']:.1f} s, creations' in-progress time / {args.outstanding} = "
        f"{first['bound_outstanding']:.1f} s)"
    )
    print(
        f"{'':44} {'seconds':>8} {'x bound':>7} {'failed':>7} {'throttled':>10} {'calls':>7} {'polls/op':>11} {'peak':>5}"
    )
    for result in results:
        if result["mode"] == "celery":
            report(result, "Gatehouse through Celery workers + database")
            if not result["complete"]:
                print(f"  the Celery run stopped at the {args.timeout:.0f} s timeout")
        elif result["mode"] == "gatehouse":
            report(result, "Gatehouse (governed identity_center module)")
    if plain:
        report(plain[0], "plain boto3, adaptive retries, 0.5 s polls")
        if not plain[0]["complete"]:
            print(f"  baseline stopped at the {args.timeout:.0f} s timeout")
    if first["mode"] == "celery":
        profile(first)
    for result in results:
        if result["failed"]:
            print(f"  {result['mode']}: first failure: {result['failed'][0]}")
        print(f"  {result['mode']}: throttled by {result['throttled'] or 'nothing'}")


if __name__ == "__main__":
    main()
