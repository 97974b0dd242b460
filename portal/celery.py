"""The Celery app, configured so that work is never lost and never applied twice.

- ``acks_late`` + ``reject_on_worker_lost``: a task is acknowledged only when it finished, so a worker killed
  mid-task hands it back to the broker; every task is idempotent, so running it again is safe.
- prefetch 1: a worker never sits on messages another worker could run.
- JSON only: no pickle from the broker.
- Tasks are routed to queues by name.
"""

from __future__ import annotations

import os
import sys
from datetime import timedelta

from celery import Celery, bootsteps, signals
from celery.schedules import crontab
from kombu import Queue
from kombu.transport import TRANSPORT_ALIASES  # type: ignore[attr-defined]  # kombu's stubs miss it

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

# Several installations, or concurrent test runs, can share one broker when each names its queues apart;
# its workers must then consume the prefixed QUEUES below.
QUEUE_PREFIX = os.environ.get("GATEHOUSE_QUEUE_PREFIX", "")


QUEUE_NAMES = ("gatehouse", "provisioning", "notifications")

# ``filesystem://`` (the embedded profile's broker) is kombu's transport with a worker that acknowledges a finished
# task at once rather than at its loop's next 2-second turn (portal/broker.py). By the URL's scheme, so a broker
# URL set later (a test's, say) still picks its own transport.
TRANSPORT_ALIASES["filesystem"] = "portal.broker:FilesystemTransport"


def queue_name(name: str) -> str:
    return f"{QUEUE_PREFIX}{name}"


app = Celery("gatehouse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_accept_content=["json"],
    result_expires=timedelta(days=1),
    task_default_queue=queue_name("gatehouse"),
    # Declared, so a plain `celery -A portal worker` consumes all three; `-Q` still dedicates a worker to some.
    task_queues=tuple(Queue(queue_name(name)) for name in QUEUE_NAMES),
    task_routes={
        "accessrequests.tasks.provision_*": {"queue": queue_name("provisioning")},
        "accessrequests.tasks.reconcile_*": {"queue": queue_name("provisioning")},
        "accessrequests.tasks.notify_*": {"queue": queue_name("notifications")},
    },
    task_time_limit=600,
    task_soft_time_limit=540,
    # A task running when the broker connection drops finishes; its message, unacknowledged, comes back after the
    # visibility timeout and runs again as a no-op (every task is idempotent). Cancelling it instead made Celery
    # record the cancellation in the result backend, the same Redis that had just gone, and the worker exited.
    worker_cancel_long_running_tasks_on_connection_loss=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
    timezone="UTC",
    beat_schedule={
        # Pipelines, roles and people change in AWS without telling us; 15 minutes keeps the request form
        # current while staying far below the Organizations/IAM read quotas.
        "sync-catalog": {"task": "accessrequests.tasks.sync_catalog", "schedule": timedelta(minutes=15)},
        "expire-unreviewed-requests": {
            "task": "accessrequests.tasks.expire_unreviewed_requests",
            "schedule": timedelta(hours=1),
        },
        "archive-audit": {"task": "accessrequests.tasks.archive_audit", "schedule": timedelta(hours=1)},
        # Signed checkpoints of the audit chain outside the database: a rewrite of the database after this
        # cannot hide; 5 minutes bounds what an undetected deletion of the newest events could take away.
        "audit-checkpoint": {
            "task": "accessrequests.tasks.write_audit_checkpoint",
            "schedule": timedelta(minutes=5),
        },
        # One at each day's end even when nothing happened, so every day has its own signed closing state.
        "audit-checkpoint-day-end": {
            "task": "accessrequests.tasks.write_audit_checkpoint",
            "schedule": crontab(minute=59, hour=23),
            "kwargs": {"day_end": True},
        },
        # The whole chain against the checkpoints; a break reaches admins and auditors within 15 minutes.
        "verify-audit-trail": {
            "task": "accessrequests.tasks.verify_audit_trail",
            "schedule": timedelta(minutes=15),
        },
        # Expiry is a database query each minute, never a Celery countdown: access ends within a minute of
        # its time even if every worker was down then, and Redis cannot redeliver a long ETA task early.
        "expire-grants": {"task": "accessrequests.tasks.expire_grants", "schedule": timedelta(minutes=1)},
        # A lost message or a killed worker delays a grant by at most a minute plus the stuck threshold.
        "redrive-grants": {"task": "accessrequests.tasks.redrive_grants", "schedule": timedelta(minutes=1)},
        # Sessions issued before a grant ended: due end checks, denies whose sessions have all expired removed,
        # removed denies put back. Each minute, so a deny outlives its last session by at most a minute.
        "sweep-access-ends": {
            "task": "accessrequests.tasks.sweep_access_ends",
            "schedule": timedelta(minutes=1),
        },
        # Drift: someone edited or deleted a portal-owned policy or assignment by hand.
        "check-drift": {"task": "accessrequests.tasks.check_drift", "schedule": timedelta(minutes=15)},
        # Pending requests are announced again in their Slack thread, with backoff (a no-op without Slack).
        "slack-reminders": {
            "task": "accessrequests.tasks.notify_slack_reminders",
            "schedule": timedelta(minutes=5),
        },
        # Rules as code: the rules file (GATEHOUSE_RULES_FILE) is applied again, so a deploy that changed it takes
        # effect within minutes; a no-op without the setting or when the file matches the database.
        "apply-rules-file": {
            "task": "accessrequests.tasks.apply_rules_file",
            "schedule": timedelta(minutes=int(os.environ.get("GATEHOUSE_RULES_FILE_MINUTES") or 5)),
        },
        # Access reviews: a scheduled campaign starts when due (GATEHOUSE_REVIEW_EVERY_DAYS), reviewers are reminded
        # with backoff, and deadlines are applied; hourly is precise enough for days-long campaigns.
        "review-campaigns": {
            "task": "accessrequests.tasks.review_campaigns_tick",
            "schedule": timedelta(hours=1),
        },
        # A break-glass use not reviewed in time becomes an alert within 15 minutes of its due time.
        "break-glass-overdue": {
            "task": "accessrequests.tasks.break_glass_overdue",
            "schedule": timedelta(minutes=15),
        },
        # Used TOTP codes are remembered for their 90-second window; what is older is forgotten here.
        "prune-used-codes": {
            "task": "accessrequests.tasks.prune_used_codes",
            "schedule": timedelta(minutes=10),
        },
        # Announcements dropped while the broker was down are sent late rather than never.
        "redrive-announcements": {
            "task": "accessrequests.tasks.redrive_announcements",
            "schedule": timedelta(minutes=1),
        },
        # Requesters are warned a day before access ends; 15 minutes is precise enough for "a day before".
        "notify-expiring-grants": {
            "task": "accessrequests.tasks.notify_expiring_grants",
            "schedule": timedelta(minutes=15),
        },
    },
)
app.autodiscover_tasks()

QUEUES = ",".join(queue_name(name) for name in QUEUE_NAMES)


class HeartbeatStep(bootsteps.StartStopStep):
    """Writes this worker's heartbeat to the database so /healthz can tell a live worker from a dead one.

    The database, not the broker, holds it: the health check must work even when the broker is the thing
    that is down, and a row per worker hostname needs no extra service.
    """

    requires = ("celery.worker.components:Timer",)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        from django.conf import settings

        self.beat(worker)
        self.tref = worker.timer.call_repeatedly(settings.GATEHOUSE_HEARTBEAT_SECONDS, self.beat, (worker,))

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()

    def beat(self, worker):
        from django.db import close_old_connections

        from accessrequests.models import WorkerHeartbeat

        close_old_connections()
        try:
            WorkerHeartbeat.touch(worker.hostname)
        except Exception as exc:  # a heartbeat must never take the worker down
            worker.app.log.get_default_logger().warning("heartbeat not recorded: %s", exc)


app.steps["worker"].add(HeartbeatStep)


@signals.worker_init.connect
def refuse_unreachable_broker(sender=None, **kwargs):
    """Fail fast, with one clear line, when the broker cannot be reached at worker start."""
    conn = app.connection_for_write()
    uri = conn.as_uri()  # type: ignore[attr-defined]  # kombu's stubs miss it; it masks the password
    try:
        conn.ensure_connection(max_retries=1, timeout=5)
    except Exception as exc:
        print(
            f"gatehouse: the Celery broker at {uri} is not reachable ({exc}); check CELERY_BROKER_URL.",
            file=sys.stderr,
        )
        sys.stderr.flush()
        os._exit(2)
    finally:
        conn.release()


@signals.worker_ready.connect
def apply_rules_file_at_start(sender=None, **kwargs):
    """A worker that starts applies the rules file once, so a fresh deploy does not wait for beat."""
    from django.conf import settings

    if settings.GATEHOUSE_RULES_FILE:
        app.send_task("accessrequests.tasks.apply_rules_file")


@signals.worker_init.connect
def preload_policy_checks(sender=None, **kwargs):
    """A worker that provisions loads the policy linter (parliament) and the IAM action catalog (policy_sentry)
    once, before it forks its processes, which then share them: about 3 seconds per process otherwise, paid inside
    its first reconcile. Workers of other queues stay without them."""
    consumed = app.amqp.queues.consume_from  # type: ignore[attr-defined]  # kombu's stubs miss it
    if queue_name("provisioning") not in consumed:
        return
    import parliament  # noqa: F401

    from accessrequests.policy.actions import get_service_prefix_data

    get_service_prefix_data("codepipeline")
