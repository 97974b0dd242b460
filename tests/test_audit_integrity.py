"""Watching the audit trail: the periodic verification records a break once, tells admins and auditors, and turns
the audit pages, the API and /healthz red until the trail verifies again; the evidence pack hands a period over."""

from __future__ import annotations

import json
import zipfile
from datetime import timedelta

import pytest
from django.core import mail
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accessrequests import tasks
from accessrequests.audit import checkpoints
from accessrequests.audit import trail as audit
from accessrequests.models import AuditEvent, AuditIntegrity, Grant, GrantStatus, WorkerHeartbeat
from accessrequests.workflow.requests import request_approve, request_deny
from portal.celery import app
from tests.conftest import enable_totp, make_user, totp_code, verify_export
from tests.factories import World, force_update, fresh_factor
from tests.test_audit import tampering

pytestmark = pytest.mark.django_db


@pytest.fixture
def people():
    return {
        "admin": make_user("boss", "admins"),
        "auditor": make_user("auditor", "auditors"),
        "requester": make_user("someone", "requesters"),
    }


@pytest.fixture
def eager_tasks(settings) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = True


def _break_the_tail() -> None:
    for n in range(6):
        audit.record(action="test.event", object_type="thing", object_id=n)
    checkpoints.write()
    with tampering() as cursor:
        cursor.execute("DELETE FROM accessrequests_auditevent WHERE seq > 4")


def test_the_periodic_check_records_a_break_once_and_tells_admins_and_auditors(
    people, eager_tasks, django_capture_on_commit_callbacks
):
    _break_the_tail()
    with django_capture_on_commit_callbacks(execute=True):
        result = tasks.verify_audit_trail()
    assert result["ok"] is False and result["first_broken_seq"] == 5
    failed = AuditEvent.objects.get(action="audit.integrity_failed")
    assert failed.after["seq"] == 5 and "the database ends at seq 4" in failed.after["reason"]
    assert sorted(m.to[0] for m in mail.outbox) == ["auditor@example.com", "boss@example.com"]
    assert mail.outbox[0].subject == "[Gatehouse] Audit trail integrity check failed at seq 5"
    state = AuditIntegrity.current()
    assert state is not None and not state.ok and state.broken_seq == 5
    # The next run finds the same break: nothing new is recorded or sent.
    with django_capture_on_commit_callbacks(execute=True):
        tasks.verify_audit_trail()
    assert AuditEvent.objects.filter(action="audit.integrity_failed").count() == 1
    assert len(mail.outbox) == 2


def test_a_break_shows_on_the_audit_pages_the_api_and_healthz(client, people):
    WorkerHeartbeat.touch("w1@test")
    healthy = client.get("/healthz").json()
    assert healthy["audit"]["ok"] is None  # not verified yet
    tasks.verify_audit_trail()
    assert client.get("/healthz").json()["audit"]["ok"] is True
    assert client.get("/healthz").json()["audit"]["newest_checkpoint_at"] is None  # none written yet

    _break_the_tail()
    tasks.verify_audit_trail()
    client.force_login(people["auditor"])
    for name in ("audit_log", "access_report", "dashboard"):
        page = client.get(reverse(name))
        assert page.status_code == 200, name
        assert b'data-testid="integrity-banner"' in page.content, name
        assert b"seq <strong>5</strong>" in page.content, name
    api = client.get(reverse("api_audit_events"))
    assert api["X-Gatehouse-Audit-Integrity"] == "broken at seq 5"
    client.logout()
    health = client.get("/healthz")
    body = health.json()
    assert body["audit"]["ok"] is False and body["audit"]["broken_seq"] == 5
    assert body["audit"]["newest_checkpoint_at"] is not None
    # A broken trail is an incident for people, not an outage for the load balancer (see portal/health.py).
    assert health.status_code == (200 if body["status"] == "healthy" else 503)


def test_the_trail_verifying_again_clears_the_alarm(client, people):
    for n in range(3):
        audit.record(action="test.event", object_type="thing", object_id=n)
    with tampering() as cursor:
        cursor.execute("UPDATE accessrequests_auditevent SET actor_label = 'mallory' WHERE seq = 2")
    tasks.verify_audit_trail()
    assert AuditIntegrity.current().broken_seq == 2
    with tampering() as cursor:  # restored from a backup
        cursor.execute("UPDATE accessrequests_auditevent SET actor_label = 'system' WHERE seq = 2")
    tasks.verify_audit_trail()
    assert AuditIntegrity.current().ok
    assert AuditEvent.objects.filter(action="audit.integrity_restored").count() == 1
    client.force_login(people["auditor"])
    assert b"integrity-banner" not in client.get(reverse("audit_log")).content


def test_beat_writes_checkpoints_every_five_minutes_at_day_end_and_verifies_every_fifteen():
    schedule = app.conf.beat_schedule
    assert schedule["audit-checkpoint"]["schedule"] == timedelta(minutes=5)
    assert schedule["audit-checkpoint-day-end"]["kwargs"] == {"day_end": True}
    assert schedule["verify-audit-trail"]["schedule"] == timedelta(minutes=15)
    audit.record(action="test.event", object_type="thing")
    assert tasks.write_audit_checkpoint()["seq"] == 1
    assert tasks.write_audit_checkpoint() is None  # nothing new
    assert tasks.write_audit_checkpoint(day_end=True)["seq"] == 1  # the day's end is written anyway
    assert len(checkpoints.list_local()) == 2


def test_the_checkpoint_goes_to_the_log_with_its_signature(caplog):
    audit.record(action="test.event", object_type="thing")
    with caplog.at_level("INFO", logger="accessrequests.audit.checkpoints"):
        written = checkpoints.write()
    assert written is not None
    [line] = [r for r in caplog.records if r.name == "accessrequests.audit.checkpoints"]
    assert written["signature"] in line.getMessage()
    assert line.audit_checkpoint["hash"] == written["hash"] and "hashes" not in line.audit_checkpoint


def test_without_a_key_no_checkpoint_is_signed(settings):
    settings.GATEHOUSE_AUDIT_CHECKPOINT_KEY = ""
    audit.record(action="test.event", object_type="thing")
    with pytest.raises(checkpoints.CheckpointError, match="GATEHOUSE_AUDIT_CHECKPOINT_KEY"):
        checkpoints.write()


# --- the evidence pack ---------------------------------------------------------------------------------------


def _demo_day(client) -> World:
    """A day of the demo's work: requests, a two-factor approval in the web, a denial, access applied and ended."""
    world = World()
    secret = enable_totp(world.approver)
    client.post("/accounts/login/", {"login": "approver", "password": "correct-horse-battery"})
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    approved = world.submit(justification="Release 4.2 is stuck", ticket="OPS-7")
    client.post(
        reverse("review", args=[approved.pk]), {"decision": "approve", "comment": "ok for the release"}
    )
    denied = world.submit(level="editor", justification="Want to edit")
    request_deny(
        request_id=denied.pk,
        reviewer=world.approver2,
        second_factor=fresh_factor(world.approver2),
        comment="viewer is enough",
    )
    ended = world.submit(justification="One look")
    request_approve(
        request_id=ended.pk, reviewer=world.approver2, second_factor=fresh_factor(world.approver2)
    )
    now = timezone.now()
    force_update(Grant.objects.all(), status=GrantStatus.ACTIVE, applied_at=now)
    force_update(
        Grant.objects.filter(request=ended), status=GrantStatus.EXPIRED, ending="expired", revoked_at=now
    )
    return world


def test_an_evidence_pack_holds_every_part_and_each_checks_out(client, tmp_path, settings):
    world = _demo_day(client)
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%d")
    until = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%d")
    target = tmp_path / "evidence.zip"
    call_command("evidence_pack", "--since", since, "--until", until, "--output", str(target))
    folder = tmp_path / "opened"
    with zipfile.ZipFile(target) as pack:
        pack.extractall(folder)
    names = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert {
        "README.txt", "pack.json", "access-report.csv", "access-report.jsonl", "decisions.csv",
        "decisions.jsonl", "audit-export.csv", "audit-export.csv.manifest.json", "verification.json",
    } <= set(names)  # fmt: skip
    assert any(n.startswith("checkpoints/") for n in names)

    # pack.json: every other file with its SHA-256
    import hashlib

    listed = json.loads((folder / "pack.json").read_text())["files"]
    assert set(listed) == set(names) - {"pack.json"}
    assert all(hashlib.sha256((folder / n).read_bytes()).hexdigest() == h for n, h in listed.items())

    # the access report: the two grants, the ended one with its end, who approved
    report = [json.loads(line) for line in (folder / "access-report.jsonl").read_text().splitlines()]
    assert len(report) == 2
    by_request = {r["request"]: r for r in report}
    assert all(r["recipient"] == world.principal.name for r in report)
    assert any(r["ended_at"] for r in report) and any(r["ended_at"] is None for r in report)
    assert {r["approved_by"] for r in by_request.values()} == {"approver", "approver2"}

    # decisions: approver, comment, second factor
    decisions = [json.loads(line) for line in (folder / "decisions.jsonl").read_text().splitlines()]
    web_approval = next(d for d in decisions if d["comment"] == "ok for the release")
    assert (web_approval["reviewer"], web_approval["outcome"], web_approval["second_factor"]) == (
        "approver",
        "Approved",
        "totp",
    )
    assert web_approval["justification"] == "Release 4.2 is stuck" and web_approval["ticket"] == "OPS-7"
    denial = next(d for d in decisions if d["outcome"] == "Denied")
    assert denial["comment"] == "viewer is enough"

    # the export and its manifest, checked offline against the pack's checkpoints and the key
    manifest = json.loads((folder / "audit-export.csv.manifest.json").read_text())
    assert manifest["complete"] is True and manifest["checkpoint"] is not None
    key = tmp_path / "key"
    key.write_text(settings.GATEHOUSE_AUDIT_CHECKPOINT_KEY)
    checked = verify_export(
        folder / "audit-export.csv", "--checkpoints", str(folder / "checkpoints"), "--key-file", str(key)
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"{manifest['count']} of {manifest['count']} events compared" in checked.stdout

    # the verification result
    verification = json.loads((folder / "verification.json").read_text())
    assert verification["trail"]["ok"] is True and verification["export"]["ok"] is True
    assert verification["trail"]["last_seq"] >= manifest["last_seq"]
    assert "Period:" in (folder / "README.txt").read_text()
    assert AuditEvent.objects.filter(action="audit.evidence_pack").exists()


def test_the_evidence_pack_refuses_a_backwards_period_and_an_existing_target(tmp_path):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="--since must be before --until"):
        call_command("evidence_pack", "--since", "2026-02-01", "--until", "2026-01-01")
    with pytest.raises(CommandError, match="exists already"):
        call_command(
            "evidence_pack", "--since", "2026-01-01", "--until", "2026-02-01", "--output", str(tmp_path)
        )
    with pytest.raises(CommandError, match="is not a date"):
        call_command("evidence_pack", "--since", "last week", "--until", "2026-02-01")
