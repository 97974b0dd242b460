"""manage.py evidence_pack --since 2026-01-01 --until 2026-04-01 [--output evidence.zip]

One folder (or, for an --output ending in .zip, one zip file) to hand to an auditor for a SOC 2 or ISO 27001
review of the period:

- ``README.txt``: what each part is and how to check it;
- ``access-report.csv`` / ``.jsonl``: who could use which access in the period, why, approved by whom, when it ended;
- ``decisions.csv`` / ``.jsonl``: every approve and deny, its reviewer, comment and the second factor they used;
- ``audit-export.csv`` with ``audit-export.csv.manifest.json``: the complete audit trail of the period;
- ``verification.json``: the full verification of the trail (database, checkpoints, S3 when configured) when the
  pack was made, and the offline verification of the export against the checkpoints;
- ``checkpoints/``: the signed checkpoints that cover the period (their key is not in the pack);
- ``access-reviews/``: each access review that ran in the period: its items (who kept or revoked what, why, and
  when the access was last used) and its audit events with their manifest;
- ``break-glass.csv`` / ``.jsonl``: every break-glass use in the period, its incident and its post-review;
- ``pack.json``: the SHA-256 of every file above.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accessrequests.audit import access_report, checkpoints, exports, integrity
from accessrequests.audit import trail as audit
from accessrequests.ledger import offline
from accessrequests.management.commands.export_audit import parse_when, write_export
from accessrequests.models import AccessRequest, AuditEvent, Decision, ReviewCampaign

DECISION_FIELDS = (
    "request",
    "decided_at",
    "outcome",
    "reviewer",
    "comment",
    "second_factor",
    "second_factor_at",
    "requested_by",
    "principal",
    "account_id",
    "justification",
    "ticket",
)
README = """Gatehouse evidence pack
=======================

Period: {since} to {until} (UTC; since inclusive, until exclusive). Made {made} by manage.py evidence_pack.

access-report.csv / .jsonl  Who could use which access in AWS in the period: one row per recipient (the outside
                            principal of a cross-account role, an Identity Center user by name), the request and a
                            link to it, the justification and ticket, who approved it with their comments, when it
                            was applied, when it ends, and when it ended (only for access that ended).
decisions.csv / .jsonl      Every approve and deny decided in the period: reviewer, comment, and the second factor
                            the reviewer last proved in that session (with its time).
audit-export.csv            Every audit event of the period, with its sequence number and chain hashes, and
audit-export.csv.manifest.json  its manifest: the sequence range, count, first and last hash, the checkpoint that
                            covers it, and that it is complete for its range.
verification.json           The verification when the pack was made: the whole trail from its first event against
                            the signed checkpoints (and S3 when configured), and this export checked offline.
checkpoints/                The signed checkpoints that cover the period. Their signing key is not in this pack:
                            ask for it, or compare each with its copy in the S3 bucket, locked under Object Lock.
access-reviews/             Each access review that ran in the period: AR-nnnnnn-items.csv (every item, its last use
                            from IAM, kept or revoked by whom and why) and AR-nnnnnn-events.csv with its manifest
                            (every event of the review; verify it like the audit export).
break-glass.csv / .jsonl    Every break-glass use (access with no approver) in the period: incident, reason, and
                            the post-review by another approver (or that it is still open or was late).
pack.json                   The SHA-256 of every file above.

Check the export yourself, without Gatehouse's database, from this folder (any Python 3.11+, nothing
installed; the verifier is accessrequests/chain.py over accessrequests/ledger/ and accessrequests/core/wording.py in Gatehouse's repository):

    python /path/to/gatehouse/accessrequests/chain.py verify audit-export.csv --checkpoints checkpoints [--key-file KEY]

CSV cells that would start a spreadsheet formula (= + - @, tab, carriage return) carry a leading single quote;
the verifier removes it before hashing.
"""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def decision_rows(since, until) -> list[dict[str, Any]]:
    decisions = (
        Decision.objects.filter(created_at__gte=since, created_at__lt=until)
        .select_related("request", "request__requester", "request__principal", "request__account", "reviewer")
        .order_by("created_at", "id")
    )
    # The second factor is in the decision's audit event (request.approval_recorded or request.denied).
    factors: dict[tuple[int, int], dict[str, Any]] = {}
    events = AuditEvent.objects.filter(
        action__in=["request.approval_recorded", "request.denied"],
        request_id__in=[d.request_id for d in decisions],
    ).values_list("request_id", "actor_id", "after")
    for request_id, actor_id, after in events:
        if request_id is not None and actor_id is not None and isinstance(after, dict):
            factors[(request_id, actor_id)] = (after.get("decision") or {}).get("second_factor") or {}
    rows = []
    for d in decisions:
        factor = factors.get((d.request_id, d.reviewer_id), {})
        rows.append(
            {
                "request": d.request.reference,
                "decided_at": d.created_at.isoformat(),
                "outcome": d.get_outcome_display(),
                "reviewer": d.reviewer.get_username(),
                "comment": d.comment,
                "second_factor": factor.get("method", "not recorded"),
                "second_factor_at": factor.get("at", ""),
                "requested_by": d.request.requester.get_username(),
                "principal": d.request.principal.external_id,
                "account_id": d.request.account.account_id,
                "justification": d.request.justification,
                "ticket": d.request.ticket,
            }
        )
    return rows


BREAK_GLASS_FIELDS = (
    "request", "requested_at", "requested_by", "principal", "account_id", "incident", "reason", "duration_hours",
    "post_review_due_at", "post_reviewed_by", "post_reviewed_at", "post_review_outcome", "post_review_comment",
    "post_review_late",
)  # fmt: skip


def break_glass_rows(since, until) -> list[dict[str, Any]]:
    uses = (
        AccessRequest.objects.filter(break_glass=True, created_at__gte=since, created_at__lt=until)
        .select_related("requester", "principal", "account", "break_glass_review__reviewer")
        .order_by("created_at", "id")
    )
    rows = []
    for req in uses:
        review = req.break_glass_review
        done = review.reviewed_at
        rows.append(
            {
                "request": req.reference,
                "requested_at": req.created_at.isoformat(),
                "requested_by": req.requester.get_username(),
                "principal": req.principal.external_id,
                "account_id": req.account.account_id,
                "incident": req.incident,
                "reason": req.justification,
                "duration_hours": req.duration_hours,
                "post_review_due_at": review.due_at.isoformat(),
                "post_reviewed_by": review.reviewer.get_username() if review.reviewer else "",
                "post_reviewed_at": done.isoformat() if done else "",
                "post_review_outcome": review.get_outcome_display() if review.outcome else "open",
                "post_review_comment": review.comment,
                "post_review_late": "yes" if (done or timezone.now()) > review.due_at else "",
            }
        )
    return rows


def _write_reviews(folder: Path, since, until, key: bytes | None) -> list[dict[str, Any]]:
    """Each access review that ran in the period: its items table, and its events as a verifiable export."""
    from django.db.models import Q

    from accessrequests.reviews import campaigns as reviews

    target = folder / "access-reviews"
    target.mkdir()
    verdicts = []
    campaigns = ReviewCampaign.objects.filter(started_at__lt=until).filter(
        Q(closed_at__isnull=True) | Q(closed_at__gte=since)
    )
    for campaign in campaigns.order_by("pk"):
        rows = reviews.item_rows(campaign)
        _write_table(target, f"{campaign.reference}-items", rows, reviews.ITEM_FIELDS)
        (
            target / f"{campaign.reference}-items.jsonl"
        ).unlink()  # the CSV is the table; the events are the proof
        export = reviews.export_plan(campaign, "csv")
        path = target / f"{campaign.reference}-events.csv"
        write_export(export, path)
        verdict, lines = offline.verify_file(path, checkpoints_dir=folder / "checkpoints", key=key)
        verdicts.append(
            {"campaign": campaign.reference, "ok": verdict.ok, "reason": verdict.reason, "proves": lines}
        )
    return verdicts


def _write_table(folder: Path, name: str, rows: list[dict[str, Any]], fields: tuple[str, ...]) -> None:
    import csv

    with (folder / f"{name}.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(fields)
        for row in rows:
            writer.writerow([exports.csv_cell(row.get(f)) for f in fields])
    with (folder / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def _copy_checkpoints(folder: Path, first_seq: int | None, last_seq: int | None) -> int:
    """The checkpoints whose stretch overlaps the export, and the first one after it (which covers its end)."""
    target = folder / "checkpoints"
    target.mkdir()
    copied = 0
    covering_done = False
    for stored in checkpoints.list_local():
        try:
            data = stored.load()
        except checkpoints.CheckpointError:
            continue
        start = int(data.get("from_seq") or data["seq"])
        overlaps = first_seq is not None and start <= (last_seq or 0) and int(data["seq"]) >= first_seq
        covering = last_seq is not None and int(data["seq"]) >= last_seq and not covering_done
        if overlaps or covering:
            (target / Path(stored.name).name).write_text(
                json.dumps(data, separators=(",", ":")), encoding="utf-8"
            )
            copied += 1
            covering_done = covering_done or covering
    return copied


class Command(BaseCommand):
    help = "Write an evidence pack for a period: access report, decisions, audit export with manifest, verification."

    def add_arguments(self, parser):
        parser.add_argument("--since", required=True, help="ISO date/time, inclusive")
        parser.add_argument("--until", required=True, help="ISO date/time, exclusive")
        parser.add_argument(
            "--output", help="a folder, or a file ending in .zip (default: a folder named after the period)"
        )

    def handle(self, *args, since, until, output=None, **options):
        start, end = parse_when(since), parse_when(until)
        if start >= end:
            raise CommandError("--since must be before --until")
        target = Path(output or f"gatehouse-evidence-{start:%Y%m%d}-{end:%Y%m%d}")
        if target.exists():
            raise CommandError(f"{target} exists already; name another --output")
        try:
            # Anchor everything up to now first, so the export in the pack is covered by a signed checkpoint.
            checkpoints.write()
        except checkpoints.CheckpointError as exc:
            self.stderr.write(self.style.WARNING(f"no new checkpoint: {exc}"))
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch) / "pack"
            folder.mkdir()
            self._write(folder, start, end)
            if target.suffix == ".zip":
                shutil.make_archive(str(target.with_suffix("")), "zip", folder)
            else:
                shutil.copytree(folder, target)
        audit.record(
            action="audit.evidence_pack",
            object_type="evidence_pack",
            actor_label="manage.py evidence_pack",
            after={"since": start, "until": end, "output": target.name},
        )
        self.stdout.write(self.style.SUCCESS(f"evidence pack written to {target}"))

    def _write(self, folder: Path, start, end) -> None:
        made = timezone.now()
        rows = access_report.report(since=start, until=end)
        (folder / "access-report.csv").write_text(access_report.to_csv(rows), encoding="utf-8")
        (folder / "access-report.jsonl").write_text(access_report.to_jsonl(rows), encoding="utf-8")
        _write_table(folder, "decisions", decision_rows(start, end), DECISION_FIELDS)
        export = exports.plan({"since": start, "until": end}, "csv")
        export_path = folder / "audit-export.csv"
        write_export(export, export_path)
        copied = _copy_checkpoints(folder, export.manifest["first_seq"], export.manifest["last_seq"])
        trail = integrity.verify_trail(include_s3=True)
        try:
            key = checkpoints.signing_key()
        except checkpoints.CheckpointError:
            key = None
        verdict, lines = offline.verify_file(export_path, checkpoints_dir=folder / "checkpoints", key=key)
        _write_table(folder, "break-glass", break_glass_rows(start, end), BREAK_GLASS_FIELDS)
        review_verdicts = _write_reviews(folder, start, end, key)
        verification = {
            "made_at": made.isoformat(),
            "trail": trail.as_dict(),
            "export": {
                "ok": verdict.ok,
                "broken_seq": verdict.broken_seq,
                "reason": verdict.reason,
                "proves": lines,
                "checkpoints_in_pack": copied,
            },
            "access_reviews": review_verdicts,
        }
        (folder / "verification.json").write_text(
            json.dumps(verification, indent=2, default=str) + "\n", encoding="utf-8"
        )
        (folder / "README.txt").write_text(
            README.format(since=start.isoformat(), until=end.isoformat(), made=made.isoformat()),
            encoding="utf-8",
        )
        files = sorted(p for p in folder.rglob("*") if p.is_file())
        pack = {
            "period": {"since": start.isoformat(), "until": end.isoformat()},
            "made_at": made.isoformat(),
            "files": {p.relative_to(folder).as_posix(): _sha256(p) for p in files},
        }
        (folder / "pack.json").write_text(json.dumps(pack, indent=2) + "\n", encoding="utf-8")
