"""Signed checkpoints of the audit chain, kept outside the database.

A checkpoint records the chain's newest sequence number and hash, and the hash of every event since the previous
checkpoint, signed with an HMAC key that is never in the database (``GATEHOUSE_AUDIT_CHECKPOINT_KEY``). Beat
writes one every 5 minutes when the chain grew, and one at each day's end whatever happened. Each goes to three
places: a JSON file under ``GATEHOUSE_AUDIT_CHECKPOINT_DIR``, one log line, and (when ``GATEHOUSE_AUDIT_BUCKET`` is
set) an S3 object locked in compliance mode for ``GATEHOUSE_AUDIT_RETENTION_DAYS``. Whoever rewrites the database
(and recomputes every hash after an edit, or deletes the newest events) cannot make it agree with the checkpoints
written before; ``integrity.verify_trail`` compares them.

Names sort by sequence number: ``checkpoints/YYYY/MM/DD/<seq, 12 digits>-<HHMMSS.microseconds>Z.json``.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.ledger import chain
from accessrequests.models import AuditEvent

logger = logging.getLogger(__name__)

VERSION = 1
# A checkpoint lists at most this many hashes (about 7 MB of JSON); events before them are still covered by the
# newest hash, which depends on every event before it.
MAX_LISTED = 100_000
FOLDER = "checkpoints"


class CheckpointError(Exception):
    """A checkpoint cannot be written (no key, or the chain does not continue the previous checkpoint)."""


@dataclass(frozen=True)
class Stored:
    """A checkpoint found in the local folder or in S3, read only when needed."""

    name: str  # checkpoints/YYYY/MM/DD/<seq>-<time>Z.json, the same in both places
    seq: int
    source: str  # "local" or "s3"
    read: Callable[[], dict[str, Any]]

    def load(self) -> dict[str, Any]:
        try:
            data = self.read()
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"checkpoint {self.name} ({self.source}) cannot be read: {exc}") from None
        if not isinstance(data, dict) or "seq" not in data or "hash" not in data:
            raise CheckpointError(f"checkpoint {self.name} ({self.source}) is not a checkpoint")
        return data


def signing_key() -> bytes:
    key = settings.GATEHOUSE_AUDIT_CHECKPOINT_KEY
    if not key:
        raise CheckpointError(
            "GATEHOUSE_AUDIT_CHECKPOINT_KEY (or _FILE) is not set: audit checkpoints cannot be signed or checked"
        )
    return key.encode()


def local_dir() -> Path:
    return Path(settings.GATEHOUSE_AUDIT_CHECKPOINT_DIR)


def s3_prefix() -> str:
    prefix = settings.GATEHOUSE_AUDIT_PREFIX.strip("/")
    return f"{prefix}/{FOLDER}/" if prefix else f"{FOLDER}/"


def name_for(checkpoint: dict[str, Any]) -> str:
    created = datetime.fromisoformat(checkpoint["created_at"])
    return f"{FOLDER}/{created:%Y/%m/%d}/{int(checkpoint['seq']):012d}-{created:%H%M%S.%f}Z.json"


def _seq_of(name: str) -> int:
    return int(name.rsplit("/", 1)[-1].split("-", 1)[0])


def _reader(load: Callable[[], bytes | str]) -> Callable[[], dict[str, Any]]:
    return lambda: json.loads(load())


def list_local() -> list[Stored]:
    root = local_dir()
    found = []
    for path in root.glob(f"{FOLDER}/*/*/*/*.json"):
        try:
            seq = _seq_of(path.name)
        except ValueError:
            continue  # not a name we write; reported by nobody, read by nobody
        found.append(
            Stored(
                path.relative_to(root).as_posix(),
                seq,
                "local",
                _reader(functools.partial(path.read_text, encoding="utf-8")),
            )
        )
    return sorted(found, key=lambda s: (s.seq, s.name))


def list_s3() -> list[Stored]:
    from accessrequests.aws import s3

    bucket = settings.GATEHOUSE_AUDIT_BUCKET
    if not bucket:
        return []
    base = settings.GATEHOUSE_AUDIT_PREFIX.strip("/")
    found = []
    for key in s3.list_keys(bucket, s3_prefix()):
        if not key.endswith(".json"):
            continue
        name = key[len(base) + 1 :] if base else key
        try:
            seq = _seq_of(name)
        except ValueError:
            continue
        found.append(Stored(name, seq, "s3", _reader(functools.partial(s3.get_bytes, bucket, key))))
    return sorted(found, key=lambda s: (s.seq, s.name))


def list_all(*, include_s3: bool) -> list[Stored]:
    """Every checkpoint by sequence number; a name found in both places counts once (the S3 copy, which is
    the one nobody can change)."""
    merged = {s.name: s for s in list_local()}
    if include_s3:
        merged.update({s.name: s for s in list_s3()})
    return sorted(merged.values(), key=lambda s: (s.seq, s.name))


def public_view(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint without its list of hashes: what logs, manifests and archive metadata carry."""
    return {k: v for k, v in checkpoint.items() if k != "hashes"}


def _previous() -> dict[str, Any] | None:
    stored = list_local()
    return stored[-1].load() if stored else None


def build(
    *, previous: dict[str, Any] | None, force: bool = False, now: datetime | None = None
) -> dict[str, Any] | None:
    """The checkpoint of the chain as it is now, continuing ``previous``; None when nothing was added since
    (unless ``force``).

    Refuses (CheckpointError) to sign a chain that does not continue the previous checkpoint: signing it would
    anchor a rewrite."""
    key = signing_key()
    tail = AuditEvent.objects.order_by("-seq").values("seq", "hash", "created_at").first()
    seq, tail_hash = (tail["seq"], tail["hash"]) if tail else (0, chain.GENESIS_HASH)
    prev_seq = int(previous["seq"]) if previous else 0
    if not force and previous is not None and seq == prev_seq and previous["hash"] == tail_hash:
        return None
    from_seq = max(prev_seq + 1, seq - MAX_LISTED + 1, 1)
    # Check the new stretch (and its link to the previous checkpoint's event) before signing it.
    start = from_seq - 1 if prev_seq and from_seq == prev_seq + 1 else from_seq
    rows = audit.iter_chain(AuditEvent.objects.filter(seq__gte=start, seq__lte=seq))
    verdict = chain.verify_rows(rows, start_seq=start if seq else None, sorted_by_seq=True)
    if not verdict.ok:
        raise CheckpointError(f"not signing: the chain is broken at {verdict.describe_break()}")
    if previous is not None and start == prev_seq and verdict.first_hash != previous["hash"]:
        raise CheckpointError(
            f"not signing: event seq {prev_seq} no longer has the hash the previous checkpoint recorded"
        )
    hashes = list(
        AuditEvent.objects.filter(seq__gte=from_seq, seq__lte=seq)
        .order_by("seq")
        .values_list("hash", flat=True)
    )
    now = now or timezone.now()
    checkpoint: dict[str, Any] = {
        "version": VERSION,
        "seq": seq,
        "hash": tail_hash,
        "event_time": tail["created_at"].isoformat() if tail else None,
        "created_at": now.isoformat(),
        "from_seq": from_seq,
        "hashes": hashes,
        "key_id": chain.key_id(key),
    }
    checkpoint["signature"] = chain.sign(checkpoint, key)
    return checkpoint


def store_local(checkpoint: dict[str, Any]) -> Path:
    path = local_dir() / name_for(checkpoint)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(checkpoint, separators=(",", ":")), encoding="utf-8")
    temporary.replace(path)  # whole or not at all: a reader never sees half a checkpoint
    return path


def retain_until(now: datetime | None = None) -> datetime | None:
    days = settings.GATEHOUSE_AUDIT_RETENTION_DAYS
    return (now or timezone.now()) + timedelta(days=days) if days > 0 else None


def ship_to_s3(checkpoint: dict[str, Any]) -> str | None:
    """Write the checkpoint to the bucket under Object Lock; returns the object key (None without a bucket)."""
    from accessrequests.aws import s3

    bucket = settings.GATEHOUSE_AUDIT_BUCKET
    if not bucket:
        return None
    base = settings.GATEHOUSE_AUDIT_PREFIX.strip("/")
    key = f"{base}/{name_for(checkpoint)}" if base else name_for(checkpoint)
    s3.put_file(
        bucket,
        key,
        json.dumps(checkpoint, separators=(",", ":")).encode(),
        content_type="application/json",
        metadata={"gatehouse-seq": str(checkpoint["seq"]), "gatehouse-hash": checkpoint["hash"]},
        retain_until=retain_until(),
    )
    return key


def write(*, force: bool = False) -> dict[str, Any] | None:
    """Write a checkpoint if the chain grew since the last one (or always, with ``force``: the day's end).

    The log line goes out first and always; the local file next; S3 last, so an S3 outage loses neither."""
    checkpoint = build(previous=_previous(), force=force)
    if checkpoint is None:
        return None
    logger.info(
        "audit checkpoint seq=%s hash=%s signature=%s",
        checkpoint["seq"],
        checkpoint["hash"],
        checkpoint["signature"],
        extra={"audit_checkpoint": public_view(checkpoint)},
    )
    store_local(checkpoint)
    ship_to_s3(checkpoint)
    return checkpoint
