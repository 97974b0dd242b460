"""Writers of the audit trail at once: transactions that record an event and then go on working, on PostgreSQL.

``--threads`` threads (each its own connection) run ``--transactions`` transactions each: record one event
(``audit.record``), then the rest of the transaction's work (``--work-ms`` of ``pg_sleep``, standing for the
queries and calls a service makes after recording), then commit. Measured three ways in the same run, in turns
(``--rounds``):

- ``at_commit`` (the default): the event joins the chain just before the commit, the chain's lock held for the
  append and the commit only;
- ``immediate`` (``GATEHOUSE_AUDIT_APPEND=immediate``, the behaviour before): the event is appended where it is
  recorded, and the chain's lock is held through the work until the commit;
- unchained: the same transactions writing a row of the same size to a table of the bench's own instead of the
  chain (no lock, no tail to read), the ceiling: what the same writes cost when nothing serialises them.

Printed: transactions per second and the time of one transaction (p50, p95), each beside ``immediate`` as a
ratio, and the share of PostgreSQL's busy backends seen waiting on an advisory lock (sampled every 10 ms from
``pg_stat_activity``, as the load test measured it). Every round's chain is verified at the end.

    DATABASE_URL=postgres://root@127.0.0.1:5432/gatehouse .venv/bin/python bench/audit_append.py

It runs in a database of its own made the way the tests make theirs (``test_<name>_<pid>``), dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ["LOG_LEVEL"] = os.environ.get("LOG_LEVEL", "WARNING")

MODES = ("immediate", "at_commit", "unchained")


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


@dataclass
class Round:
    tps: float
    durations: list[float]
    lock_share: float  # of the busy backends' samples, those waiting on an advisory lock


class LockSampler(threading.Thread):
    """Counts, every 10 ms, the busy backends of the bench's database and those waiting on an advisory lock."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.busy = self.waiting = 0

    def run(self) -> None:
        from django.db import connection

        try:
            with connection.cursor() as cursor:
                while not self.stop.wait(0.01):
                    cursor.execute(
                        "SELECT count(*), count(*) FILTER (WHERE wait_event_type = 'Lock' AND wait_event = 'advisory')"
                        " FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
                        " AND pid <> pg_backend_pid()"
                    )
                    busy, waiting = cursor.fetchone()
                    self.busy += busy
                    self.waiting += waiting
        finally:
            connection.close()


def run_round(mode: str, threads: int, transactions: int, work_ms: float) -> Round:
    from django.conf import settings
    from django.db import connection, transaction

    from accessrequests.audit import trail as audit

    settings.GATEHOUSE_AUDIT_APPEND = "immediate" if mode == "immediate" else "at_commit"
    barrier = threading.Barrier(threads + 1)
    durations: list[list[float]] = [[] for _ in range(threads)]
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")  # connect before the clock starts
                barrier.wait()
                for i in range(transactions):
                    started = time.perf_counter()
                    with transaction.atomic():
                        if mode == "unchained":
                            cursor.execute(
                                "INSERT INTO bench_unchained (created_at, action, object_id, body)"
                                " VALUES (now(), 'bench.append', %s, %s)",
                                [f"{n}-{i}", "0" * 128],
                            )
                        else:
                            audit.record(action="bench.append", object_type="thing", object_id=f"{n}-{i}")
                        cursor.execute("SELECT pg_sleep(%s)", [work_ms / 1000])
                    durations[n].append(time.perf_counter() - started)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    sampler = LockSampler()
    sampler.start()
    barrier.wait()
    started = time.perf_counter()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    sampler.stop.set()
    sampler.join()
    if errors:
        raise errors[0]
    return Round(
        tps=threads * transactions / elapsed,
        durations=[d for per_thread in durations for d in per_thread],
        lock_share=sampler.waiting / sampler.busy if sampler.busy else 0.0,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--transactions", type=int, default=150, help="per thread and round")
    parser.add_argument(
        "--work-ms", type=float, default=5.0, help="work after the event, inside the transaction"
    )
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each mode, taken in turns")
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection

    from accessrequests.audit import trail as audit
    from accessrequests.ledger import chain
    from accessrequests.models import AuditEvent

    if connection.vendor != "postgresql":
        sys.exit("bench/audit_append.py measures PostgreSQL's lock: set DATABASE_URL=postgres://…")
    original_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE bench_unchained (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,"
            " action varchar(64) NOT NULL, object_id varchar(64) NOT NULL, body varchar(200) NOT NULL)"
        )
    results: dict[str, list[Round]] = {mode: [] for mode in MODES}
    try:
        run_round("at_commit", args.threads, 10, args.work_ms)  # warm: connections, imports, the first insert
        for _ in range(args.rounds):
            for mode in MODES:
                results[mode].append(run_round(mode, args.threads, args.transactions, args.work_ms))
        verdict = chain.verify_rows(audit.iter_chain(), start_seq=1, sorted_by_seq=True)
        events = AuditEvent.objects.count()
        expected = (args.rounds * 2 * args.transactions + 10) * args.threads
        if not verdict.ok or events != expected:
            sys.exit(f"the chain does not verify: {verdict.describe_break()}, {events} events of {expected}")
    finally:
        connection.close()
        connection.creation.destroy_test_db(original_name, verbosity=0)

    print(
        f"PostgreSQL, {args.threads} threads x {args.transactions} transactions, each: record one event, then "
        f"{args.work_ms:g} ms of pg_sleep, commit; {args.rounds} rounds of each mode in turns; "
        f"chain verified ({events} events)"
    )
    print(f"{'':30} {'tx/s':>8} {'x':>6} {'p50 ms':>8} {'x':>6} {'p95 ms':>8} {'x':>6} {'advisory':>9}")

    def figures(mode: str) -> tuple[float, float, float, float]:
        rounds = results[mode]
        durations = [d for r in rounds for d in r.durations]
        return (
            statistics.median(r.tps for r in rounds),
            1000 * statistics.median(durations),
            1000 * percentile(durations, 0.95),
            statistics.mean(r.lock_share for r in rounds),
        )

    base_tps, base_p50, base_p95, _ = figures("immediate")
    labels = {
        "immediate": "immediate (before)",
        "at_commit": "at_commit (now)",
        "unchained": "unchained row (ceiling)",
    }
    for mode in MODES:
        tps, p50, p95, share = figures(mode)
        print(
            f"{labels[mode]:30} {tps:8.1f} {tps / base_tps:6.2f} {p50:8.1f} {p50 / base_p50:6.2f} "
            f"{p95:8.1f} {p95 / base_p95:6.2f} {share:9.0%}"
        )


if __name__ == "__main__":
    main()
