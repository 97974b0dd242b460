"""The audit trail is append-only and tamper-evident."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import close_old_connections, connection

from accessrequests import audit
from accessrequests.models import AppendOnlyError, AuditEvent
from tests.conftest import ROOT, service_missing


def _events(n: int) -> list[AuditEvent]:
    return [
        audit.record(action="test.event", object_type="thing", object_id=i, after={"i": i}) for i in range(n)
    ]


@pytest.mark.django_db
def test_verify_audit_passes_on_an_untouched_chain(capsys):
    _events(5)
    call_command("verify_audit")
    assert "5 events verified" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_orm_refuses_to_update_or_delete_events():
    [event] = _events(1)
    event.action = "forged"
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(action="forged")
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.all().delete()


@pytest.mark.django_db
def test_verify_audit_names_exactly_the_row_edited_with_raw_sql():
    events = _events(6)
    target = events[3]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The tamperer is a superuser who switches triggers off for their session.
            cursor.execute("SET session_replication_role = replica")
        cursor.execute(
            "UPDATE accessrequests_auditevent SET actor_label = %s WHERE id = %s", ["mallory", target.pk]
        )
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = DEFAULT")
    with pytest.raises(CommandError, match=rf"broken at event #{target.pk}: its content"):
        call_command("verify_audit")


@pytest.mark.django_db(transaction=True)
def test_eight_concurrent_writers_leave_a_valid_chain():
    barrier = threading.Barrier(8)
    errors: list[Exception] = []

    def writer(n: int) -> None:
        try:
            barrier.wait()
            for i in range(10):
                audit.record(action="test.concurrent", object_type="thing", object_id=f"{n}-{i}")
        except Exception as exc:  # surfaced below
            errors.append(exc)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert AuditEvent.objects.count() == 80
    assert len(set(AuditEvent.objects.values_list("prev_hash", flat=True))) == 80  # no fork
    call_command("verify_audit")


def _postgres_admin_url() -> str:
    return os.environ.get("GATEHOUSE_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres")


def test_the_postgresql_trigger_refuses_update_and_delete():
    """Runs on PostgreSQL whatever the suite's own database is: a scratch database, migrated for real."""
    admin_url = _postgres_admin_url()
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing(f"PostgreSQL ({exc.__class__.__name__})")
    name = "gatehouse_trigger_test"
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        env = {**os.environ, "DATABASE_URL": url.replace("postgresql://", "postgres://"), "DEBUG": "1"}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=180
        )
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO accessrequests_auditevent (created_at, actor_label, action, object_type, object_id,"
                " account_id, aws_request_ids, user_agent, prev_hash, hash)"
                " VALUES (now(), 'x', 'a', 'o', '1', '', '[]', '', %s, %s)",
                ["0" * 64, "1" * 64],
            )
            for statement in (
                "UPDATE accessrequests_auditevent SET action = 'forged'",
                "DELETE FROM accessrequests_auditevent",
            ):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    conn.execute(statement)
            assert conn.execute("SELECT action FROM accessrequests_auditevent").fetchall() == [("a",)]
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


@pytest.mark.django_db
def test_sign_in_failed_sign_in_and_mfa_enrolment_are_audited(client, django_capture_on_commit_callbacks):
    from tests.conftest import make_user, totp_code

    make_user("mateojackson", "requesters")
    client.post("/accounts/login/", {"login": "mateojackson", "password": "wrong-password"})
    failed = AuditEvent.objects.get(action="auth.login_failed")
    assert failed.after == {"login": "mateojackson"}
    assert "wrong-password" not in str(failed.canonical())
    client.post("/accounts/login/", {"login": "mateojackson", "password": "correct-horse-battery"})
    assert AuditEvent.objects.filter(action="auth.login", actor_label="mateojackson").count() == 1
    # allauth asks for the password again before MFA changes
    client.post(
        "/accounts/reauthenticate/?next=/accounts/2fa/totp/activate/", {"password": "correct-horse-battery"}
    )
    page = client.get("/accounts/2fa/totp/activate/")
    secret = page.context["form"].secret
    with django_capture_on_commit_callbacks(execute=True):  # allauth signals enrolment after commit
        client.post("/accounts/2fa/totp/activate/", {"code": totp_code(secret)})
    assert AuditEvent.objects.filter(action="auth.mfa_enrolled", actor_label="mateojackson").exists()
