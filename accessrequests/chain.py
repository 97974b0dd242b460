"""The audit chain's hashing and verification, free of Django so an export can be verified anywhere.

    python -m accessrequests.chain verify audit-export.csv      # or .jsonl

Each event's hash is the SHA-256 of its canonical JSON (sorted keys, no spaces) including the previous event's
hash. An export of a filtered view holds some events of the chain: every row's own hash is checked, and the link
to the previous row wherever the previous event (id - 1) is also in the file. An export of a time range checks
every link.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64

# Export column order; the canonical content is every column but id and hash.
COLUMNS = (
    "id",
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
INT_COLUMNS = ("actor_id", "request_id", "principal_id")


def compute_hash(canonical: dict[str, Any]) -> str:
    payload = json.dumps(canonical, sort_keys=True, separators=(",", ":"), default=str, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()


def canonical_of(row: dict[str, Any]) -> dict[str, Any]:
    canonical = {k: v for k, v in row.items() if k not in {"id", "hash"}}
    # Hashes were computed over Python's isoformat(), which drops a zero microsecond part; exports written by
    # PostgreSQL always carry it. Parsing and re-rendering gives the one canonical spelling.
    canonical["created_at"] = datetime.fromisoformat(str(canonical["created_at"])).isoformat()
    return canonical


@dataclass(frozen=True)
class Verdict:
    rows: int
    links: int
    broken_id: int | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.broken_id is None


def verify_rows(rows: Iterable[dict[str, Any]], *, from_genesis: bool = False) -> Verdict:
    """Check each row's hash and every link whose predecessor is present; stop at the first break."""
    count = links = 0
    previous: dict[str, Any] | None = None
    for row in rows:
        count += 1
        row_id = int(row["id"])
        if compute_hash(canonical_of(row)) != row["hash"]:
            return Verdict(count, links, row_id, "its content does not match its stored hash")
        if previous is not None and int(previous["id"]) == row_id - 1:
            if row["prev_hash"] != previous["hash"]:
                return Verdict(
                    count, links, row_id, "its prev_hash does not match the hash of the row before it"
                )
            links += 1
        elif previous is None and from_genesis and row["prev_hash"] != GENESIS_HASH:
            return Verdict(count, links, row_id, "the first event does not start from the genesis hash")
        previous = row
    return Verdict(count, links)


def _from_csv_cell(name: str, value: str) -> Any:
    if name in JSON_COLUMNS:
        return json.loads(value)
    if name in INT_COLUMNS or name == "id":
        return int(value) if value != "" else None
    if name == "ip":
        return value or None
    return value


def read_csv(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for record in csv.DictReader(lines):
        yield {name: _from_csv_cell(name, record[name]) for name in COLUMNS}


def read_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if line.strip():
            yield json.loads(line)


def verify_file(path: Path) -> Verdict:
    with path.open(newline="", encoding="utf-8") as handle:
        rows = read_jsonl(handle) if path.suffix in {".jsonl", ".ndjson"} else read_csv(handle)
        return verify_rows(rows)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "verify":
        print("usage: python -m accessrequests.chain verify EXPORT.csv|EXPORT.jsonl", file=sys.stderr)
        return 2
    verdict = verify_file(Path(argv[1]))
    if not verdict.ok:
        print(f"BROKEN at event #{verdict.broken_id}: {verdict.reason} ({verdict.rows} rows read)")
        return 1
    print(
        f"OK: {verdict.rows} events, each matching its hash; {verdict.links} links to the previous event verified"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
