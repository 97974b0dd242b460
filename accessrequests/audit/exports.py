"""Streaming exports of the audit trail as CSV, JSON Lines or OCSF JSON Lines, chain hashes included, each with a
manifest.

Rows are read in sequence order through a server-side cursor in chunks (``iterator``) and written one line at a
time, so memory stays flat whatever the size of the export and the download starts with the first chunk.

The manifest travels as a file beside the export, ``<export file>.manifest.json``: the command writes both, and the
web page and the API offer it at the same address with ``manifest=1``. Both are computed from a fixed upper
sequence number (``through_seq``, the chain's tail when the page was shown), so the export and its manifest
describe exactly the same events even while the trail grows. A time range is widened to the contiguous run of
sequence numbers it spans, so a time-range export is complete for its range; any other filter makes it partial.
``python -m accessrequests.chain verify FILE`` checks an export against its manifest offline.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import Count, Max, Min, QuerySet
from django.utils import timezone

from accessrequests.audit import checkpoints, ocsf
from accessrequests.audit.trail import CHAIN_FIELDS as _DB_FIELDS
from accessrequests.audit.trail import iter_chain as _rows
from accessrequests.authz import selectors
from accessrequests.ledger.chain import COLUMNS, FORMULA_STARTS, JSON_COLUMNS, neutralise
from accessrequests.models import AuditEvent, Principal

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson", "ocsf": "application/x-ndjson"}
EXTENSIONS = {"csv": "csv", "jsonl": "jsonl", "ocsf": "ocsf.jsonl"}
TIME_FILTERS = frozenset({"since", "until"})


@dataclass
class Export:
    """What one export holds: a queryset bounded by sequence numbers, and the manifest that describes it (counted
    only when asked for: the stream itself needs neither the count nor the hashes at its ends)."""

    queryset: QuerySet[AuditEvent]
    fmt: str
    filters: dict[str, str]
    through_seq: int
    complete: bool

    @property
    def filename(self) -> str:
        tag = hashlib.sha256(json.dumps(self.filters, sort_keys=True).encode()).hexdigest()[:8]
        return f"gatehouse-audit-{self.through_seq}-{tag}.{EXTENSIONS[self.fmt]}"

    @property
    def manifest_filename(self) -> str:
        return self.filename + ".manifest.json"

    @functools.cached_property
    def manifest(self) -> dict[str, Any]:
        summary = summarise(self.queryset)
        return {
            "format": "gatehouse-audit-export",
            "version": 1,
            "file": self.filename,
            "file_format": self.fmt,
            "generated_at": timezone.now().isoformat(),
            "filters": self.filters,
            "through_seq": self.through_seq,
            "complete": self.complete,
            "complete_means": (
                "every event with a sequence number from first_seq to last_seq is in the file"
                if self.complete
                else "a filtered selection: events of the range that do not match the filters are left out"
            ),
            **summary,
            "checkpoint": covering_checkpoint(summary["last_seq"]),
            "csv_cells": f"cells starting with {' '.join(repr(c) for c in FORMULA_STARTS)} or a quote get a "
            "leading quote; the verifier strips one before hashing",
        }

    def manifest_json(self) -> str:
        return json.dumps(self.manifest, indent=2, ensure_ascii=False) + "\n"

    def stream(self) -> Iterator[str] | Iterator[bytes]:
        return stream(self.queryset, self.fmt)


def summarise(queryset: QuerySet[AuditEvent]) -> dict[str, Any]:
    """Count, sequence range, and the hashes at both ends (one aggregate, two lookups by the unique number)."""
    summary: dict[str, Any] = queryset.aggregate(count=Count("pk"), first_seq=Min("seq"), last_seq=Max("seq"))
    first = AuditEvent.objects.filter(seq=summary["first_seq"]).values("hash", "prev_hash").first()
    last = AuditEvent.objects.filter(seq=summary["last_seq"]).values("hash").first()
    summary["first_hash"] = first["hash"] if first else None
    summary["first_prev_hash"] = first["prev_hash"] if first else None
    summary["last_hash"] = last["hash"] if last else None
    return summary


def covering_checkpoint(last_seq: int | None) -> dict[str, Any] | None:
    """The earliest local checkpoint that includes ``last_seq`` (its list of hashes names every exported event of
    its stretch), without its hash list."""
    if last_seq is None:
        return None
    for stored in checkpoints.list_local():
        if stored.seq >= last_seq:
            try:
                return checkpoints.public_view(stored.load()) | {"name": stored.name}
            except checkpoints.CheckpointError:
                continue
    return None


def tail_seq() -> int:
    return AuditEvent.objects.aggregate(m=Max("seq"))["m"] or 0


def parse_through_seq(value: str | None) -> int | None:
    """``through_seq`` from a query string: a whole number, or absent. Raises ValueError with a clear message."""
    if not value:
        return None
    if not value.isdigit():
        raise ValueError("through_seq must be a whole number (the last sequence number to include).")
    return min(int(value), tail_seq())


def plan(filters: dict[str, Any], fmt: str, *, through_seq: int | None = None) -> Export:
    """The export of the events matching ``filters`` up to ``through_seq`` (default: the tail now)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    through = tail_seq() if through_seq is None else through_seq
    matching: QuerySet[AuditEvent] = selectors.audit_events(**filters).filter(seq__lte=through)
    complete = set(filters) <= TIME_FILTERS
    queryset: QuerySet[AuditEvent]
    if complete:
        # Clocks may step back a little; the run of sequence numbers from the first to the last matching event
        # has no holes by construction, and is what an auditor can check for completeness.
        bounds = matching.aggregate(first=Min("seq"), last=Max("seq"))
        queryset = (
            AuditEvent.objects.filter(seq__gte=bounds["first"], seq__lte=bounds["last"])
            if bounds["first"] is not None
            else AuditEvent.objects.none()
        )
    else:
        queryset = matching
    shown = {k: (v.isoformat() if hasattr(v, "isoformat") else str(v)) for k, v in sorted(filters.items())}
    return Export(queryset, fmt, shown, through, complete)


# The stream is handed on (and checked) a megabyte of whole rows at a time.
PIECE_BYTES = 1 << 20
# Every byte a cell may not start with becomes "=", and a line break or a quote a comma: a cell starts after a
# comma or a line break (and its text after the quote that opens it), so ',=' shows a cell to neutralise. A quoted
# cell holding a comma, a line break or a quote may also match: that only costs its rows a closer look.
_CELL_STARTS = bytes.maketrans(b"+-@\t\r'\n\"", b"======,,")
_NEUTRALISED_STARTS = frozenset("".join((*FORMULA_STARTS, "'")).encode())
_STARTS = b"[" + re.escape(bytes(sorted(_NEUTRALISED_STARTS))) + b"]"
_STARTS_OR_QUOTE = _STARTS[:-1] + b'"]'
# COPY's CSV: every cell ends with a comma, the last of a row with a line feed; a cell is quoted when its text holds
# a comma, a quote, a carriage return or a line feed, or is empty (a quote inside doubled); NULL is an unquoted
# empty cell. _CLEAN_CELLS takes the cells whose text starts with none of the neutralised characters, as many as
# follow each other, and then the opening quote (if any) of the cell that does; _REST_OF_* the rest of that cell.
_CLEAN_CELLS = re.compile(
    rb'(?:"(?!' + _STARTS + rb')[^"]*(?:""[^"]*)*"[,\n]|(?!' + _STARTS_OR_QUOTE + rb")[^,\n]*[,\n])*(\"?)"
)
_REST_OF_QUOTED = re.compile(rb'[^"]*(?:""[^"]*)*"[,\n]')
_REST_OF_PLAIN = re.compile(rb"[^,\n]*[,\n]")


def _copy_columns() -> str:
    """The SELECT list of the COPY over the export's rows (``e``): every cell as stored, by its type's own output
    function, as a plain COPY writes it, but for the time (ISO 8601 in UTC, microseconds always), the address
    (without a netmask) and an absent JSON value (``null``). The few cells that start a formula are neutralised
    afterwards (:func:`_neutralised_rows`)."""
    columns = []
    for c, field in zip(COLUMNS, _DB_FIELDS, strict=True):
        if c == "created_at":
            columns.append(
                "to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
            )
        elif c == "ip":  # host(), not the inet's own output, which would add a netmask ("10.0.0.0/8")
            columns.append("host(e.ip)")
        elif c in JSON_COLUMNS:  # jsonb's own output function: the text ::text gives, without the cast
            columns.append(f"COALESCE(e.{c}, 'null'::jsonb)")
        else:  # the subquery names columns by field
            columns.append(f"e.{field}")
    return ", ".join(columns)


def _needs_neutralising(rows: bytes) -> bool:
    """Could a cell of these CSV rows (whole rows, as COPY writes them) start with a formula character or a quote?
    Never a false no; a false yes only costs its rows a closer look."""
    marked = rows.translate(_CELL_STARTS)
    return marked.startswith((b"=", b",=")) or b",=" in marked


def _neutralised_rows(rows: bytes) -> bytes:
    """Whole rows as COPY writes CSV, with a quote put before the text of every cell that starts with a formula
    character or a quote. These are the bytes PostgreSQL wrote when it tested each column in SQL by its type (a
    negative number, a JSON number, a text), because each of those rules comes down to "a cell whose text starts
    so": a number or a JSON value can only start with a minus, a time or an address never starts with any of them.
    A leading quote changes nothing else in COPY's CSV (it is not special, and a cell that needs one is not empty),
    so it goes in as it is: after the opening quote of a quoted cell, else at the cell's start. The cells that need
    nothing are passed over inside the regular expression engine."""
    written, done, at = [], 0, 0
    while True:
        clean = _CLEAN_CELLS.match(rows, at)  # matches at least the empty string
        text = clean.end() if clean else at
        if text >= len(rows):
            break
        rest = (_REST_OF_QUOTED if clean and clean.group(1) else _REST_OF_PLAIN).match(rows, text)
        if rest is None or rows[text] not in _NEUTRALISED_STARTS:  # not COPY's CSV: never guess
            raise ValueError(f"audit export: not COPY's CSV at byte {text}")
        written += [rows[done:text], b"'"]
        done, at = text, rest.end()
    written.append(rows[done:])
    return b"".join(written)


def _checked(rows: bytes) -> bytes:
    return _neutralised_rows(rows) if _needs_neutralising(rows) else rows


def _copy_csv(queryset: QuerySet, piece_bytes: int = PIECE_BYTES) -> Iterator[bytes]:
    """PostgreSQL writes the CSV itself (COPY … TO STDOUT): several times faster than building rows in Python,
    still streamed. The filters are the same Django queryset, compiled to SQL.

    Testing every cell for a formula start in SQL made PostgreSQL's work nearly twice a plain COPY's (each cell cast
    to text and tested), and almost no event needs it. So PostgreSQL writes every cell as stored,
    and each megabyte of rows is checked here at once; only in a piece where a cell may start a formula are the
    cells looked at one by one, and those that do are quoted (:func:`_neutralised_rows`: the same bytes the SQL
    rules gave). libpq hands COPY data over one row at a time: the rows are gathered in one buffer (no bytes object
    per row)."""
    yield (",".join(COLUMNS) + "\r\n").encode()
    try:
        # No ORDER BY inside: PostgreSQL then folds the subquery into the scan (one projection, not two).
        inner, params = queryset.order_by().values_list(*_DB_FIELDS).query.sql_with_params()
    except EmptyResultSet:  # a filter that can match nothing (e.g. a request reference that is not a number)
        return
    # Column names are constants and `inner` is Django's compiled SQL; every user value stays in `params`.
    sql = f"COPY (SELECT {_copy_columns()} FROM ({inner}) AS e ORDER BY e.seq) TO STDOUT WITH (FORMAT csv)"  # noqa: S608
    connection.ensure_connection()
    pending = bytearray()
    with connection.connection.cursor() as cursor, cursor.copy(sql, params) as copy:
        for row in copy:
            pending += row
            if len(pending) >= piece_bytes:
                yield _checked(bytes(pending))
                pending.clear()
    if pending:
        yield _checked(bytes(pending))


def stream_csv(
    queryset: QuerySet, chunk_size: int = 5000, piece_bytes: int = PIECE_BYTES
) -> Iterator[str] | Iterator[bytes]:
    if connection.vendor == "postgresql":
        return _copy_csv(queryset, piece_bytes)
    return _python_csv(queryset, chunk_size)


def csv_cell(value: Any) -> str:
    """One cell of any CSV the product writes: text, never the start of a spreadsheet formula."""
    return neutralise("" if value is None else str(value))


def _python_csv(queryset: QuerySet, chunk_size: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    batch = 0
    for row in _rows(queryset, chunk_size):
        writer.writerow(
            [
                csv_cell(json.dumps(row[c], sort_keys=True, separators=(",", ":"), ensure_ascii=False))
                if c in JSON_COLUMNS
                else csv_cell(row[c])
                for c in COLUMNS
            ]
        )
        batch += 1
        if batch >= 500:  # hand the server reasonably sized pieces, not one line each
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
            batch = 0
    yield buffer.getvalue()


def _jsonl(objects: Iterator[dict[str, Any]]) -> Iterator[str]:
    lines: list[str] = []
    for obj in objects:
        lines.append(json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        if len(lines) >= 500:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def stream_jsonl(queryset: QuerySet, chunk_size: int = 5000) -> Iterator[str]:
    return _jsonl(_rows(queryset, chunk_size))


def principal_names() -> dict[int, dict[str, str]]:
    """Every principal's name and id for OCSF's ``user`` (one query; the catalog is small beside the trail)."""
    return {
        pk: {"name": display or name, "uid": external_id, "type": kind}
        for pk, name, display, external_id, kind in Principal.objects.values_list(
            "pk", "name", "display_name", "external_id", "kind"
        )
    }


def stream_ocsf(queryset: QuerySet, chunk_size: int = 5000) -> Iterator[str]:
    names = principal_names()
    return _jsonl(ocsf.to_ocsf(row, names) for row in _rows(queryset, chunk_size))


def stream(queryset: QuerySet, fmt: str) -> Iterator[str] | Iterator[bytes]:
    if fmt == "csv":
        return stream_csv(queryset)
    if fmt == "jsonl":
        return stream_jsonl(queryset)
    if fmt == "ocsf":
        return stream_ocsf(queryset)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
