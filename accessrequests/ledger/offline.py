"""Verify an audit export offline, without the database or Django: ``python -m accessrequests.chain verify FILE``.

An export travels with a manifest in a file beside it, ``FILE.manifest.json`` (the web page, the API and
``manage.py export_audit`` all write or offer it): the filters, the sequence range, the number of events, the first
and last hash, the checkpoint that covers the range, and whether the export is complete for its range.

- A complete export (the whole trail or a time range) must hold every sequence number of its range exactly once,
  in order, each event matching its hash and linked to the one before, and agree with its manifest: a removed,
  added, reordered or edited row is reported with its sequence number and its row in the file.
- A filtered export (by actor, action, …) proves that each event in it is unchanged, and the links between events
  with consecutive numbers; it cannot prove that no matching event was left out. Compare it with a complete export
  of the same period, or run ``manage.py verify_audit``.
- ``--checkpoints DIR`` compares the rows with the signed checkpoints in DIR (an evidence pack has them), and
  ``--key-file`` checks their signatures. Without the key, compare a checkpoint with its Object Lock copy in S3.

CSV cells that could start a spreadsheet formula were written with a leading quote (see ``chain.neutralise``);
the verifier strips it again before hashing, so the hashes are those of the original values.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from accessrequests.core.wording import counted
from accessrequests.ledger import chain

MANIFEST_SUFFIX = ".manifest.json"


def _from_csv_cell(name: str, value: str) -> Any:
    value = chain.restore(value)
    if name in chain.JSON_COLUMNS:
        return json.loads(value)
    if name in chain.INT_COLUMNS:
        return int(value) if value != "" else None
    if name == "ip":
        return value or None
    return value


def read_csv(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    reader = csv.DictReader(lines)
    missing = [c for c in chain.COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ValueError(f"not a Gatehouse audit export: the CSV has no column {', '.join(missing)}")
    for record in reader:
        yield {name: _from_csv_cell(name, record[name]) for name in chain.COLUMNS}


def read_jsonl(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Gatehouse JSON Lines, or OCSF JSON Lines (each event carries the chain row in ``unmapped.gatehouse``)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError:
            raise ValueError(f"line {number} is not JSON") from None
        if "class_uid" in data:
            data = data.get("unmapped", {}).get("gatehouse")
            if not isinstance(data, dict):
                raise ValueError(f"line {number} is an OCSF event without its Gatehouse chain row")
        yield data


def read_rows(handle: Iterable[str], path: Path) -> Iterator[dict[str, Any]]:
    if path.name.endswith((".jsonl", ".ndjson", ".json")):
        return read_jsonl(handle)
    return read_csv(handle)


def load_manifest(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"the manifest {path} cannot be read: {exc}") from None
    if data.get("format") != "gatehouse-audit-export":
        raise ValueError(f"{path} is not a Gatehouse export manifest")
    return data


def _against_manifest(v: chain.Verdict, m: dict[str, Any]) -> chain.Verdict:
    """Compare what the file holds with what its manifest says; the first disagreement, placed where it is."""
    complete = bool(m.get("complete"))
    count, first, last = m.get("count", 0), m.get("first_seq"), m.get("last_seq")
    if complete and count and v.rows == 0:
        return v.broken(first, 1, f"the file has no events; the manifest lists seq {first}-{last}")
    if complete and last is not None and v.last_seq is not None and v.last_seq != last:
        if v.last_seq < last:
            return v.broken(
                v.last_seq + 1,
                v.rows + 1,
                f"missing: the file ends at seq {v.last_seq}; its manifest says seq {last}",
            )
        return v.broken(last + 1, v.rows - (v.last_seq - last) + 1, f"added: the manifest ends at seq {last}")
    if v.rows != count:
        return v.broken(None, None, f"the manifest counts {counted(count, 'event')}; the file holds {v.rows}")
    for name, seen in (("first_hash", v.first_hash), ("last_hash", v.last_hash)):
        if m.get(name) and seen != m[name]:
            row = 1 if name == "first_hash" else v.rows
            return v.broken(first if row == 1 else last, row, f"its hash differs from the manifest's {name}")
    if complete and m.get("first_prev_hash") and v.first_prev_hash != m["first_prev_hash"]:
        return v.broken(first, 1, "its link to the event before the export differs from the manifest")
    return v


def load_checkpoints(folder: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(folder.rglob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            continue
        if isinstance(data, dict) and "signature" in data and "hashes" in data:
            data["_file"] = str(path)
            found.append(data)
    return found


def _against_checkpoints(
    v: chain.Verdict, seen: dict[int, tuple[int, str]], found: list[dict[str, Any]], key: bytes | None
) -> tuple[chain.Verdict, list[str]]:
    lines: list[str] = []
    signed_ok = 0
    compared = 0
    for checkpoint in found:
        if key is not None:
            if not chain.signature_ok(checkpoint, key):
                return v.broken(
                    checkpoint.get("seq"), None, f"checkpoint {checkpoint['_file']} has a bad signature"
                ), lines
            signed_ok += 1
        for seq, expected in chain.checkpoint_hashes(checkpoint).items():
            if seq in seen:
                compared += 1
                row, actual = seen[seq]
                if actual != expected:
                    return v.broken(
                        seq, row, f"differs from checkpoint {Path(checkpoint['_file']).name}"
                    ), lines
    lines.append(
        f"{compared} of {counted(len(seen), 'event')} compared with {counted(len(found), 'checkpoint')}"
        + (
            f", {counted(signed_ok, 'signature')} valid"
            if key is not None
            else " (signatures not checked: no --key-file)"
        )
    )
    return v, lines


def _recording(rows: Iterator[dict[str, Any]], seen: dict[int, tuple[int, str]]) -> Iterator[dict[str, Any]]:
    for position, row in enumerate(rows, start=1):
        seen[int(row["seq"])] = (position, row["hash"])
        yield row


def verify_file(
    path: Path,
    *,
    manifest_path: Path | None = None,
    checkpoints_dir: Path | None = None,
    key: bytes | None = None,
) -> tuple[chain.Verdict, list[str]]:
    """Verify one export; returns the verdict and lines that say what was proven."""
    manifest_path = manifest_path or path.with_name(path.name + MANIFEST_SUFFIX)
    manifest = load_manifest(manifest_path) if manifest_path.exists() else None
    complete = bool(manifest and manifest.get("complete"))
    seen: dict[int, tuple[int, str]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        rows = read_rows(handle, path)
        if checkpoints_dir is not None:
            rows = _recording(rows, seen)
        start = manifest.get("first_seq") if complete and manifest else None
        v = chain.verify_rows(rows, contiguous=complete, start_seq=start)
    if v.ok and manifest is not None:
        v = _against_manifest(v, manifest)
    lines: list[str] = []
    if v.ok and checkpoints_dir is not None:
        v, lines = _against_checkpoints(v, seen, load_checkpoints(checkpoints_dir), key)
    return v, _what_it_proves(v, manifest, manifest_path) + lines


def _what_it_proves(v: chain.Verdict, manifest: dict[str, Any] | None, manifest_path: Path) -> list[str]:
    span = f"seq {v.first_seq}-{v.last_seq}" if v.rows else "no events"
    lines = [
        f"{counted(v.rows, 'event')} ({span}), each matching its hash; {counted(v.links, 'link')} to the event before verified"
    ]
    if manifest is None:
        lines.append(
            f"no manifest ({manifest_path.name} not found): nothing tells whether events are missing at either "
            "end or between events that are not consecutive"
        )
        return lines
    if manifest.get("complete"):
        lines.append(
            f"complete for seq {manifest.get('first_seq')}-{manifest.get('last_seq')} as its manifest says "
            f"({manifest.get('count')} events, first hash {str(manifest.get('first_hash'))[:12]}…, last hash "
            f"{str(manifest.get('last_hash'))[:12]}…): no event of the range is missing, added or moved"
        )
    else:
        filters = ", ".join(f"{k}={val}" for k, val in (manifest.get("filters") or {}).items())
        lines.append(
            f"filtered export ({filters or 'filters'}): proves each of these events unchanged and the links between "
            "consecutive numbers; it cannot prove that no matching event was left out (compare with a complete "
            "export of the period, or run manage.py verify_audit)"
        )
    checkpoint = manifest.get("checkpoint")
    if checkpoint:
        lines.append(
            f"covered by the checkpoint of {checkpoint.get('created_at')} (seq {checkpoint.get('seq')}, hash "
            f"{str(checkpoint.get('hash'))[:12]}…, key id {checkpoint.get('key_id')}); compare it with its copy "
            "in S3 or check it with --checkpoints and --key-file"
        )
    else:
        lines.append(
            "no checkpoint covered the range yet when it was exported (one is written every 5 minutes)"
        )
    return lines


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m accessrequests.chain")
    sub = parser.add_subparsers(dest="command", required=True)
    verify = sub.add_parser("verify", help="verify an audit export (CSV, JSON Lines or OCSF JSON Lines)")
    verify.add_argument("file", type=Path)
    verify.add_argument("--manifest", type=Path, help=f"default: FILE{MANIFEST_SUFFIX}")
    verify.add_argument("--checkpoints", type=Path, help="a folder of signed checkpoints to compare with")
    verify.add_argument("--key-file", type=Path, help="the checkpoint key, to check checkpoint signatures")
    args = parser.parse_args(argv)
    try:
        key = args.key_file.read_text().strip().encode() if args.key_file else None
        verdict, lines = verify_file(
            args.file, manifest_path=args.manifest, checkpoints_dir=args.checkpoints, key=key
        )
    except (OSError, ValueError, KeyError) as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    if not verdict.ok:
        print(f"BROKEN at {verdict.describe_break()}")
        return 1
    print("OK: " + "\n    ".join(lines))
    return 0
