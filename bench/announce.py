"""Announcing one new request to its approvers: the notify task's cost per email, beside plain `send_mail` calls.

Files one request whose rule has ``--approvers`` approvers (40 by default, as in the load test's world), then
alternates ``--rounds`` times between

- the announcement task, ``notify_request_created``, run in this process as a worker runs it: who may decide the
  request, its text, one Notification row per approver created, claimed, sent and marked (the rows of the round
  before are deleted first, so every round sends every message), and
- the baseline: a plain loop of Django's ``send_mail`` for the same messages to the same addresses (no rows, no
  checks),

and prints each one's wall time and CPU (this process's, and its PostgreSQL backend's read from /proc), the best
and the median of the rounds, the ratio task/baseline, and the task's query count. Mail goes to Django's file
backend in a temporary folder, as in bench/load.py (``--backend locmem``: kept in memory).

    psql -h 127.0.0.1 -U root -d postgres -c "CREATE DATABASE gh_bench_announce"
    DATABASE_URL=postgres://root@127.0.0.1:5432/gh_bench_announce .venv/bin/python bench/announce.py --rounds 20 \
        2>/dev/null     # the task's log lines are written, and not shown
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
# Nothing leaves this process: the request's own notification is published to an in-memory broker.
os.environ["CELERY_BROKER_URL"] = "memory://"
os.environ["CELERY_RESULT_BACKEND"] = "cache+memory://"
if not os.environ.get("DATABASE_URL", "").startswith("postgres"):
    sys.exit("bench/announce.py measures against PostgreSQL: set DATABASE_URL=postgres://…")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth.models import Group, User  # noqa: E402
from django.core.mail import send_mail  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test.utils import CaptureQueriesContext, override_settings  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User and system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def world(approvers: int):
    """The bench's rule with exactly ``approvers`` approvers (made once, reused by later runs), and one new
    pending request under it."""
    from accessrequests.models import AccessLevel, ApprovalRule, RequestKind
    from accessrequests.workflow.requests import RequestDraft, request_submit
    from tests.factories import make_account, make_pipeline, make_principal

    account = make_account("123456789012", "bench-announce")
    group = Group.objects.get_or_create(name="bench-announce-approvers")[0]
    rule = ApprovalRule.objects.filter(name="Announce bench").first()
    if rule is None:
        rule = ApprovalRule.objects.create(name="Announce bench", approvals_required=1, max_duration_hours=8)
        rule.accounts.set([account])
        rule.approver_groups.add(group)
    requester = User.objects.get_or_create(
        username="bench-requester", defaults={"email": "bench-requester@example.com"}
    )[0]
    requester.groups.add(Group.objects.get_or_create(name="requesters")[0])
    approver_group = Group.objects.get_or_create(name="approvers")[0]
    people = []
    for i in range(approvers):
        user = User.objects.get_or_create(
            username=f"bench-approver-{i:03d}", defaults={"email": f"bench-approver-{i:03d}@example.com"}
        )[0]
        user.groups.add(group, approver_group)
        people.append(user)
    group.user_set.set(people)  # exactly this many, whatever an earlier run used
    principal = make_principal(account, "bench-engineer", users=[requester])
    pipeline = make_pipeline(account, f"bench-{time.time_ns()}")  # a new pipeline: never a duplicate request
    draft = RequestDraft(
        principal=principal,
        kind=RequestKind.PIPELINE,
        account=account,
        pipelines=[pipeline],
        level=AccessLevel.VIEWER,
        justification="Measuring the announcement",
        duration_hours=4,
    )
    req = request_submit(requester=requester, draft=draft)
    assert req.rule_id == rule.pk, f"routed to rule {req.rule_id}, not the bench's ({rule.pk})"
    return req, [user.email for user in people]


def measure(run: Callable[[], int], backend_pid: int) -> tuple[float, float, float, int]:
    """Wall seconds, this process's CPU seconds, PostgreSQL's CPU seconds, and what ``run`` returned."""
    db_before, cpu_before, started = cpu_seconds(backend_pid), time.process_time(), time.perf_counter()
    result = run()
    wall = time.perf_counter() - started
    return wall, time.process_time() - cpu_before, cpu_seconds(backend_pid) - db_before, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--approvers", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--backend", choices=["file", "locmem"], default="file")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    from accessrequests.models import Notification
    from accessrequests.notify import text
    from accessrequests.notify.send import notify_request_created

    req, addresses = world(args.approvers)
    subject, body = text.new_request(req)
    key = f"request.created:{req.pk}"
    connection.ensure_connection()
    backend_pid = connection.connection.info.backend_pid

    def unsent() -> None:  # before each round, untimed: the round before's rows go, so every message is new
        Notification.objects.filter(event_key=key).delete()

    def task() -> int:
        return notify_request_created.apply(args=[req.pk]).get()

    def baseline() -> int:
        for to in addresses:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [to], fail_silently=False)
        return len(addresses)

    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="announce-mail-"))
        backend = {
            "file": "django.core.mail.backends.filebased.EmailBackend",
            "locmem": "django.core.mail.backends.locmem.EmailBackend",
        }[args.backend]
        stack.enter_context(override_settings(EMAIL_BACKEND=backend, EMAIL_FILE_PATH=folder))

        sent = task()  # warm: imports, templates, the connection
        assert sent == args.approvers, f"the task sent {sent} emails, not {args.approvers}"
        baseline()
        unsent()
        with CaptureQueriesContext(connection) as queries:
            task()

        figures: dict[str, list[tuple[float, float, float]]] = {"task": [], "baseline": []}
        for _ in range(args.rounds):
            for name, run in (("task", task), ("baseline", baseline)):
                unsent()
                wall, cpu, db, sent = measure(run, backend_pid)
                assert sent == args.approvers, (name, sent)
                figures[name].append((wall, cpu, db))
                if args.backend == "locmem":
                    from django.core import mail

                    mail.outbox.clear()

    n = args.approvers
    print(
        f"database: {connection.vendor}, {n} approvers, {args.rounds} rounds, mail backend: {args.backend}; "
        f"the task ran {len(queries)} queries"
    )
    print(f"{'':<34} {'best ms':>9} {'median ms':>10} {'ms/email':>9} {'CPU ms':>8} {'PG CPU ms':>10}")
    # CPU: this process's is the median; PostgreSQL's is the mean, /proc counting it in 10 ms ticks.
    medians = {}
    for name, label in (("task", "notify_request_created"), ("baseline", "baseline: send_mail x N")):
        walls = [w for w, _, _ in figures[name]]
        cpus = [c for _, c, _ in figures[name]]
        dbs = [d for _, _, d in figures[name]]
        medians[name] = (statistics.median(walls), statistics.median(cpus))
        print(
            f"{label:<34} {min(walls) * 1000:>9.1f} {statistics.median(walls) * 1000:>10.1f} "
            f"{statistics.median(walls) * 1000 / n:>9.2f} {statistics.median(cpus) * 1000:>8.1f} "
            f"{statistics.fmean(dbs) * 1000:>10.1f}"
        )
    (task_wall, task_cpu), (base_wall, base_cpu) = medians["task"], medians["baseline"]
    print(
        f"ratio task/baseline (medians): wall {task_wall / base_wall:.2f}, CPU {task_cpu / base_cpu:.2f}; "
        f"the task's CPU beyond the baseline: {(task_cpu - base_cpu) * 1000 / n:.2f} ms per email"
    )


if __name__ == "__main__":
    main()
