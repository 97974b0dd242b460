"""The audit chain's hashing and verification, free of Django so an export can be verified anywhere.

    python -m accessrequests.chain verify audit-export.csv      # the verifier's command (``accessrequests/chain.py``)

Each event's hash is the SHA-256 of its canonical JSON (sorted keys, no spaces) including the previous event's
hash, and each event carries a gap-free sequence number (``seq``, 1, 2, 3, … from the chain's genesis). The
sequence number is not part of the hash: the chain of hashes already fixes the order and the whole prefix, and
the numbers make any removal a visible gap. Verification walks rows in sequence order and checks each row's own
hash, that no number is missing, and that each row links to the one before it.

An export of a time range holds a contiguous run of the chain and is checked like the database. A filtered export
(by actor, action, …) holds some events: each row's hash and the links between consecutive numbers are checked,
but it cannot prove that no matching event was left out. See ``accessrequests/ledger/offline.py`` for files.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

GENESIS_HASH = "0" * 64

# Export column order; the canonical content is every column but id, seq and hash.
COLUMNS = (
    "id",
    "seq",
    "created_at",
    "actor_id",
    "actor_label",
    "action",
    "object_type",
    "object_id",
    "request_id",
    "principal_id",
    "account_id",
    "before",
    "after",
    "aws_request_ids",
    "ip",
    "user_agent",
    "prev_hash",
    "hash",
)
JSON_COLUMNS = ("before", "after", "aws_request_ids")
INT_COLUMNS = ("id", "seq", "actor_id", "request_id", "principal_id")
NOT_HASHED = frozenset({"id", "seq", "hash"})


def compute_hash(canonical: dict[str, Any]) -> str:
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def canonical_of(row: dict[str, Any]) -> dict[str, Any]:
    canonical = {k: v for k, v in row.items() if k not in NOT_HASHED}
    # Hashes were computed over Python's isoformat(), which drops a zero microsecond part; exports written by
    # PostgreSQL always carry it. Parsing and re-rendering gives the one canonical spelling.
    canonical["created_at"] = datetime.fromisoformat(str(canonical["created_at"])).isoformat()
    return canonical


# --- spreadsheet safety ----------------------------------------------------------------------------------
# OWASP's rule against CSV formula injection: a cell that starts with = + - @, a tab or a carriage return gets a
# leading single quote, so a spreadsheet shows it as text instead of running it. A cell that already starts with
# a quote gets one more, which makes the change reversible: the offline verifier strips exactly one leading quote
# and hashes the original value again.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: str) -> str:
    return "'" + value if value.startswith((*FORMULA_STARTS, "'")) else value


def restore(value: str) -> str:
    return value[1:] if value.startswith("'") else value


def is_safe_cell(value: str) -> bool:
    return not value.startswith(FORMULA_STARTS)


# --- verification ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    rows: int = 0
    links: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    first_hash: str = ""
    first_prev_hash: str = ""
    last_hash: str = ""
    broken_seq: int | None = None
    broken_row: int | None = None  # 1-based position of the row in what was read
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_seq is None and not self.reason

    def broken(self, seq: int | None, row: int | None, reason: str) -> Verdict:
        return replace(self, broken_seq=seq, broken_row=row, reason=reason)

    def describe_break(self) -> str:
        where = f"seq {self.broken_seq}" if self.broken_seq is not None else "the file"
        if self.broken_row is not None:
            where += f" (row {self.broken_row})"
        return f"{where}: {self.reason}"


def verify_rows(
    rows: Iterable[dict[str, Any]],
    *,
    contiguous: bool = True,
    start_seq: int | None = None,
    sorted_by_seq: bool = False,
) -> Verdict:
    """Check rows given in sequence order and stop at the first break.

    ``contiguous``: every sequence number must follow the one before (the database, a time-range export); a
    gap is a missing event. Otherwise numbers only have to increase, and links are checked where they are
    consecutive. ``start_seq``: the number the first row must have (1 means from the genesis hash).
    ``sorted_by_seq``: the rows were sorted by their numbers (the database), so a gap can only be an absence;
    in a file it may also be a row moved elsewhere.
    """
    v = Verdict()
    previous: dict[str, Any] | None = None
    for position, row in enumerate(rows, start=1):
        seq = int(row["seq"])
        if previous is None:
            v = replace(v, first_seq=seq, first_hash=row["hash"], first_prev_hash=row["prev_hash"])
            if start_seq is not None and seq != start_seq:
                missing = start_seq if seq > start_seq else seq
                return _count(v, position - 1, previous).broken(
                    missing, position, f"the first event should be seq {start_seq}, found seq {seq}"
                )
            if seq == 1 and row["prev_hash"] != GENESIS_HASH:
                return _count(v, position - 1, previous).broken(
                    seq, position, "the first event does not start from the genesis hash"
                )
        else:
            expected = int(previous["seq"]) + 1
            if seq < expected:
                return _count(v, position - 1, previous).broken(
                    seq, position, f"out of order: seq {seq} comes after seq {expected - 1}"
                )
            if seq > expected and contiguous:
                absent = f"{seq - expected} event{'s' if seq - expected > 1 else ''}"
                return _count(v, position - 1, previous).broken(
                    expected,
                    position,
                    f"missing: the sequence jumps from {expected - 1} to {seq} ({absent} absent)"
                    if sorted_by_seq
                    else f"the sequence jumps from {expected - 1} to {seq}: seq {expected} is missing or out of place",
                )
        if compute_hash(canonical_of(row)) != row["hash"]:
            return _count(v, position - 1, previous).broken(
                seq, position, "its content does not match its stored hash"
            )
        if previous is not None and seq == int(previous["seq"]) + 1:
            if row["prev_hash"] != previous["hash"]:
                return _count(v, position - 1, previous).broken(
                    seq, position, "its prev_hash does not match the hash of the event before it"
                )
            v = replace(v, links=v.links + 1)
        previous = row
        v = replace(v, rows=position)
    return _count(v, v.rows, previous)


def _count(v: Verdict, rows: int, last: dict[str, Any] | None) -> Verdict:
    if last is None:
        return replace(v, rows=rows)
    return replace(v, rows=rows, last_seq=int(last["seq"]), last_hash=last["hash"])


# --- signed checkpoints ------------------------------------------------------------------------------------
# A checkpoint says "the chain held these hashes up to seq N at time T", signed with an HMAC key that is never
# in the database, so someone who can rewrite the database (and recompute every hash) still cannot make the
# chain agree with the checkpoints written before.
SIGNED_FIELDS = ("version", "seq", "hash", "event_time", "created_at", "from_seq", "hashes", "key_id")


def key_id(key: bytes) -> str:
    """A short public name of a key, so a checkpoint says which key signed it without revealing it."""
    return hashlib.sha256(b"gatehouse-audit-checkpoint:" + key).hexdigest()[:16]


def signing_payload(checkpoint: dict[str, Any]) -> bytes:
    body = {name: checkpoint.get(name) for name in SIGNED_FIELDS}
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode()


def sign(checkpoint: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, signing_payload(checkpoint), hashlib.sha256).hexdigest()


def signature_ok(checkpoint: dict[str, Any], key: bytes) -> bool:
    return hmac.compare_digest(sign(checkpoint, key), str(checkpoint.get("signature", "")))


def checkpoint_hashes(checkpoint: dict[str, Any]) -> dict[int, str]:
    """seq -> hash for every event the checkpoint lists (those from ``from_seq`` up to ``seq``)."""
    first = int(checkpoint.get("from_seq") or checkpoint["seq"])
    listed = list(checkpoint.get("hashes") or [])
    return {first + i: h for i, h in enumerate(listed)}
