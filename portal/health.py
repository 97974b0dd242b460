"""/healthz: is this installation able to do its work right now?

JSON for load balancers and humans alike: database, broker and the age of the newest worker heartbeat, plus
versions. HTTP 503 when any of them is down, so an orchestrator can act on the status code alone.

The ``doctor`` field is the newest full run of ``manage.py doctor`` (or the admin's Doctor page), kept in the
cache with its time: /healthz does not run the checks, some of which ask AWS.

The ``audit`` field reports the newest periodic verification of the audit trail (``ok`` false when it found the
trail broken) for monitoring to alert on. It does not turn the answer into a 503: a broken trail is a security
incident for people to investigate, not an outage; a load balancer would take a working portal out of service
and an orchestrator restart it, which would fix nothing and take the audit pages away from the investigators.
"""

from __future__ import annotations

import platform
from importlib import metadata

import django
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def _database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return {"ok": True, "vendor": connection.vendor}
    except Exception as exc:
        return {"ok": False, "vendor": connection.vendor, "error": exc.__class__.__name__}


def _broker() -> dict:
    from portal.celery import app

    # Read the URL from settings on each call so the check follows the configuration it reports on.
    conn = app.connection_for_read(settings.CELERY_BROKER_URL)
    transport = str(getattr(conn, "transport_cls", "unknown"))
    try:
        conn.ensure_connection(max_retries=1, timeout=2)
        return {"ok": True, "transport": transport}
    except Exception as exc:
        return {"ok": False, "transport": transport, "error": exc.__class__.__name__}
    finally:
        conn.release()


def _worker(db_ok: bool) -> dict:
    if not db_ok:
        return {"ok": False, "last_heartbeat_age_seconds": None, "error": "database unavailable"}
    from accessrequests.models import WorkerHeartbeat

    age = WorkerHeartbeat.latest_age_seconds()
    ok = age is not None and age <= settings.GATEHOUSE_HEARTBEAT_MAX_AGE
    return {
        "ok": ok,
        "last_heartbeat_age_seconds": None if age is None else round(age, 1),
        "max_age_seconds": settings.GATEHOUSE_HEARTBEAT_MAX_AGE,
    }


def _audit(db_ok: bool) -> dict:
    if not db_ok:
        return {"ok": None, "error": "database unavailable"}
    from accessrequests.models import AuditIntegrity

    state = AuditIntegrity.current()
    if state is None or state.checked_at is None:
        return {"ok": None, "checked_at": None, "detail": "not verified yet (beat verifies every 15 minutes)"}
    newest = (state.report or {}).get("newest_checkpoint") or {}
    body: dict = {
        "ok": state.ok,
        "checked_at": state.checked_at.isoformat(),
        # None means no checkpoint was ever written: the worker lacks GATEHOUSE_AUDIT_CHECKPOINT_KEY, or beat is off.
        "newest_checkpoint_at": newest.get("created_at"),
    }
    if not state.ok:
        body.update(broken_seq=state.broken_seq, reason=state.reason, failing_since=state.failing_since)
    return body


def _break_glass(db_ok: bool) -> dict:
    """Break-glass post-reviews past their time: an alert for people (like a broken audit trail, never a 503)."""
    if not db_ok:
        return {"ok": None, "error": "database unavailable"}
    from django.utils import timezone

    from accessrequests.authz.selectors import overdue_post_reviews

    late = overdue_post_reviews(timezone.now())
    overdue = list(late.values_list("request_id", "due_at")[:20])
    body: dict = {"ok": not overdue, "overdue_post_reviews": late.count() if overdue else 0}
    if overdue:
        body["oldest_due_at"] = min(due for _, due in overdue).isoformat()
        body["requests"] = [f"GH-{pk:06d}" for pk, _ in overdue]
    return body


def _doctor() -> dict:
    """The newest full run of the doctor (``manage.py doctor`` or the admin's Doctor page), from the cache: its
    status and time, and what was not ok. Informational, like ``audit``: /healthz never runs the checks itself,
    which ask AWS and the workers and would make it slow."""
    from accessrequests.doctor.report import last_run

    found = last_run()
    if found is None:
        return {"status": None, "detail": "not run yet (python manage.py doctor, or Doctor in the admin)"}
    return found


def _catalog(db_ok: bool) -> dict:
    """The newest catalog sync and how far it got (a running one shows its progress); informational, like
    ``audit``: a sync behind is not an outage."""
    if not db_ok:
        return {"ok": None, "error": "database unavailable"}
    from accessrequests.models import CatalogSyncRun, CatalogSyncStatus

    run = CatalogSyncRun.objects.defer("pending", "result").first()
    if run is None:
        return {"ok": None, "status": None, "detail": "never synced"}
    body: dict = {
        "ok": run.status != CatalogSyncStatus.FAILED and not run.errors,
        "status": run.status,
        "mode": run.mode,
        "phase": run.phase,
        "accounts_done": run.accounts_done,
        "accounts_total": run.accounts_total,
        "started_at": run.started_at.isoformat(),
        "heartbeat_at": run.heartbeat_at.isoformat() if run.heartbeat_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "resumed": run.resumed,
        "errors": len(run.errors or []),
    }
    return body


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    database = _database()
    checks = {"database": database, "broker": _broker(), "worker": _worker(database["ok"])}
    healthy = all(check["ok"] for check in checks.values())
    body = {
        "status": "healthy" if healthy else "unhealthy",
        **checks,
        "audit": _audit(database["ok"]),
        "break_glass": _break_glass(database["ok"]),
        "catalog": _catalog(database["ok"]),
        "doctor": _doctor(),
        "versions": {
            "gatehouse": settings.GATEHOUSE_VERSION,
            "django": django.get_version(),
            "celery": metadata.version("celery"),
            "python": platform.python_version(),
        },
    }
    return JsonResponse(body, status=200 if healthy else 503)
