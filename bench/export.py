"""Audit export throughput and the web process's peak memory, beside PostgreSQL's own COPY of the same rows.

Seeds N hash-chained audit events (default 1,000,000) into a PostgreSQL database, starts gunicorn (one sync
worker) on it, downloads /audit/export.csv and its manifest as an auditor (formula cells neutralised, as always)
while sampling the worker's resident memory, then runs `COPY (SELECT … ORDER BY seq) TO STDOUT WITH CSV` of the
same rows in the same run.

    psql -h 127.0.0.1 -U root -d postgres -c "CREATE DATABASE gatehouse_bench"
    DATABASE_URL=postgres://root@127.0.0.1:5432/gatehouse_bench .venv/bin/python bench/export.py --events 1000000
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
    sys.exit("bench/export.py compares with PostgreSQL's COPY: set DATABASE_URL=postgres://…")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.contrib.sessions.backends.db import SessionStore  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from accessrequests.ledger.chain import GENESIS_HASH, compute_hash  # noqa: E402
from accessrequests.models import AuditEvent  # noqa: E402

COLUMNS = "id, seq, created_at, actor_label, action, object_type, object_id, request_id, principal_id, account_id, before, after, aws_request_ids, ip, user_agent, prev_hash, hash"


def seed(n: int) -> None:
    have = AuditEvent.objects.count()
    if have >= n:
        return
    print(f"seeding {n - have:,} audit events ...", flush=True)
    last = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    next_id, prev = (last[0] + 1, last[1]) if last else (1, GENESIS_HASH)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    raw = connection.connection  # psycopg 3 connection under Django's
    with connection.cursor():
        pass
    batch = io.StringIO()
    for i in range(n - have):
        created = start + timedelta(seconds=next_id + i)
        row = {
            "created_at": created.isoformat(),
            "actor_id": None,
            "actor_label": "bench",
            "action": "request.created",
            "object_type": "access_request",
            "object_id": str(next_id + i),
            "request_id": next_id + i,
            "principal_id": 1,
            "account_id": "123456789012",
            "before": None,
            "after": {"status": "pending", "level": "viewer"},
            "aws_request_ids": [],
            "ip": "127.0.0.1",
            "user_agent": "bench",
            "prev_hash": prev,
        }
        prev = compute_hash(row)
        batch.write(
            f"{next_id + i}\t{next_id + i}\t{row['created_at']}\tbench\trequest.created\taccess_request\t{next_id + i}\t{next_id + i}\t1\t"
            f'123456789012\tnull\t{{"level": "viewer", "status": "pending"}}\t[]\t127.0.0.1\tbench\t{row["prev_hash"]}\t{prev}\n'
        )
        if (i + 1) % 100_000 == 0 or i == n - have - 1:
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY accessrequests_auditevent ({COLUMNS}) FROM STDIN") as copy,
            ):
                copy.write(batch.getvalue())
            raw.commit()
            batch = io.StringIO()
            print(f"  {i + 1:,}", flush=True)
    with connection.cursor() as cur:
        cur.execute(
            "SELECT setval(pg_get_serial_sequence('accessrequests_auditevent', 'id'), (SELECT max(id) FROM accessrequests_auditevent))"
        )
        cur.execute("ANALYZE accessrequests_auditevent")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def worker_pid(master: int) -> int:
    for _ in range(100):
        children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.1)
    raise RuntimeError("gunicorn worker did not start")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument(
        "--rounds", type=int, default=3, help="web and COPY alternately; the best of each counts"
    )
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    seed(args.events)
    total = AuditEvent.objects.count()

    auditor, _ = User.objects.get_or_create(username="bench-auditor")
    auditor.groups.add(Group.objects.get_or_create(name="auditors")[0])
    session = SessionStore()
    session["_auth_user_id"] = str(auditor.pk)
    session["_auth_user_backend"] = "django.contrib.auth.backends.ModelBackend"
    session["_auth_user_hash"] = auditor.get_session_auth_hash()
    session.create()

    port = free_port()
    env = {**os.environ, "DEBUG": "1", "LOG_LEVEL": "WARNING"}
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "portal.wsgi", "--bind", f"127.0.0.1:{port}", "--workers", "1", "--timeout", "600"],
        cwd=ROOT, env=env, start_new_session=True,
    )  # fmt: skip
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            except urllib.error.HTTPError:
                break
            except OSError:
                time.sleep(0.1)
            else:
                break
        pid = worker_pid(server.pid)
        idle = rss_kib(pid, "VmRSS")
        peak = [idle]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], rss_kib(pid, "VmRSS"))
                time.sleep(0.05)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cookie = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session.session_key}"}
        through = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
        url = f"http://127.0.0.1:{port}/audit/export.csv?through_seq={through}"
        raw = connection.connection
        web_runs: list[float] = []
        copy_runs: list[float] = []
        worker_cpu: list[float] = []
        # PostgreSQL's side: the backend serving gunicorn's connection (every other backend of this database; the
        # worker keeps its connection between requests) and this process's own for COPY.
        web_db_cpu: list[float] = []
        copy_db_cpu: list[float] = []
        own_backend = raw.info.backend_pid

        def web_backends_cpu() -> dict[int, float]:
            with raw.cursor() as cur:
                cur.execute(
                    "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s",
                    [own_backend],
                )
                found = {}
                for (backend,) in cur.fetchall():
                    with contextlib.suppress(FileNotFoundError):  # ended since
                        found[backend] = cpu_seconds(backend)
                return found

        def used_since(before: dict[int, float]) -> float:  # a backend that started since counts in full
            return sum(cpu - before.get(backend, 0.0) for backend, cpu in web_backends_cpu().items())

        # Rounds alternate the two, and the best of each is compared: on a shared machine a neighbour's burst
        # slows one run, never speeds one up, so the minimum is the figure that belongs to the code.
        for _ in range(args.rounds):
            started, worker_started, db_started = time.perf_counter(), cpu_seconds(pid), web_backends_cpu()
            first_byte = None
            size = lines = 0
            with urllib.request.urlopen(urllib.request.Request(url, headers=cookie), timeout=600) as response:
                while chunk := response.read(1 << 16):
                    first_byte = first_byte or time.perf_counter() - started
                    size += len(chunk)
                    lines += chunk.count(b"\n")
            # The manifest is part of the export: the same events, counted and hashed at both ends.
            with urllib.request.urlopen(
                urllib.request.Request(url + "&manifest=1", headers=cookie), timeout=600
            ) as m:
                manifest = json.loads(m.read())
            web_runs.append(time.perf_counter() - started)
            worker_cpu.append(cpu_seconds(pid) - worker_started)
            web_db_cpu.append(used_since(db_started))
            assert manifest["count"] == lines - 1 and manifest["complete"], manifest

            own_started = cpu_seconds(own_backend)
            started = time.perf_counter()
            copied = 0
            with (
                raw.cursor() as cur,
                cur.copy(
                    f"COPY (SELECT {COLUMNS} FROM accessrequests_auditevent WHERE seq <= {through} ORDER BY seq) TO STDOUT WITH CSV"
                ) as copy,
            ):
                for block in copy:
                    copied += bytes(block).count(b"\n")
            copy_runs.append(time.perf_counter() - started)
            copy_db_cpu.append(cpu_seconds(own_backend) - own_started)
        done.set()
        sampler.join()
        hwm = rss_kib(pid, "VmHWM")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(30)

    rows = lines - 1
    web_seconds, copy_seconds = min(web_runs), min(copy_runs)
    print(
        f"events in table: {total:,}; exported rows: {rows:,} ({size / 1e6:,.0f} MB CSV); {args.rounds} rounds"
    )
    print(f"web export + manifest, each round: {', '.join(f'{s:.1f}' for s in web_runs)} s")
    print(f"COPY TO STDOUT, each round:        {', '.join(f'{s:.1f}' for s in copy_runs)} s")
    print(f"web worker CPU, each round:        {', '.join(f'{s:.1f}' for s in worker_cpu)} s")
    print(f"PostgreSQL CPU for the web export: {', '.join(f'{s:.1f}' for s in web_db_cpu)} s")
    print(f"PostgreSQL CPU for the COPY:       {', '.join(f'{s:.1f}' for s in copy_db_cpu)} s")
    ratios = sorted(c / w for w, c in zip(web_runs, copy_runs, strict=True))
    print(
        f"ratio web/COPY of each round (same round): {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"median {ratios[len(ratios) // 2]:.2f}"
    )
    print(
        f"web export + manifest (best): {rows / web_seconds:>10,.0f} rows/s  ({web_seconds:.1f} s, first byte after {first_byte * 1000:.0f} ms)"
    )
    print(f"COPY TO STDOUT (best):        {copied / copy_seconds:>10,.0f} rows/s  ({copy_seconds:.1f} s)")
    print(
        f"ratio web/COPY (best of each): {(rows / web_seconds) / (copied / copy_seconds):.2f}  (goal: >= 0.8)"
    )
    print(
        f"web worker memory: idle {idle / 1024:.0f} MB, peak RSS sampled {peak[0] / 1024:.0f} MB, VmHWM {hwm / 1024:.0f} MB (limit 150 MB)"
    )


if __name__ == "__main__":
    main()
