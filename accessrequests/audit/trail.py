"""Writing to the audit trail, and proving it has not been edited.

``record`` is called inside the same transaction as the change it describes, so an event exists exactly when
the change does. Writers are serialised while they read the chain's tail and append to it, so concurrent
writers can never fork the chain nor take the same sequence number: PostgreSQL takes a transaction-scoped
advisory lock; SQLite's IMMEDIATE transactions (see settings) already admit one writer at a time. The unique
constraint on ``seq`` is the last line: a writer that somehow skipped the lock fails instead of forking.

On PostgreSQL that lock is held until the transaction commits, so an event is not appended where it is recorded
inside a transaction: it is queued on the connection and appended just before the transaction commits (see
``portal/db/postgresql``), so the lock is held for the append and the commit alone, not for the rest of the
transaction. The events a transaction recorded join the chain in the order recorded, after those of transactions
that committed before it; an event recorded in a savepoint rolled back never joins it. Until then ``record``'s
event has no number, hash or id: a caller that reads them, or the rows, before its commit calls ``flush`` first
(and holds the lock from there to its commit). Outside a transaction, on SQLite, or with
``GATEHOUSE_AUDIT_APPEND=immediate``, events are appended at once.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.utils import timezone

from accessrequests.ledger import chain
from accessrequests.models.audit import GENESIS_HASH, AuditEvent

# An arbitrary, fixed key for pg_advisory_xact_lock: "the audit chain's tail".
_AUDIT_LOCK_KEY = 0x6761746568  # "gateh"

SYSTEM = "system"


def _jsonable(value: Any) -> Any:
    """What the JSON column will give back when read, so the hash computed now matches the one verified later."""
    if value is None:
        return None
    return json.loads(json.dumps(value, cls=DjangoJSONEncoder))


def _client_ip(http_request) -> str | None:
    if http_request is None:
        return None
    return http_request.META.get("REMOTE_ADDR") or None


def record(
    *,
    action: str,
    object_type: str,
    object_id: Any = None,
    actor=None,
    actor_label: str | None = None,
    request_id: int | None = None,
    principal_id: int | None = None,
    account_id: str = "",
    before: Any = None,
    after: Any = None,
    aws_request_ids: Iterable[str] = (),
    http_request=None,
) -> AuditEvent:
    """Append one event to the chain (inside the caller's transaction, or its own)."""
    fields = {
        "action": action,
        "object_type": object_type,
        "object_id": object_id,
        "actor": actor,
        "actor_label": actor_label,
        "request_id": request_id,
        "principal_id": principal_id,
        "account_id": account_id,
        "before": before,
        "after": after,
        "aws_request_ids": aws_request_ids,
        "http_request": http_request,
    }
    return record_many([fields])[0]


def record_many(events: Sequence[dict[str, Any]]) -> list[AuditEvent]:
    """Append several events to the chain in the order given, in one append: the chain's tail is locked and
    read once and the rows are inserted together, each with its own number and hash linked to the one before.
    Each item takes the keyword arguments of ``record``. Inside the caller's transaction (just before it commits,
    on PostgreSQL), or in a transaction of its own."""
    if not events:
        return []
    rows = [_event(**fields) for fields in events]
    if not _append_at_commit(rows):
        with transaction.atomic():
            _append(rows)
    return rows


def flush() -> None:
    """Append now what this transaction recorded so far, for a caller that needs the events' numbers or rows
    before it commits. The chain's lock is then held from here to the commit."""
    take = getattr(connection, "take_before_commit", None)
    if take is not None:
        _append(take(_append))


def _append_at_commit(rows: list[AuditEvent]) -> bool:
    """Queue ``rows`` to be appended just before the caller's transaction commits; False when they must be
    appended now (no transaction, a backend without the queue, or appends configured immediate)."""
    if settings.GATEHOUSE_AUDIT_APPEND == "immediate":
        return False
    before_commit = getattr(connection, "before_commit", None)
    return before_commit is not None and before_commit(_append, rows)


def _append(rows: list[AuditEvent]) -> None:
    """Number, link and insert ``rows`` at the chain's tail, in the current transaction."""
    if not rows:
        return
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_AUDIT_LOCK_KEY])
    tail = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    seq, prev_hash = tail if tail else (0, GENESIS_HASH)
    for event in rows:
        seq += 1
        event.seq, event.prev_hash = seq, prev_hash
        event.hash = prev_hash = event.compute_hash()
    if len(rows) == 1:
        rows[0].save()
    else:
        AuditEvent.objects.bulk_create(rows)


def _event(
    *,
    action: str,
    object_type: str,
    object_id: Any = None,
    actor=None,
    actor_label: str | None = None,
    request_id: int | None = None,
    principal_id: int | None = None,
    account_id: str = "",
    before: Any = None,
    after: Any = None,
    aws_request_ids: Iterable[str] = (),
    http_request=None,
) -> AuditEvent:
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    label = actor_label or (actor.get_username() if actor is not None else SYSTEM)
    return AuditEvent(
        created_at=timezone.now(),
        actor=actor,
        actor_label=label[:200],
        action=action,
        object_type=object_type,
        object_id="" if object_id is None else str(object_id),
        request_id=request_id,
        principal_id=principal_id,
        account_id=account_id or "",
        before=_jsonable(before),
        after=_jsonable(after),
        aws_request_ids=sorted(set(aws_request_ids)),
        ip=_client_ip(http_request),
        user_agent=(http_request.META.get("HTTP_USER_AGENT", "") if http_request is not None else "")[:400],
    )


# The columns of a row as the chain hashes them (``seq`` and ``hash`` ride along), read without model instances.
CHAIN_FIELDS = tuple("actor" if c == "actor_id" else c for c in chain.COLUMNS)


def iter_chain(queryset=None, chunk_size: int = 5000) -> Iterator[dict[str, Any]]:
    """Rows in sequence order as plain dicts, the shape ``chain.verify_rows`` and the exports read."""
    queryset = queryset if queryset is not None else AuditEvent.objects.all()
    for values in queryset.order_by("seq").values_list(*CHAIN_FIELDS).iterator(chunk_size=chunk_size):
        row = dict(zip(chain.COLUMNS, values, strict=True))
        row["created_at"] = row["created_at"].isoformat()
        yield row
