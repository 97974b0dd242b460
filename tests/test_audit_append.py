"""When the audit chain is appended to: a transaction's events join the chain just before it commits, so the
chain's lock is held for that moment only, never for the rest of a transaction that recorded early."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.management import call_command
from django.db import connection, transaction

from accessrequests.audit import trail as audit
from accessrequests.models import AuditEvent
from tests.conftest import passes_on_scratch_postgres

# A failure guard only: every wait below ends on the event it waits for long before this.
GUARD_SECONDS = 60


def _in_a_child_on_postgresql(test: str) -> None:
    """Run ``test`` of this file again in a child process against a scratch PostgreSQL database: what it checks
    is PostgreSQL's (SQLite admits one writer at a time), and nothing is skipped on the embedded profile."""
    passes_on_scratch_postgres(f"{__file__}::{test}", "gatehouse_append_test")


def _blocked_on_a_lock(pid: int) -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)", [pid])
        return bool(cursor.fetchone()[0])


@pytest.mark.django_db(transaction=True)
def test_a_transaction_that_recorded_early_does_not_hold_back_another_writer():
    if connection.vendor != "postgresql":
        _in_a_child_on_postgresql("test_a_transaction_that_recorded_early_does_not_hold_back_another_writer")
        return
    recorded, finish = threading.Event(), threading.Event()
    quick_pid: list[int] = []
    errors: list[BaseException] = []

    def slow() -> None:
        """Records its event first, then goes on with the rest of its work, its transaction open."""
        try:
            with transaction.atomic():
                audit.record(action="test.slow", object_type="thing", object_id="slow")
                recorded.set()
                assert finish.wait(GUARD_SECONDS)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    def quick() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                quick_pid.append(cursor.fetchone()[0])
            with transaction.atomic():
                audit.record(action="test.quick", object_type="thing", object_id="quick")
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    first = threading.Thread(target=slow)
    first.start()
    try:
        assert recorded.wait(GUARD_SECONDS)
        second = threading.Thread(target=quick)
        second.start()
        # Wait until the second writer has committed, or is seen waiting for a lock (the failure), whichever
        # comes first: never for a time.
        deadline = time.monotonic() + GUARD_SECONDS
        while second.is_alive() and time.monotonic() < deadline:
            if quick_pid and _blocked_on_a_lock(quick_pid[0]):
                break
            second.join(0.02)
        quick_done = not second.is_alive()
        committed_meanwhile = AuditEvent.objects.filter(action="test.quick").exists()
    finally:
        finish.set()
        first.join(GUARD_SECONDS)
    second.join(GUARD_SECONDS)
    assert errors == []
    assert quick_done, "the second writer waited for the first writer's transaction"
    assert committed_meanwhile
    # The chain takes events in the order their transactions committed.
    assert list(AuditEvent.objects.order_by("seq").values_list("seq", "action")) == [
        (1, "test.quick"),
        (2, "test.slow"),
    ]
    call_command("verify_audit")


class _Rollback(Exception):
    """Raised to roll a transaction or a savepoint back."""


@pytest.mark.django_db(transaction=True)
def test_many_concurrent_writers_with_rollbacks_leave_a_gap_free_chain_that_verifies():
    writers, transactions = 6, 15
    barrier = threading.Barrier(writers)
    errors: list[BaseException] = []
    kept: list[list[AuditEvent]] = []  # the events of each committed transaction, as ``record`` returned them
    dropped: list[str] = []  # object ids recorded in what was rolled back
    lock = threading.Lock()

    def event(n: int, i: int, label: str) -> AuditEvent:
        return audit.record(action="test.concurrent", object_type="thing", object_id=f"{n}-{i}-{label}")

    def writer(n: int) -> None:
        try:
            barrier.wait(GUARD_SECONDS)
            for i in range(transactions):
                shape = i % 5
                if shape == 0:  # the whole transaction rolls back
                    try:
                        with transaction.atomic():
                            event(n, i, "a")
                            event(n, i, "b")
                            raise _Rollback
                    except _Rollback:
                        with lock:
                            dropped.extend([f"{n}-{i}-a", f"{n}-{i}-b"])
                elif shape == 1:  # a savepoint with an event in it rolls back, the transaction commits
                    with transaction.atomic():
                        before = event(n, i, "a")
                        try:
                            with transaction.atomic():
                                event(n, i, "b")
                                raise _Rollback
                        except _Rollback:
                            pass
                        after = event(n, i, "c")
                    with lock:
                        kept.append([before, after])
                        dropped.append(f"{n}-{i}-b")
                elif shape == 2:  # several at once, and a savepoint that is released
                    with transaction.atomic():
                        batch = audit.record_many(
                            [{"action": "test.concurrent", "object_type": "thing", "object_id": f"{n}-{i}-{k}"}
                             for k in "abc"]
                        )  # fmt: skip
                        with transaction.atomic():
                            inner = event(n, i, "d")
                    with lock:
                        kept.append([*batch, inner])
                elif shape == 3:  # outside any transaction
                    alone = event(n, i, "a")
                    with lock:
                        kept.append([alone])
                else:
                    with transaction.atomic():
                        one = event(n, i, "a")
                        connection.cursor().execute("SELECT 1")  # more work after the event
                    with lock:
                        kept.append([one])
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(GUARD_SECONDS * 2)
    assert errors == []
    rows = {r["object_id"]: r for r in AuditEvent.objects.values("object_id", "seq", "pk", "hash")}
    expected = [e for events in kept for e in events]
    assert sorted(rows) == sorted(e.object_id for e in expected)
    assert not set(dropped) & set(rows)
    assert sorted(r["seq"] for r in rows.values()) == list(range(1, len(expected) + 1))  # no gap, no twin
    for events in kept:
        # What record returned is the row: its number, id and hash were set as the transaction committed ...
        assert [(e.seq, e.pk, e.hash) for e in events] == [
            (rows[e.object_id]["seq"], rows[e.object_id]["pk"], rows[e.object_id]["hash"]) for e in events
        ]
        # ... and a transaction's events are one run of the chain, in the order recorded.
        assert [e.seq for e in events] == list(range(events[0].seq, events[0].seq + len(events)))
    call_command("verify_audit")


def _a_transaction_whose_append_fails(poison: dict) -> None:
    from tests.factories import World

    world = World()
    with transaction.atomic():
        req = world.submit()  # a state change, with its own event
        audit.record(action="test.poisoned", object_type="thing", **poison)
        assert req.pk


@pytest.mark.django_db(transaction=True)
def test_an_append_that_fails_rolls_the_whole_transaction_back():
    from django.contrib.auth.models import User

    from accessrequests.models import AccessRequest

    # An actor that was never saved cannot be referenced: the append raises (ValueError), on PostgreSQL as the
    # transaction commits, on SQLite where it is recorded.
    with pytest.raises(ValueError, match="unsaved related object"):
        _a_transaction_whose_append_fails({"actor": User(username="ghost")})
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.exists()
    # The connection is fine afterwards, and the chain starts at 1.
    with transaction.atomic():
        audit.record(action="test.after", object_type="thing")
    assert list(AuditEvent.objects.values_list("seq", "action")) == [(1, "test.after")]


@pytest.mark.django_db(transaction=True)
def test_an_append_refused_by_the_database_at_commit_rolls_the_whole_transaction_back():
    from django.db import DataError

    from accessrequests.models import AccessRequest

    if connection.vendor != "postgresql":  # SQLite does not hold a text to its column's length
        _in_a_child_on_postgresql(
            "test_an_append_refused_by_the_database_at_commit_rolls_the_whole_transaction_back"
        )
        return
    with pytest.raises(DataError, match="too long"):
        _a_transaction_whose_append_fails({"account_id": "1234567890123"})
    assert not AccessRequest.objects.exists()
    assert not AuditEvent.objects.exists()
    with transaction.atomic():
        audit.record(action="test.after", object_type="thing")
    assert list(AuditEvent.objects.values_list("seq", "action")) == [(1, "test.after")]


@pytest.mark.django_db
def test_events_join_the_chain_when_the_outermost_block_ends_without_those_rolled_back():
    deferred = connection.vendor == "postgresql"
    with transaction.atomic():
        first = audit.record(action="test.first", object_type="thing")
        assert (first.seq is None) == deferred
        with pytest.raises(_Rollback), transaction.atomic():
            audit.record(action="test.dropped", object_type="thing")
            raise _Rollback
        with transaction.atomic():
            second = audit.record(action="test.second", object_type="thing")
        assert AuditEvent.objects.exists() != deferred
    assert list(AuditEvent.objects.values_list("seq", "action")) == [(1, "test.first"), (2, "test.second")]
    assert (first.seq, second.seq) == (1, 2) and second.prev_hash == first.hash
    call_command("verify_audit")


@pytest.mark.django_db
def test_flush_appends_what_the_transaction_recorded_so_far():
    with transaction.atomic():
        first = audit.record(action="test.first", object_type="thing")
        audit.flush()
        assert first.seq == 1 and AuditEvent.objects.filter(pk=first.pk).exists()
        second = audit.record(action="test.second", object_type="thing")
    assert second.seq == 2 and second.prev_hash == first.hash
    call_command("verify_audit")


@pytest.mark.django_db
def test_immediate_appends_where_the_event_is_recorded(settings):
    settings.GATEHOUSE_AUDIT_APPEND = "immediate"
    with transaction.atomic():
        event = audit.record(action="test.now", object_type="thing")
        assert event.seq == 1 and AuditEvent.objects.filter(pk=event.pk).exists()
