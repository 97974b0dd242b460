"""manage.py export_audit --since 2026-01-01 --until 2026-04-01 --format csv > audit.csv"""

import sys
from datetime import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accessrequests import audit, exports, selectors


def _when(value: str | None):
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"{value!r} is not a date or time (use ISO 8601, e.g. 2026-03-01 or 2026-03-01T12:00)"
        ) from None
    return parsed if parsed.tzinfo else timezone.make_aware(parsed, timezone.get_default_timezone())


class Command(BaseCommand):
    help = "Stream audit events as CSV or JSON Lines (with chain hashes) to stdout or a file."

    def add_arguments(self, parser):
        parser.add_argument("--since", help="ISO date/time, inclusive")
        parser.add_argument("--until", help="ISO date/time, exclusive")
        parser.add_argument("--format", choices=sorted(exports.FORMATS), default="csv")
        parser.add_argument("--output", help="file to write (default: stdout)")

    def handle(self, *args, since=None, until=None, format="csv", output=None, **options):
        qs = selectors.audit_events(since=_when(since), until=_when(until))
        audit.record(
            action="audit.exported",
            object_type="audit_export",
            actor_label="manage.py export_audit",
            after={"format": format, "filters": {"since": since, "until": until}},
        )
        out = open(output, "wb") if output else sys.stdout.buffer  # noqa: SIM115
        try:
            for chunk in exports.stream(qs, format):
                out.write(chunk.encode() if isinstance(chunk, str) else chunk)
        finally:
            if output:
                out.close()
