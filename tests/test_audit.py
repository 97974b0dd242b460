"""The audit trail is append-only and tamper-evident."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import pairwise

import psycopg
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, connection, transaction

from accessrequests.audit import checkpoints
from accessrequests.audit import trail as audit
from accessrequests.ledger import chain
from accessrequests.models import AppendOnlyError, AuditEvent
from tests.conftest import ROOT, scratch_postgres


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


@contextmanager
def tampering():
    """A cursor as someone who owns the database: on PostgreSQL they switch the append-only trigger off for their
    session first, as a superuser or the table's owner can."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET session_replication_role = replica")
        try:
            yield cursor
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("SET session_replication_role = DEFAULT")


def _recompute_from(cursor, seq: int) -> None:
    """Make the chain consistent again from ``seq`` on, as a careful tamperer would: every later hash and link."""
    rows = list(audit.iter_chain(AuditEvent.objects.filter(seq__gte=seq - 1)))
    previous = rows[0]["hash"] if rows[0]["seq"] == seq - 1 else chain.GENESIS_HASH
    for row in rows:
        if row["seq"] < seq:
            continue
        row["prev_hash"] = previous
        row["hash"] = chain.compute_hash(chain.canonical_of(row))
        cursor.execute(
            "UPDATE accessrequests_auditevent SET prev_hash = %s, hash = %s WHERE seq = %s",
            [row["prev_hash"], row["hash"], row["seq"]],
        )
        previous = row["hash"]


def _verify_fails_at(seq: int, reason: str) -> str:
    with pytest.raises(CommandError, match=rf"broken at seq {seq}: {reason}") as failure:
        call_command("verify_audit")
    return str(failure.value)


@pytest.mark.django_db
def test_every_event_gets_the_next_sequence_number():
    events = _events(4)
    assert [e.seq for e in events] == [1, 2, 3, 4]
    assert events[0].prev_hash == chain.GENESIS_HASH
    assert all(b.prev_hash == a.hash for a, b in pairwise(events))


@pytest.mark.django_db
def test_events_appended_together_take_the_next_numbers_in_order_and_verify(capsys):
    _events(2)
    batch = audit.record_many(
        [
            {"action": "test.batch", "object_type": "thing", "object_id": i, "after": {"i": i}}
            for i in range(3)
        ]
    )
    _events(1)
    events = list(AuditEvent.objects.order_by("seq"))
    assert [e.seq for e in events] == [1, 2, 3, 4, 5, 6]
    assert [(e.seq, e.object_id) for e in batch] == [(3, "0"), (4, "1"), (5, "2")]
    assert [e.pk for e in events[2:5]] == [e.pk for e in batch]
    assert all(b.prev_hash == a.hash for a, b in pairwise(events))
    call_command("verify_audit")
    assert "6 events verified" in capsys.readouterr().out


@pytest.mark.django_db
def test_the_database_refuses_a_second_event_with_the_same_number():
    [event] = _events(1)
    duplicate = AuditEvent(
        seq=event.seq,
        created_at=event.created_at,
        actor_label="x",
        action="x",
        object_type="x",
        prev_hash="0",
    )
    duplicate.hash = duplicate.compute_hash()
    with pytest.raises(IntegrityError), transaction.atomic():
        duplicate.save()


@pytest.mark.django_db
def test_verify_audit_names_exactly_the_row_edited_with_raw_sql():
    _events(6)
    with tampering() as cursor:
        cursor.execute("UPDATE accessrequests_auditevent SET actor_label = %s WHERE seq = %s", ["mallory", 4])
    _verify_fails_at(4, "its content does not match its stored hash")


@pytest.mark.django_db
def test_verify_audit_finds_an_event_deleted_from_the_middle():
    _events(6)
    checkpoints.write()
    with tampering() as cursor:
        cursor.execute("DELETE FROM accessrequests_auditevent WHERE seq = 3")
    _verify_fails_at(3, "missing: the sequence jumps from 2 to 4")


@pytest.mark.django_db
def test_verify_audit_finds_the_newest_events_deleted_against_the_checkpoint():
    _events(6)
    checkpoints.write()
    with tampering() as cursor:
        cursor.execute("DELETE FROM accessrequests_auditevent WHERE seq > 3")
    message = _verify_fails_at(
        4, "missing: the checkpoint recorded the chain up to seq 6; the database ends at seq 3"
    )
    assert "checkpoints/" in message  # which checkpoint says so


@pytest.mark.django_db
def test_verify_audit_finds_the_newest_events_replaced_by_new_ones():
    """Deleting the tail and writing on: the numbers are there again, with other hashes than the checkpoint's."""
    _events(6)
    checkpoints.write()
    with tampering() as cursor:
        cursor.execute("DELETE FROM accessrequests_auditevent WHERE seq > 4")
    _events(3)
    _verify_fails_at(5, "differs from the checkpoint")


@pytest.mark.django_db
def test_verify_audit_finds_an_edit_whose_later_hashes_were_all_recomputed():
    for _ in range(4):  # four checkpoints, so the search has to find the first one that no longer matches
        _events(3)
        checkpoints.write()
    _events(2)  # and two events that no checkpoint covers yet
    with tampering() as cursor:
        cursor.execute("UPDATE accessrequests_auditevent SET actor_label = 'mallory' WHERE seq = 8")
        _recompute_from(cursor, 8)
    # The chain in the database is consistent again: only the checkpoints can tell.
    assert chain.verify_rows(audit.iter_chain(), start_seq=1).ok
    _verify_fails_at(8, "differs from the checkpoint")


@pytest.mark.django_db
def test_verify_audit_finds_two_events_swapped():
    _events(6)
    checkpoints.write()
    with tampering() as cursor:
        cursor.execute("UPDATE accessrequests_auditevent SET seq = 1000 WHERE seq = 2")
        cursor.execute("UPDATE accessrequests_auditevent SET seq = 2 WHERE seq = 5")
        cursor.execute("UPDATE accessrequests_auditevent SET seq = 5 WHERE seq = 1000")
    _verify_fails_at(2, "its prev_hash does not match the hash of the event before it")


@pytest.mark.django_db
def test_verify_audit_finds_a_forged_checkpoint(settings):
    _events(3)
    written = checkpoints.write()
    assert written is not None
    path = checkpoints.local_dir() / checkpoints.name_for(written)
    forged = json.loads(path.read_text())
    forged["hash"] = "f" * 64
    path.write_text(json.dumps(forged))
    _verify_fails_at(3, "checkpoint .* has a bad signature")


@pytest.mark.django_db
def test_a_checkpoint_is_not_signed_over_a_broken_chain():
    _events(3)
    checkpoints.write()
    _events(2)
    with tampering() as cursor:
        cursor.execute("UPDATE accessrequests_auditevent SET actor_label = 'mallory' WHERE seq = 2")
        _recompute_from(cursor, 2)
    with pytest.raises(checkpoints.CheckpointError, match="seq 3 no longer has the hash"):
        checkpoints.write()


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
            connection.close()  # this thread's own connection; left open it would keep the test database busy

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    assert AuditEvent.objects.count() == 80
    assert len(set(AuditEvent.objects.values_list("prev_hash", flat=True))) == 80  # no fork
    assert sorted(AuditEvent.objects.values_list("seq", flat=True)) == list(range(1, 81))  # no gap, no twin
    call_command("verify_audit")


def test_the_postgresql_trigger_refuses_update_and_delete():
    """Runs on PostgreSQL whatever the suite's own database is: a scratch database, migrated for real."""
    with scratch_postgres("gatehouse_trigger_test") as url:
        env = {**os.environ, "DATABASE_URL": url, "DEBUG": "1"}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=180
        )
        with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            conn.execute(
                "INSERT INTO accessrequests_auditevent (seq, created_at, actor_label, action, object_type,"
                " object_id, account_id, aws_request_ids, user_agent, prev_hash, hash)"
                " VALUES (1, now(), 'x', 'a', 'o', '1', '', '[]', '', %s, %s)",
                ["0" * 64, "1" * 64],
            )
            for statement in (
                "UPDATE accessrequests_auditevent SET action = 'forged'",
                "DELETE FROM accessrequests_auditevent",
            ):
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    conn.execute(statement)
            assert conn.execute("SELECT action FROM accessrequests_auditevent").fetchall() == [("a",)]


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


@contextmanager
def _scratch_database(vendor: str, tmp_path) -> Iterator[str]:
    """A database of its own for a migration test: a SQLite file, or a PostgreSQL database dropped afterwards."""
    if vendor == "sqlite":
        yield f"sqlite:///{tmp_path / 'migrate.sqlite3'}"
        return
    with scratch_postgres(f"gatehouse_seq_migration_{os.getpid()}") as url:
        yield url


@pytest.mark.parametrize("vendor", ["sqlite", "postgresql"])
def test_the_sequence_migration_numbers_existing_events_in_chain_order(vendor, tmp_path):
    """Events written before the sequence existed get 1, 2, 3, … in id order and still verify, hashes unchanged."""
    with _scratch_database(vendor, tmp_path) as url:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "DEBUG": "1",
            "GATEHOUSE_AUDIT_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        }

        def manage(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [sys.executable, "manage.py", *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )

        assert manage("migrate", "accessrequests", "0006", "-v0").returncode == 0
        previous, rows = chain.GENESIS_HASH, []
        for i in range(3):
            row = {
                "created_at": f"2026-01-0{i + 1}T00:00:00+00:00", "actor_id": None, "actor_label": "system",
                "action": "test.old", "object_type": "thing", "object_id": str(i), "request_id": None,
                "principal_id": None, "account_id": "", "before": None, "after": {"i": i}, "aws_request_ids": [],
                "ip": None, "user_agent": "", "prev_hash": previous,
            }  # fmt: skip
            row["hash"] = previous = chain.compute_hash(row)
            rows.append(row)
        insert = (
            "INSERT INTO accessrequests_auditevent (created_at, actor_label, action, object_type, object_id,"
            " account_id, after, aws_request_ids, user_agent, prev_hash, hash)"
            " VALUES (%s, 'system', 'test.old', 'thing', %s, '', %s, '[]', '', %s, %s)"
        )
        values = [
            (r["created_at"], r["object_id"], json.dumps(r["after"]), r["prev_hash"], r["hash"]) for r in rows
        ]
        if vendor == "sqlite":
            import sqlite3

            with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
                db.executemany(insert.replace("%s", "?"), values)
        else:
            with psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True) as db:
                for value in values:
                    db.execute(insert, value)
        migrated = manage("migrate", "-v0")
        assert migrated.returncode == 0, migrated.stderr
        verified = manage("verify_audit")
        assert verified.returncode == 0, verified.stderr
        assert "3 events verified (seq 1-3)" in verified.stdout


@pytest.mark.django_db(transaction=True)
def test_verify_audit_exits_1_on_the_command_line(settings):
    """As an operator runs it: the process's exit status, not only the exception call_command raises."""
    from tests.conftest import database_url_for_subprocess

    _events(6)
    checkpoints.write()
    with tampering() as cursor:
        cursor.execute("DELETE FROM accessrequests_auditevent WHERE seq > 4")
    env = {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocess(),
        "DEBUG": "1",
        "GATEHOUSE_AUDIT_CHECKPOINT_DIR": str(settings.GATEHOUSE_AUDIT_CHECKPOINT_DIR),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "verify_audit"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert "audit trail broken at seq 5: missing" in result.stderr
