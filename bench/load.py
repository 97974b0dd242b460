"""Load test: 200 people on the whole portal for 10 minutes, a worker killed and Redis restarted half-way, then
a check that nothing was lost or done twice.

What runs, all started by this script on 127.0.0.1 and stopped at the end:

- its own PostgreSQL database (``--database``, default ``gatehouse_load``: dropped if it exists, created, dropped
  again at the end unless ``--keep``), on the server ``DATABASE_URL`` names (default ``root@127.0.0.1:5432``);
- its own ``redis-server`` on a free port (broker and cache; append-only file on, as a broker should run);
- its own moto server, seeded with the demo world (``manage.py seed_demo``) plus one IAM user per requester;
- gunicorn (``--gunicorn-workers`` gthread workers of ``--gunicorn-threads`` threads), two ``celery worker``
  processes (one process each) and ``celery beat``; ``DEBUG`` off, as deployed (collected static files, secure
  settings except the HTTPS redirect).

The people (``bench/load_people.py``), each a thread that acts, then thinks (``--think-*`` seconds on average):
70% requesters filing from a pasted AccessDenied message or the form, on the web or the API, browsing their
requests and sometimes revoking a grant; 20% approvers deciding pending requests through the API with a TOTP code
(one decision per code: a person who used this 30 s code waits for the next); 10% auditors reading the audit page
and exporting the trail as CSV. Users, principals, sessions, API tokens and TOTP secrets are made by the script.

Half-way, one worker is killed with SIGKILL (its pool process too) and a replacement started; ``--fault-gap``
seconds later the script's Redis is stopped and, ``--redis-down`` seconds later, started again on the same port.

Afterwards, once every grant has settled (a grant whose message was lost is re-driven by beat's sweeper after
five minutes): every approved grant is active (or revoked when its requester revoked it) and IAM, read back from
moto, allows each active grant's actions and no revoked one's; no grant was applied twice; every notification
was claimed once and written once; ``manage.py verify_audit`` passes. Exit status 1 when a check fails or any
request got a 5xx.

    .venv/bin/python bench/load.py                          # 200 people, 10 minutes
    .venv/bin/python bench/load.py --users 20 --minutes 1   # a smoke run
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_people import PIPELINES, Person, Recorder, Simulation  # noqa: E402

ACCOUNT = "123456789012"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


# --- the services ------------------------------------------------------------------------------------------


class Processes:
    """Children in their own process groups, stopped in reverse order; logs under the run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = open(self.run_dir / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        child = subprocess.Popen(
            args, cwd=ROOT, env=env or dict(os.environ), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        log.close()
        self.children[name] = child
        return child

    def stop(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        child = self.children.pop(name, None)
        if child is None:
            return
        if child.poll() is None:
            os.killpg(child.pid, sig)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(10)
        # a killed celery worker's pool process is in the same group; make sure nothing of it is left
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)

    def stop_all(self) -> None:
        for name in reversed(list(self.children)):
            self.stop(name)


def redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(processes: Processes, port: int) -> None:
    data = processes.run_dir / "redis"
    data.mkdir(exist_ok=True)
    processes.start(
        "redis",
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data), "--save", "",
         "--appendonly", "yes", "--appendfsync", "everysec", "--protected-mode", "yes"],
    )  # fmt: skip
    wait_until(lambda: redis_answers(port), 30, "redis-server")


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.2) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)
    return time.monotonic() - started


def http_answers(port: int, path: str) -> bool:
    import http.client

    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        connection.request("GET", path)
        connection.getresponse().read()
        connection.close()
        return True
    except OSError:
        return False


def worker_args(name: str) -> list[str]:
    from portal.celery import QUEUES

    return [
        sys.executable, "-m", "celery", "-A", "portal", "worker", "-Q", QUEUES, "-n", f"{name}@%h",
        "--concurrency", "1", "--pool", "prefork", "-l", "warning", "--without-gossip", "--without-mingle",
    ]  # fmt: skip


def prepare_environment(args: argparse.Namespace, run_dir: Path, redis_port: int) -> str:
    """Settings for this process and every child, as a deployment would set them; returns the database URL."""
    base = urllib.parse.urlsplit(os.environ.get("DATABASE_URL") or "postgres://root@127.0.0.1:5432/postgres")
    if not base.scheme.startswith("postgres"):
        raise SystemExit("bench/load.py runs on PostgreSQL: DATABASE_URL must name a postgres:// server")
    database_url = f"postgres://{base.netloc}/{args.database}"
    (run_dir / "mail").mkdir()
    os.environ.update(
        {
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "SECURE_SSL_REDIRECT": "0",  # plain HTTP on 127.0.0.1; every other production setting stays
            "SECURE_HSTS_SECONDS": "0",
            "DATABASE_URL": database_url,
            "CELERY_BROKER_URL": f"redis://127.0.0.1:{redis_port}/0",
            "GATEHOUSE_VAR_DIR": str(run_dir / "var"),
            "GATEHOUSE_AUDIT_CHECKPOINT_KEY": secrets.token_urlsafe(48),
            "EMAIL_URL": f"filemail:///{run_dir / 'mail'}",
            "GATEHOUSE_REGIONS": "us-east-1,eu-west-1",
            "GATEHOUSE_REVIEW_EVERY_DAYS": "0",  # no access review campaign starting in the middle of the run
            "GATEHOUSE_HEARTBEAT_SECONDS": "5",
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "DJANGO_SETTINGS_MODULE": "portal.settings",
        }
    )
    return database_url


def recreate_database(database_url: str, *, drop_only: bool = False) -> None:
    import psycopg

    parts = urllib.parse.urlsplit(database_url)
    name = parts.path.lstrip("/")
    with psycopg.connect(f"postgresql://{parts.netloc}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop_only:
            conn.execute(f'CREATE DATABASE "{name}"')


# --- where the time goes -------------------------------------------------------------------------------------


def session_cpu(sid: int) -> float:
    """CPU seconds (user + system) of every live process in session ``sid`` (a child and what it forked)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def pid_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sampler(threading.Thread):
    """Once a second: what PostgreSQL's busy backends of this database wait for, and their CPU time so far."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.url = database_url.replace("postgres://", "postgresql://", 1)
        self.waits: Counter[str] = Counter()
        self.samples = 0
        self.backend_cpu: dict[int, float] = {}
        self.done = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.done.wait(1.0):
                rows = conn.execute(
                    "SELECT pid, state, coalesce(wait_event_type || ':' || wait_event, 'on CPU') FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                ).fetchall()
                self.samples += 1
                for pid, state, wait in rows:
                    self.backend_cpu[pid] = pid_cpu(pid) or self.backend_cpu.get(pid, 0.0)
                    if state == "active":
                        self.waits[wait] += 1


# --- the people ----------------------------------------------------------------------------------------------


def make_people(users: int, iam: Any) -> list[Person]:
    """The people: 70% requesters (each with an IAM user of their own in the demo account, linked to them), 20%
    approvers (TOTP set up, a token that may decide), 10% auditors; sessions and tokens made here."""
    from importlib import import_module

    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
    from django.conf import settings
    from django.contrib.auth.models import Group, User

    from accessrequests.catalog.sync import catalog_sync
    from accessrequests.core.roles import APPROVERS, AUDITORS, REQUESTERS
    from accessrequests.models import ApiToken, AwsAccount, Pipeline, Principal, TokenScope

    auditors = max(1, users // 10)
    approvers = max(1, users // 5)
    requesters = max(1, users - auditors - approvers)
    for n in range(requesters):
        iam.create_user(UserName=f"load-{n:03d}")
    result = catalog_sync()
    if result["errors"]:
        raise SystemExit(f"catalog sync failed: {result['errors']}")
    account = AwsAccount.objects.get(account_id=ACCOUNT)
    pipelines = {
        name: Pipeline.objects.get(account=account, name=name, region=region).pk
        for name, region in PIPELINES.items()
    }
    store = import_module(settings.SESSION_ENGINE).SessionStore
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in (REQUESTERS, APPROVERS, AUDITORS)}

    def user(username: str, group: str) -> Any:
        made = User.objects.create_user(username=username, email=f"{username}@example.com")
        made.groups.add(groups[group])
        return made

    def session(made: Any) -> str:
        s = store()
        s["_auth_user_id"] = str(made.pk)
        s["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
        s["_auth_user_hash"] = made.get_session_auth_hash()
        s.create()
        return str(s.session_key)

    def token(made: Any, *scopes: str) -> str:
        return ApiToken.issue(user=made, name="load", scopes=scopes, lifetime=_days(30))[1]

    people = []
    for n in range(requesters):
        made = user(f"load-requester-{n:03d}", REQUESTERS)
        principal = Principal.objects.get(account=account, name=f"load-{n:03d}")
        principal.users.add(made)
        people.append(
            Person(
                username=made.username, role="requester", session=session(made),
                token=token(made, TokenScope.READ, TokenScope.REQUEST), principal_id=principal.pk,
                principal_name=principal.name, account_pk=account.pk, pipeline_pks=pipelines,
            )
        )  # fmt: skip
    for n in range(approvers):
        made = user(f"load-approver-{n:03d}", APPROVERS)
        secret = generate_totp_secret()
        TOTP.activate(made, secret)
        people.append(
            Person(
                username=made.username, role="approver", totp_secret=secret,
                token=token(made, TokenScope.READ, TokenScope.DECIDE),
            )
        )  # fmt: skip
    for n in range(auditors):
        made = user(f"load-auditor-{n:03d}", AUDITORS)
        people.append(Person(username=made.username, role="auditor", session=session(made)))
    return people


def _days(n: int) -> Any:
    from datetime import timedelta

    return timedelta(days=n)


# --- after the run: has everything settled, and is it right? ------------------------------------------------


def unsettled(redis_port: int) -> dict[str, int]:
    import redis

    from accessrequests.models import Grant, GrantStatus, Notification, NotificationStatus
    from portal.celery import QUEUES

    waiting = {
        f"grants {status}": Grant.objects.filter(status=status).count()
        for status in (GrantStatus.QUEUED, GrantStatus.APPLYING, GrantStatus.REVOKING, GrantStatus.FAILED)
    }
    # Notification rows move only while their task runs or waits to retry, which the broker shows (queued, or taken
    # and not acknowledged); a row left pending by a task that will not run again is for the checks to report.
    waiting["notifications being sent"] = Notification.objects.filter(
        status=NotificationStatus.SENDING
    ).count()
    broker = redis.Redis(port=redis_port)
    try:
        waiting["tasks queued"] = sum(int(broker.llen(q)) for q in QUEUES.split(","))
        waiting["tasks taken, not acknowledged"] = int(broker.hlen("unacked"))
    except redis.RedisError:
        waiting["broker not answering"] = 1
    finally:
        broker.close()
    return {k: v for k, v in waiting.items() if v}


def check_grants(iam: Any) -> tuple[list[str], dict[str, Any]]:
    """Every approved request has one grant, active, or revoked when its requester asked; IAM read back agrees."""
    from accessrequests.models import AccessRequest, AuditEvent, Grant, GrantStatus, RequestStatus
    from tests.provisioning_support import permits, user_policies

    problems: list[str] = []
    approved = AccessRequest.objects.filter(status=RequestStatus.APPROVED)
    without = approved.filter(grant__isnull=True).count()
    if without:
        problems.append(f"{without} approved requests have no grant")
    revoke_asked = set(
        AuditEvent.objects.filter(action="grant.revoke_requested").values_list("object_id", flat=True)
    )
    grants = list(Grant.objects.select_related("principal", "request"))
    by_status = Counter(g.status for g in grants)
    for g in grants:
        if g.status == GrantStatus.ACTIVE:
            continue
        if g.status == GrantStatus.REVOKED and str(g.pk) in revoke_asked:
            continue
        problems.append(f"grant {g.pk} ({g.request.reference}) is {g.status}: {g.last_error[:120]}")
    # IAM, read back: every active grant's actions allowed on its resources; a revoked grant's are not,
    # unless an active grant of the same person covers the same action on the same resource.
    by_principal: dict[str, list[Any]] = {}
    for g in grants:
        by_principal.setdefault(g.principal.name, []).append(g)
    checked = 0
    for name, theirs in sorted(by_principal.items()):
        documents = user_policies(iam, name)
        live = {pair for g in theirs if g.status == GrantStatus.ACTIVE for pair in _pairs(g.statements)}
        for g in theirs:
            for action, resource in _pairs(g.statements):
                allowed = permits(documents, action, resource)
                checked += 1
                if g.status == GrantStatus.ACTIVE and not allowed:
                    problems.append(
                        f"IAM refuses {action} on {resource} to {name}, granted by active grant {g.pk}"
                    )
                if g.status == GrantStatus.REVOKED and allowed and (action, resource) not in live:
                    problems.append(
                        f"IAM still allows {action} on {resource} to {name} after grant {g.pk} was revoked"
                    )
    return problems, {"grants": dict(by_status), "IAM answers checked": checked}


def _pairs(statements: list[dict[str, Any]]) -> list[tuple[str, str]]:
    pairs = []
    for statement in statements:
        actions = statement.get("Action", [])
        resources = statement.get("Resource", [])
        for action in [actions] if isinstance(actions, str) else actions:
            for resource in [resources] if isinstance(resources, str) else resources:
                pairs.append((action, resource))
    return pairs


def check_once() -> tuple[list[str], dict[str, Any]]:
    """No grant applied twice, no request with two grants, no reviewer counted twice on one request."""
    from django.db.models import Count

    from accessrequests.models import AuditEvent, Decision, Grant

    problems = []
    applied = Counter(AuditEvent.objects.filter(action="grant.applied").values_list("object_id", flat=True))
    for object_id, times in applied.items():
        if times > 1:
            problems.append(f"grant {object_id} applied {times} times (grant.applied events)")
    never = Grant.objects.filter(applied_at__isnull=False).exclude(pk__in=[int(i) for i in applied]).count()
    if never:
        problems.append(f"{never} grants were applied without a grant.applied event")
    doubled = Grant.objects.values("request").annotate(n=Count("id")).filter(n__gt=1).count()
    if doubled:
        problems.append(f"{doubled} requests have more than one grant")
    twice = Decision.objects.values("request", "reviewer").annotate(n=Count("id")).filter(n__gt=1).count()
    if twice:
        problems.append(f"{twice} (request, reviewer) pairs decided twice")
    return problems, {"grant.applied events": sum(applied.values())}


def check_notifications(mail_dir: Path) -> tuple[list[str], dict[str, Any]]:
    """Every notification row sent after exactly one claim, and exactly one message written per sent row."""
    from accessrequests.models import AccessRequest, Notification, NotificationStatus

    problems = []
    rows = Notification.objects.all()
    sent = rows.filter(status=NotificationStatus.SENT).count()
    # An announcement interrupted by the killed worker and run again after its request was decided closes what it
    # left unsent as not needed; one of those may have been written before the worker died, never twice.
    interrupted = rows.filter(status=NotificationStatus.NOT_NEEDED, attempts__lte=1)
    for note in rows.exclude(status=NotificationStatus.SENT, attempts=1).exclude(pk__in=interrupted)[:20]:
        problems.append(
            f"notification {note.event_key} to {note.recipient}: {note.status}, claimed {note.attempts} times"
        )
    messages = sum(p.read_bytes().count(b"\nMessage-ID: ") for p in mail_dir.iterdir())
    claimed_then_closed = interrupted.filter(attempts=1).count()
    if not sent <= messages <= sent + claimed_then_closed:
        problems.append(
            f"{messages} emails written for {sent} notifications marked sent "
            f"(and {claimed_then_closed} closed after a claim)"
        )
    # A request decided before its announcement ran has nobody left to tell; one still pending that nobody was
    # told of lost its announcement (not enqueued while Redis was down: dropped by design, notify/hooks.py).
    announced = {
        int(k.split(":", 1)[1])
        for k in rows.filter(event_key__startswith="request.created:").values_list("event_key", flat=True)
    }
    unannounced = AccessRequest.objects.filter(status="pending").exclude(pk__in=announced).count()
    return problems, {
        "notifications sent": sent,
        "notifications closed as not needed": interrupted.count(),
        "emails written": messages,
        "pending requests whose approvers were never told": unannounced,
    }


def check_audit() -> tuple[list[str], dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, "manage.py", "verify_audit", "--no-s3"], cwd=ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        said = (done.stdout + done.stderr).strip().replace("\n", " | ")
        return [f"verify_audit exited {done.returncode}: {said[:300]}"], {}
    return [], {"verify_audit": done.stdout.strip()}


# --- the report ----------------------------------------------------------------------------------------------


def report(recorder: Recorder, started: float, ended: float, windows: dict[str, tuple[float, float]]) -> int:
    samples = [s for s in recorder.samples if started <= s.started <= ended]
    seconds = ended - started
    names = sorted({s.name for s in samples})
    print(f"\n{len(samples):,} requests in {seconds:.0f} s: {len(samples) / seconds:.1f} requests/s")
    header = f"{'endpoint':52} {'count':>6} {'req/s':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'max ms':>7} {'4xx':>5} {'5xx':>4} {'none':>4}"
    print(header)
    for name in [*names, "all"]:
        rows = samples if name == "all" else [s for s in samples if s.name == name]
        times = [1000 * s.seconds for s in rows]
        print(
            f"{name:52} {len(rows):6d} {len(rows) / seconds:6.2f} {statistics.median(times):7.1f} "
            f"{percentile(times, 0.95):7.1f} {percentile(times, 0.99):7.1f} {max(times):7.1f} "
            f"{sum(400 <= s.status < 500 for s in rows):5d} {sum(s.status >= 500 for s in rows):4d} "
            f"{sum(s.status == 0 for s in rows):4d}"
        )
    for label, (a, b) in windows.items():
        rows = [s for s in samples if a <= s.started < b]
        if rows:
            times = [1000 * s.seconds for s in rows]
            print(
                f"{label:52} {len(rows):6d} {len(rows) / max(b - a, 1e-9):6.2f} {statistics.median(times):7.1f} "
                f"{percentile(times, 0.95):7.1f} {percentile(times, 0.99):7.1f} {max(times):7.1f} "
                f"{sum(400 <= s.status < 500 for s in rows):5d} {sum(s.status >= 500 for s in rows):4d} "
                f"{sum(s.status == 0 for s in rows):4d}"
            )
    print("\nwhat the people saw:")
    for what, count in sorted(recorder.notes.items()):
        print(f"  {count:6d}  {what}")
    for name, status, body in recorder.bodies_5xx[:10]:
        print(f"  5xx: {name} {status}: {body[:200]!r}")
    return sum(s.status >= 500 for s in samples)


# What gunicorn logs of each request: the epoch second it was logged, method, path, status, and the time from
# when a worker thread read the request to when the answer was written (µs). The people's times (above) add the
# wait for a free thread and the people's own threads.
ACCESS_FORMAT = "%(t)s %(m)s %(U)s %(s)s %(D)s"


def server_times(log: Path, first: float, last: float) -> None:
    """The server's own time per request, by method and path (ids as <id>), for requests logged in the load."""
    import re
    from datetime import datetime

    rows: dict[str, list[float]] = {}
    for line in log.read_text().splitlines():
        match = re.match(r"\[([^\]]+)\] (\S+) (\S+) (\d+) (\d+)$", line)
        if not match:
            continue
        stamp, method, path, _, micros = match.groups()
        when = datetime.strptime(stamp, "%d/%b/%Y:%H:%M:%S %z").timestamp()
        if not first <= when <= last:
            continue
        name = f"{method} {re.sub(r'/[0-9]+/', '/<id>/', path)}"
        rows.setdefault(name, []).append(int(micros) / 1000)
    everything = [t for times in rows.values() for t in times]
    if not everything:
        print("\n(no access log lines in the load's time)")
        return
    print("\nthe server's own time (gunicorn, from reading the request to writing the answer):")
    print(f"{'method and path':52} {'count':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7}")
    for name, times in [*sorted(rows.items()), ("all", everything)]:
        print(
            f"{name:52} {len(times):6d} {statistics.median(times):7.1f} {percentile(times, 0.95):7.1f} "
            f"{percentile(times, 0.99):7.1f}"
        )


def approval_to_active() -> str:
    from accessrequests.models import Grant

    delays = [
        (applied - decided).total_seconds()
        for applied, decided in Grant.objects.filter(applied_at__isnull=False).values_list(
            "applied_at", "request__decided_at"
        )
        if decided is not None
    ]
    if not delays:
        return "no grant applied"
    return (
        f"approval to active (database times), {len(delays)} grants: p50 {1000 * statistics.median(delays):.0f} ms, "
        f"p95 {1000 * percentile(delays, 0.95):.0f} ms, max {max(delays):.1f} s"
    )


# --- the run -------------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--minutes", type=float, default=10)
    parser.add_argument("--think-requester", type=float, default=30, help="mean seconds between visits")
    parser.add_argument("--think-approver", type=float, default=10)
    parser.add_argument("--think-auditor", type=float, default=30)
    parser.add_argument("--ramp", type=float, default=20, help="seconds over which the people arrive")
    parser.add_argument("--gunicorn-workers", type=int, default=3)
    parser.add_argument("--gunicorn-threads", type=int, default=4)
    parser.add_argument("--no-faults", action="store_true", help="no worker kill, no Redis restart")
    parser.add_argument("--fault-gap", type=float, default=30, help="seconds from the kill to the Redis stop")
    parser.add_argument("--redis-down", type=float, default=5, help="seconds Redis stays stopped")
    parser.add_argument(
        "--settle-minutes", type=float, default=9, help="how long to wait for grants to settle"
    )
    parser.add_argument("--database", default="gatehouse_load")
    parser.add_argument("--keep", action="store_true", help="keep the database and the run directory")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    run_dir = Path(tempfile.mkdtemp(prefix="gatehouse-load-"))
    processes = Processes(run_dir)
    redis_port = free_port()
    database_url = prepare_environment(args, run_dir, redis_port)
    from accessrequests.aws.motoserver import DUMMY_CREDENTIALS, start_moto_server, stop_moto_server

    os.environ.update(DUMMY_CREDENTIALS)
    moto, moto_url = start_moto_server(log_file=run_dir / "moto.log")
    os.environ["AWS_ENDPOINT_URL"] = moto_url
    os.environ["AWS_DEFAULT_REGION"] = REGION
    say(f"run directory {run_dir}; database {args.database}; redis :{redis_port}; moto {moto_url}")
    recreate_database(database_url)
    failed: list[str] = []
    finished = False  # the run directory (every process's log) is kept unless the run got through and passed
    try:
        start_redis(processes, redis_port)
        import boto3
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command
        from django.db import connection

        call_command("migrate", verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        call_command("seed_demo", no_tips=True, stdout=open(run_dir / "seed.log", "w"))  # noqa: SIM115
        iam = boto3.client("iam", region_name=REGION, endpoint_url=moto_url)
        people = make_people(args.users, iam)
        roles = Counter(p.role for p in people)
        say(
            f"{len(people)} people: {roles['requester']} requesters, {roles['approver']} approvers, {roles['auditor']} auditors"
        )
        connection.close()

        web_port = free_port()
        processes.start(
            "gunicorn",
            [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{web_port}",
             "--workers", str(args.gunicorn_workers), "--worker-class", "gthread",
             "--threads", str(args.gunicorn_threads), "--timeout", "120", "--graceful-timeout", "5",
             "--access-logfile", str(run_dir / "access.log"), "--access-logformat", ACCESS_FORMAT],
        )  # fmt: skip
        processes.start("worker-1", worker_args("load1"))
        processes.start("worker-2", worker_args("load2"))
        processes.start("beat", [sys.executable, "-m", "celery", "-A", "portal", "beat", "-l", "warning",
                                 "-s", str(run_dir / "beat-schedule")])  # fmt: skip
        from accessrequests.models import WorkerHeartbeat

        wait_until(lambda: http_answers(web_port, "/healthz"), 60, "gunicorn")
        wait_until(lambda: WorkerHeartbeat.objects.count() >= 2, 90, "two worker heartbeats")
        connection.close()

        recorder = Recorder()
        simulation = Simulation(
            people, port=web_port, session_cookie=settings.SESSION_COOKIE_NAME, recorder=recorder,
            think={"requester": args.think_requester, "approver": args.think_approver, "auditor": args.think_auditor},
            seed=args.seed,
        )  # fmt: skip
        duration = args.minutes * 60
        sampler = Sampler(database_url)
        sampler.start()

        def cpu_now() -> dict[str, float]:
            workers = [name for name in processes.children if name.startswith("worker-")]
            return {
                "gunicorn (master and workers)": session_cpu(processes.children["gunicorn"].pid),
                "celery workers (live ones)": sum(session_cpu(processes.children[n].pid) for n in workers),
                "celery beat": session_cpu(processes.children["beat"].pid),
                "PostgreSQL backends of the run": sum(sampler.backend_cpu.values()),
                "moto server": pid_cpu(moto.pid),
                "this script (the people, and its checks)": pid_cpu(os.getpid()),
            }

        time.sleep(1.5)
        cpu_before = cpu_now()
        started, wall_started = time.monotonic(), time.time()
        say(f"load starts: {len(people)} people for {args.minutes:g} min (arriving over {args.ramp:g} s)")
        simulation.start(args.ramp)
        windows: dict[str, tuple[float, float]] = {}
        if not args.no_faults:
            time.sleep(max(0.0, started + duration / 2 - time.monotonic()))
            killed_at = time.monotonic()
            say("fault: SIGKILL to worker 1 (and its pool process); a replacement starts")
            processes.stop("worker-1", sig=signal.SIGKILL)
            processes.start("worker-3", worker_args("load3"))
            time.sleep(args.fault_gap)
            say(f"fault: Redis stopped for {args.redis_down:g} s")
            processes.stop("redis")
            time.sleep(args.redis_down)
            start_redis(processes, redis_port)
            back_at = time.monotonic()
            say("fault: Redis is back on the same port")
            windows = {
                "  (before the faults)": (started + args.ramp, killed_at),
                "  (kill to 30 s after Redis is back)": (killed_at, back_at + 30),
                "  (after that)": (back_at + 30, started + duration),
            }
        time.sleep(max(0.0, started + duration - time.monotonic()))
        simulation.stop.set()
        ended, wall_ended = time.monotonic(), time.time()
        cpu_used = {k: v - cpu_before.get(k, 0.0) for k, v in cpu_now().items()}
        sampler.done.set()
        say("load stops; waiting for the people's last requests")
        simulation.join(150)

        say("waiting for every grant and notification to settle")
        settle_started = time.monotonic()
        deadline = settle_started + args.settle_minutes * 60
        while (left := unsettled(redis_port)) and time.monotonic() < deadline:
            time.sleep(2)
        settled = time.monotonic() - settle_started
        if left:
            failed.append(f"not settled after {settled:.0f} s: {left}")
        else:
            say(f"settled {settled:.0f} s after the load stopped")

        fives = report(recorder, started, ended, windows)
        server_times(run_dir / "access.log", wall_started, wall_ended)
        print(
            f"\nCPU seconds used during the load ({ended - started:.0f} s on {os.cpu_count()} cores, shared):"
        )
        for what, used in cpu_used.items():
            print(f"  {used:8.1f}  {what}")
        busy = sum(sampler.waits.values())
        print(
            f"PostgreSQL backends busy on average: {busy / max(1, sampler.samples):.1f}; what they were doing:"
        )
        for what, count in sampler.waits.most_common(8):
            print(f"  {100 * count / max(1, busy):5.1f}%  {what}")
        if fives:
            failed.append(f"{fives} requests answered 5xx")
        print(f"\n{approval_to_active()}")
        facts: dict[str, Any] = {}
        for check in (
            lambda: check_grants(iam),
            check_once,
            lambda: check_notifications(run_dir / "mail"),
            check_audit,
        ):
            problems, found = check()
            failed += problems
            facts.update(found)
        from accessrequests.models import AccessRequest

        facts["requests"] = dict(Counter(AccessRequest.objects.values_list("status", flat=True)))
        print("\nchecks:")
        for key, value in facts.items():
            print(f"  {key}: {value}")
        print(f"  load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
        (run_dir / "samples.json").write_text(
            json.dumps([[s.name, s.status, s.started - started, s.seconds] for s in recorder.samples])
        )
        finished = True
    finally:
        processes.stop_all()
        stop_moto_server(moto)
        if not args.keep:
            from django.db import connections

            connections.close_all()
            recreate_database(database_url, drop_only=True)
        if finished and not failed and not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    if failed:
        print(f"\nFAILED (logs of every process in {run_dir}):")
        for problem in failed[:50]:
            print(f"  {problem}")
        return 1
    print("\nall checks passed" + (f" (logs and samples in {run_dir})" if args.keep else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
