"""manage.py verify_audit: walk the audit chain and exit non-zero naming the first broken row."""

from django.core.management.base import BaseCommand, CommandError

from accessrequests.audit import iter_canonical, verify_chain
from accessrequests.models import AuditEvent


class Command(BaseCommand):
    help = "Verify the audit trail's hash chain; exits 1 naming the first broken event."

    def handle(self, *args, **options):
        count = AuditEvent.objects.count()
        broken = verify_chain(iter_canonical())
        if broken is not None:
            raise CommandError(f"audit chain broken at event #{broken.event_id}: {broken.reason}")
        self.stdout.write(self.style.SUCCESS(f"audit chain intact: {count} events verified"))
