"""Django's PostgreSQL backend, plus work queued to run inside a transaction just before it commits.

Some writes take a lock every writer shares: appending to the audit chain locks the chain's tail. Taken where the
service records its event, such a lock would be held until the transaction commits, however much work follows (more
queries, a call to AWS), and every other writer would wait behind it. Queued here instead, the write runs at the
last moment: after the transaction's own work, before COMMIT, inside the same transaction, so it commits or rolls
back with the rest and its lock is held for the append and the commit only.

The queue follows the transaction the way Django's ``on_commit`` callbacks do: an entry remembers the savepoints
open when it was queued; rolling back to one of them drops it, a rollback or a lost connection drops them all. If
the queued work raises, the transaction is rolled back and nothing is committed.

"The transaction" is the outermost atomic block the application opened. A test case's own atomic blocks (Django's
``TestCase``, pytest-django's ``django_db``) wrap each test in a transaction that never commits; inside them the
queue runs when the application's outermost block ends, which is where it would have committed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import Error
from django.db.backends.postgresql import base

Flush = Callable[[list[Any]], None]


class DatabaseWrapper(base.DatabaseWrapper):
    """Django's PostgreSQL connection with a queue of writes run just before its transaction commits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # (savepoint ids open when queued, the function that writes the item, the item), oldest first.
        self.run_before_commit: list[tuple[set[str], Flush, Any]] = []

    def in_application_transaction(self) -> bool:
        """Inside an atomic block the application opened (a test case's own blocks do not count)."""
        return any(not getattr(block, "_from_testcase", False) for block in self.atomic_blocks)

    def before_commit(self, flush: Flush, items: Iterable[Any]) -> bool:
        """Queue ``items`` for ``flush`` (called once with every item queued for it, in order) just before the
        transaction commits. Returns False, queueing nothing, outside a transaction: write them now."""
        if not self.in_application_transaction():
            return False
        open_savepoints = set(self.savepoint_ids)
        self.run_before_commit.extend((open_savepoints, flush, item) for item in items)
        return True

    def take_before_commit(self, flush: Flush) -> list[Any]:
        """The items queued for ``flush`` so far, taken off the queue (the caller writes them now)."""
        taken = [item for _, f, item in self.run_before_commit if f is flush]
        self.run_before_commit = [entry for entry in self.run_before_commit if entry[1] is not flush]
        return taken

    def _flush_queue(self) -> None:
        while self.run_before_commit:
            flush = self.run_before_commit[0][1]
            flush(self.take_before_commit(flush))

    def commit(self) -> None:
        if self.run_before_commit:
            self.validate_thread_sharing()
            self.validate_no_atomic_block()
            try:
                self._flush_queue()
            except BaseException:
                # Atomic rolls back after a failed commit only for a DatabaseError; whatever failed here, the
                # transaction's work must not be committed without what it queued.
                try:
                    self.rollback()
                except Error:
                    self.close()
                raise
        super().commit()

    def savepoint_commit(self, sid: str) -> None:
        # Releasing the savepoint of the application's outermost block inside a test case's transaction: where
        # the application's transaction would have committed.
        if self.run_before_commit and not self.in_application_transaction():
            try:
                self._flush_queue()
            except BaseException:
                self.savepoint_rollback(sid)
                raise
        super().savepoint_commit(sid)

    def savepoint_rollback(self, sid: str) -> None:
        super().savepoint_rollback(sid)
        self.run_before_commit = [entry for entry in self.run_before_commit if sid not in entry[0]]

    def rollback(self) -> None:
        super().rollback()
        self.run_before_commit = []

    def close(self) -> None:
        self.run_before_commit = []
        super().close()
