"""Checks of the processes around the web: the broker, a live worker on every queue, beat's scheduled work."""

from __future__ import annotations

from datetime import datetime, timedelta

from celery import Celery
from django.conf import settings
from django.utils import timezone

from accessrequests.core.wording import counted
from accessrequests.models import AuditIntegrity, CatalogSyncRun, DriftCheck, WorkerHeartbeat

from .registry import Context, Result, check, fail, ok, since, warn

# Beat runs the catalog sync, the drift check and the audit verification every 15 minutes; three periods without
# any of them means beat is not running (one late run is not news).
SCHEDULED_MINUTES = 15
BEAT_LATE_AFTER = timedelta(minutes=3 * SCHEDULED_MINUTES)
QUEUE_WORK = {
    "provisioning": "applying and revoking access",
    "notifications": "mail and Slack messages",
    "gatehouse": "scheduled work: catalog sync, expiry, audit checkpoints",
}


def _app() -> Celery:
    from portal.celery import app

    return app


@check("broker", "the Celery broker (Redis, or the embedded folder) answers")
def broker(ctx: Context) -> Result:
    conn = _app().connection_for_read(settings.CELERY_BROKER_URL)
    where = conn.as_uri()  # type: ignore[attr-defined]  # kombu's stubs miss it; it masks the password
    try:
        conn.ensure_connection(max_retries=1, timeout=ctx.timeout)  # type: ignore[arg-type]  # seconds, any number
    except Exception as exc:
        return fail(
            f"the Celery broker at {where} cannot be reached: {exc}",
            fix="check CELERY_BROKER_URL and that Redis is running and lets this machine in",
        )
    finally:
        conn.release()
    return ok(where)


def _expected_queues() -> list[str]:
    """The queues this installation sends tasks to (prefixed when GATEHOUSE_QUEUE_PREFIX is set)."""
    conf = _app().conf
    names = [conf.task_default_queue, *(route["queue"] for route in dict(conf.task_routes).values())]
    return list(dict.fromkeys(str(n) for n in names))


def _heartbeat() -> str:
    try:
        age = WorkerHeartbeat.latest_age_seconds()
    except Exception:
        return "the newest heartbeat cannot be read"
    if age is None:
        return "no worker has ever written a heartbeat"
    return f"the newest heartbeat is {since(timezone.now() - timedelta(seconds=age))} old"


def _work_of(queue: str) -> str:
    return next((work for name, work in QUEUE_WORK.items() if queue.endswith(name)), "tasks")


@check("worker", "a worker answers a ping, and every queue has a worker", needs=("broker",))
def worker(ctx: Context) -> Result:
    replies = _app().control.inspect(timeout=ctx.timeout).active_queues() or {}
    if not replies:
        return fail(
            f"no worker answered within {ctx.timeout:g} s ({_heartbeat()})",
            fix="start a worker: celery -A portal worker (README, Deploy with compose); if one runs, give it "
            "the same CELERY_BROKER_URL as this process",
        )
    consumed = {str(queue["name"]) for queues in replies.values() for queue in queues or []}
    expected = _expected_queues()
    missing = [q for q in expected if q not in consumed]
    workers = sorted(replies)
    if missing:
        what = "; ".join(f"{q} ({_work_of(q)})" for q in missing)
        return fail(
            f"{counted(len(workers), 'worker')} answered ({', '.join(workers)}), but none consumes {what}: "
            "those tasks wait forever",
            fix=f"start a worker without -Q (it consumes every queue), or with -Q {','.join(expected)}",
            workers=workers,
            missing=missing,
        )
    return ok(
        f"{counted(len(workers), 'worker')} answered ({', '.join(workers)}), consuming {', '.join(expected)}"
    )


def _newest_scheduled() -> dict[str, datetime]:
    found: dict[str, datetime | None] = {
        "catalog sync": CatalogSyncRun.objects.values_list("started_at", flat=True).first(),
        "drift check": DriftCheck.objects.values_list("checked_at", flat=True).first(),
        "audit verification": AuditIntegrity.objects.values_list("checked_at", flat=True).first(),
    }
    return {what: when for what, when in found.items() if when is not None}


@check(
    "beat",
    "beat's scheduled work ran lately (the newest catalog sync, drift check or audit verification)",
    needs=("database.migrations",),
)
def beat(ctx: Context) -> Result:
    ran = _newest_scheduled()
    fix = (
        "start celery beat, exactly one instance: celery -A portal beat (README, Deploy with compose), with a "
        "worker consuming the gatehouse queue"
    )
    if not ran:
        return warn(
            "no scheduled work has run yet: beat runs the catalog sync, the drift check and the audit "
            f"verification every {SCHEDULED_MINUTES} minutes",
            fix=fix,
        )
    what, when = max(ran.items(), key=lambda item: item[1])
    age = timezone.now() - when
    said = f"the newest scheduled work, a {what}, ran {since(when)} ago"
    if age > BEAT_LATE_AFTER:
        return fail(f"{said}; beat starts one every {SCHEDULED_MINUTES} minutes", fix=fix)
    return ok(said, newest=what, at=when.isoformat())
