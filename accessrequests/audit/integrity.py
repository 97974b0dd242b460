"""Is the audit trail complete and unchanged? The database compared with itself, its checkpoints and its archive.

Three questions, each able to name the first sequence number that is wrong:
1. The chain from genesis: every number present once and in order, every event matching its hash, every event
   linked to the one before (a deletion, an edit, a reordering).
2. The signed checkpoints: the database must still hold every hash a checkpoint recorded, up to the newest
   checkpoint's number (a rewrite that recomputed every later hash; the newest events deleted). Because each hash
   depends on every event before it, a rewrite shows in every checkpoint from the changed event on; a binary
   search over the checkpoints finds the first such one, and its list of hashes names the event.
3. With a bucket, the daily archive objects in S3: each archived event must still be in the database with the
   same hash.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from accessrequests.audit import checkpoints
from accessrequests.audit import trail as audit
from accessrequests.ledger import chain
from accessrequests.models import AuditEvent


@dataclass(frozen=True)
class Finding:
    seq: int | None
    reason: str
    where: str

    def __str__(self) -> str:
        at = f"seq {self.seq}" if self.seq is not None else "the trail"
        return f"{at}: {self.reason} [{self.where}]"


@dataclass
class Report:
    events: int = 0
    last_seq: int = 0
    last_hash: str = chain.GENESIS_HASH
    checkpoints: int = 0
    newest_checkpoint: dict[str, Any] | None = None
    signatures_checked: int = 0
    archive_objects: int = 0
    archived_events: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings

    @property
    def first(self) -> Finding | None:
        """The finding with the lowest sequence number (findings without one come last)."""
        if not self.findings:
            return None
        return min(self.findings, key=lambda f: (f.seq is None, f.seq or 0))

    def as_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "ok": self.ok,
            "events": self.events,
            "last_seq": self.last_seq,
            "last_hash": self.last_hash,
            "checkpoints": self.checkpoints,
            "newest_checkpoint": self.newest_checkpoint,
            "signatures_checked": self.signatures_checked,
            "archive_objects": self.archive_objects,
            "archived_events": self.archived_events,
            "first_broken_seq": first.seq if first else None,
            "findings": [str(f) for f in self.findings],
            "notes": self.notes,
        }


def _db_hashes(first: int, last: int) -> dict[int, str]:
    return dict(AuditEvent.objects.filter(seq__gte=first, seq__lte=last).values_list("seq", "hash"))


class _Checkpoints:
    """The stored checkpoints, each read (and its signature checked) at most once."""

    def __init__(self, stored: list[checkpoints.Stored], key: bytes | None, report: Report):
        self.stored = stored
        self.key = key
        self.report = report
        self.loaded: dict[int, dict[str, Any] | None] = {}

    def get(self, index: int) -> dict[str, Any] | None:
        if index not in self.loaded:
            item = self.stored[index]
            try:
                data: dict[str, Any] | None = item.load()
            except checkpoints.CheckpointError as exc:
                self.report.findings.append(Finding(item.seq, str(exc), item.source))
                data = None
            if data is not None and self.key is not None:
                self.report.signatures_checked += 1
                if not chain.signature_ok(data, self.key):
                    self.report.findings.append(
                        Finding(
                            item.seq,
                            f"checkpoint {item.name} has a bad signature (forged, altered or signed with "
                            f"another key: key id {data.get('key_id')})",
                            item.source,
                        )
                    )
                    data = None
            self.loaded[index] = data
        return self.loaded[index]

    def matches(self, data: dict[str, Any], db_last_seq: int) -> bool:
        seq = int(data["seq"])
        if seq == 0:
            return True
        if seq > db_last_seq:
            return False
        return _db_hashes(seq, seq).get(seq) == data["hash"]


def _check_checkpoints(report: Report, *, include_s3: bool, all_signatures: bool) -> None:
    stored = checkpoints.list_all(include_s3=include_s3)
    report.checkpoints = len(stored)
    if not stored:
        report.notes.append(
            "no checkpoints found: a rewrite that recomputes every hash, or the loss of the newest events, "
            "cannot be detected"
        )
        return
    try:
        key: bytes | None = checkpoints.signing_key()
    except checkpoints.CheckpointError as exc:
        key = None
        report.notes.append(f"{exc}; checkpoints compared without checking their signatures")
    found = _Checkpoints(stored, key, report)
    if all_signatures:
        for index in range(len(stored)):
            found.get(index)
    newest_index = len(stored) - 1
    while newest_index >= 0 and found.get(newest_index) is None:
        newest_index -= 1  # a broken newest checkpoint is already a finding; compare with the one before
    if newest_index < 0:
        return
    newest = found.get(newest_index)
    assert newest is not None
    report.newest_checkpoint = checkpoints.public_view(newest)
    if found.matches(newest, report.last_seq):
        return
    # The first checkpoint that no longer matches the database: all before it match, all after it do not.
    low, high = 0, newest_index
    while low < high:
        middle = (low + high) // 2
        data = found.get(middle)
        if data is None or found.matches(data, report.last_seq):
            low = middle + 1
        else:
            high = middle
    first_bad = found.get(low)
    assert first_bad is not None
    report.findings.append(_first_difference(first_bad, stored[low], report.last_seq))


def _first_difference(data: dict[str, Any], item: checkpoints.Stored, db_last_seq: int) -> Finding:
    listed = chain.checkpoint_hashes(data)
    where = f"checkpoint {item.name} ({item.source}, written {data.get('created_at')})"
    if listed:
        have = _db_hashes(min(listed), max(listed))
        for seq in sorted(listed):
            if seq not in have:
                return Finding(
                    seq,
                    f"missing: the checkpoint recorded the chain up to seq {data['seq']}; "
                    f"the database ends at seq {db_last_seq}"
                    if seq > db_last_seq
                    else "missing: the checkpoint recorded this event and the database no longer has it",
                    where,
                )
            if have[seq] != listed[seq]:
                return Finding(
                    seq,
                    "differs from the checkpoint: the event was changed or replaced and the hashes after it "
                    "recomputed",
                    where,
                )
    return Finding(
        int(data["seq"]),
        f"the chain up to seq {data['seq']} differs from the checkpoint (its own list starts at seq "
        f"{data.get('from_seq')}); the change is at or before this number",
        where,
    )


def archive_keys() -> Iterator[str]:
    from accessrequests.aws import s3

    prefix = settings.GATEHOUSE_AUDIT_PREFIX.strip("/")
    for key in s3.list_keys(settings.GATEHOUSE_AUDIT_BUCKET, f"{prefix}/" if prefix else ""):
        if key.endswith(".jsonl") and f"/{checkpoints.FOLDER}/" not in f"/{key}":
            yield key


def _check_archive(report: Report) -> None:
    from accessrequests.aws import s3

    bucket = settings.GATEHOUSE_AUDIT_BUCKET
    for key in sorted(archive_keys()):
        report.archive_objects += 1
        archived = {}
        for line in s3.get_lines(bucket, key):
            if line.strip():
                row = json.loads(line)
                archived[int(row["seq"])] = row["hash"]
        if not archived:
            continue
        report.archived_events += len(archived)
        have = _db_hashes(min(archived), max(archived))
        for seq in sorted(archived):
            if have.get(seq) != archived[seq]:
                what = "missing from the database" if seq not in have else "differs from the archived copy"
                report.findings.append(Finding(seq, what, f"s3://{bucket}/{key}"))
                break


def verify_trail(*, include_s3: bool = False, all_signatures: bool = False) -> Report:
    """The whole check. ``include_s3``: also read checkpoints and archive objects from the bucket (when set)."""
    report = Report()
    rows = audit.iter_chain()
    verdict = chain.verify_rows(rows, start_seq=1, sorted_by_seq=True)
    tail = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    report.events = AuditEvent.objects.count()
    report.last_seq, report.last_hash = tail if tail else (0, chain.GENESIS_HASH)
    if not verdict.ok:
        report.findings.append(Finding(verdict.broken_seq, verdict.reason, "database"))
    include_s3 = include_s3 and bool(settings.GATEHOUSE_AUDIT_BUCKET)
    _check_checkpoints(report, include_s3=include_s3, all_signatures=all_signatures)
    if include_s3:
        _check_archive(report)
    return report
