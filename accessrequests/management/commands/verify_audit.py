"""manage.py verify_audit: the audit chain from genesis, against its signed checkpoints and (with a bucket) the S3
archive; exits 1 naming the first sequence number that is missing, changed or out of order."""

from django.core.management.base import BaseCommand, CommandError

from accessrequests.audit.integrity import verify_trail
from accessrequests.core.wording import counted


class Command(BaseCommand):
    help = (
        "Verify the audit trail: every event from genesis, the signed checkpoints and the S3 archive; "
        "exits 1 naming the first broken sequence number."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--no-s3",
            action="store_true",
            help="only the local checkpoints, even when a bucket is configured",
        )

    def handle(self, *args, no_s3=False, **options):
        report = verify_trail(include_s3=not no_s3, all_signatures=True)
        for note in report.notes:
            self.stderr.write(self.style.WARNING(f"note: {note}"))
        first = report.first
        if first is not None:
            others = [f for f in report.findings if f is not first]
            detail = "".join(f"\n  also {f}" for f in others)
            raise CommandError(f"audit trail broken at {first}{detail}")
        newest = report.newest_checkpoint
        anchored = (
            f"; {counted(report.checkpoints, 'checkpoint')} ({counted(report.signatures_checked, 'signature')} checked), the newest "
            f"at seq {newest['seq']} written {newest['created_at']}"
            if newest
            else ""
        )
        archive = (
            f"; {counted(report.archived_events, 'event')} in {counted(report.archive_objects, 'archive object')} match"
            if report.archive_objects
            else ""
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"audit trail intact: {counted(report.events, 'event')} verified (seq 1-{report.last_seq}){anchored}{archive}"
            )
        )
