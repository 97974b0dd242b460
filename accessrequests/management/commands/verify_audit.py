"""manage.py verify_audit: walk the audit chain and exit non-zero naming the first broken row."""

from django.core.management.base import BaseCommand, CommandError

from accessrequests.audit import verify_database
from accessrequests.models import AuditEvent


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exits 1 naming the first broken event."

    def handle(self, *args, **options):
        count = AuditEvent.objects.count()
        verdict = verify_database()
        if not verdict.ok:
            raise CommandError(f"audit chain broken at event #{verdict.broken_id}: {verdict.reason}")
        self.stdout.write(self.style.SUCCESS(f"audit chain intact: {count} events verified"))
