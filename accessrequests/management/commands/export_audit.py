"""manage.py export_audit --since 2026-01-01 --until 2026-04-01 --format csv --output audit.csv

Writes audit.csv and its manifest audit.csv.manifest.json; verify both with
``python -m accessrequests.chain verify audit.csv``."""

import sys
from datetime import datetime
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accessrequests.audit import exports
from accessrequests.audit.export_events import export_recorded


def parse_when(value: str | None):
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"{value!r} is not a date or time (use ISO 8601, e.g. 2026-03-01 or 2026-03-01T12:00)"
        ) from None
    return parsed if parsed.tzinfo else timezone.make_aware(parsed, timezone.get_default_timezone())


def write_export(export: exports.Export, path: Path) -> Path:
    """The export and its manifest beside it (``<path>.manifest.json``); returns the manifest's path."""
    with path.open("wb") as out:
        for chunk in export.stream():
            out.write(chunk.encode() if isinstance(chunk, str) else chunk)
    manifest = path.with_name(path.name + ".manifest.json")
    manifest.write_text(export.manifest_json(), encoding="utf-8")
    return manifest


class Command(BaseCommand):
    help = "Export audit events as CSV, JSON Lines or OCSF (with chain hashes) and the manifest that proves them."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="ISO date/time, inclusive")
        parser.add_argument("--until", help="ISO date/time, exclusive")
        parser.add_argument("--format", choices=sorted(exports.FORMATS), default="csv")
        parser.add_argument("--output", help="file to write, its manifest beside it (default: stdout)")
        parser.add_argument("--manifest", help="where to write the manifest when the export goes to stdout")

    def handle(self, *args, since=None, until=None, format="csv", output=None, manifest=None, **options):
        filters = {k: v for k, v in {"since": parse_when(since), "until": parse_when(until)}.items() if v}
        export = exports.plan(filters, format)
        export_recorded(
            actor_label="manage.py export_audit",
            kind="audit_export",
            fmt=format,
            filters=export.filters,
            through_seq=export.through_seq,
        )
        if output:
            written = write_export(export, Path(output))
            self.stderr.write(f"wrote {output} ({export.manifest['count']} events) and {written}")
            return
        for chunk in export.stream():
            sys.stdout.buffer.write(chunk.encode() if isinstance(chunk, str) else chunk)
        sys.stdout.buffer.flush()
        if manifest:
            Path(manifest).write_text(export.manifest_json(), encoding="utf-8")
        else:
            self.stderr.write("note: no manifest written (use --output, or --manifest with stdout)")
