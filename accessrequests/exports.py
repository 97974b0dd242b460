"""Streaming exports of the audit trail as CSV or JSON Lines, chain hashes included.

Rows are read in id order through a server-side cursor in chunks (``iterator``) and written one line at a
time, so memory stays flat whatever the size of the export and the download starts with the first chunk.
Every exported row can be verified offline with ``python -m accessrequests.chain verify FILE``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connection
from django.db.models import QuerySet

from accessrequests.audit import CHAIN_FIELDS as _DB_FIELDS
from accessrequests.audit import iter_chain as _rows
from accessrequests.chain import COLUMNS, JSON_COLUMNS

FORMATS = {"csv": "text/csv; charset=utf-8", "jsonl": "application/x-ndjson"}


def _copy_csv(queryset: QuerySet) -> Iterator[bytes]:
    """PostgreSQL writes the CSV itself (COPY … TO STDOUT): several times faster than building rows in Python,
    still streamed block by block. The filters are the same Django queryset, compiled to SQL."""
    yield (",".join(COLUMNS) + "\r\n").encode()
    try:
        inner, params = queryset.order_by("seq").values_list(*_DB_FIELDS).query.sql_with_params()
    except EmptyResultSet:  # a filter that can match nothing (e.g. a request reference that is not a number)
        return
    columns = [
        "to_char(e.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
        if c == "created_at"
        else f"COALESCE(e.{c}::text, 'null')"
        if c in JSON_COLUMNS
        else f"e.{field}"  # the subquery names each column after its values_list() field
        for c, field in zip(COLUMNS, _DB_FIELDS, strict=True)
    ]
    # Column names are constants and `inner` is Django's compiled SQL; every user value stays in `params`.
    sql = f"COPY (SELECT {', '.join(columns)} FROM ({inner}) AS e ORDER BY e.seq) TO STDOUT WITH (FORMAT csv)"  # noqa: S608
    connection.ensure_connection()
    pending: list[bytes] = []
    size = 0
    with connection.connection.cursor() as cursor, cursor.copy(sql, params) as copy:
        for block in copy:
            pending.append(bytes(block))
            size += len(block)
            if size >= 1 << 16:
                yield b"".join(pending)
                pending, size = [], 0
    if pending:
        yield b"".join(pending)


def stream_csv(queryset: QuerySet, chunk_size: int = 5000) -> Iterator[str] | Iterator[bytes]:
    if connection.vendor == "postgresql":
        return _copy_csv(queryset)
    return _python_csv(queryset, chunk_size)


def _python_csv(queryset: QuerySet, chunk_size: int) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    batch = 0
    for row in _rows(queryset, chunk_size):
        writer.writerow(
            [
                json.dumps(row[c], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                if c in JSON_COLUMNS
                else ("" if row[c] is None else row[c])
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


def stream_jsonl(queryset: QuerySet, chunk_size: int = 5000) -> Iterator[str]:
    lines: list[str] = []
    for row in _rows(queryset, chunk_size):
        lines.append(json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
        if len(lines) >= 500:
            yield "\n".join(lines) + "\n"
            lines = []
    if lines:
        yield "\n".join(lines) + "\n"


def stream(queryset: QuerySet, fmt: str) -> Iterator[str] | Iterator[bytes]:
    if fmt == "csv":
        return stream_csv(queryset)
    if fmt == "jsonl":
        return stream_jsonl(queryset)
    raise ValueError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
