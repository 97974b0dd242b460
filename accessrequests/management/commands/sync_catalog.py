"""manage.py sync_catalog: read accounts, pipelines, roles, principals and Identity Center from AWS now.

The same work the periodic task does every 15 minutes; useful after adding an account or a pipeline.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accessrequests.services.catalog import catalog_sync, summary_lines


class Command(BaseCommand):
    help = "Sync the AWS catalog into the database; exits 1 when part of AWS could not be read."

    def handle(self, *args: Any, **options: Any) -> None:
        result = catalog_sync()
        self.stdout.write(f"regions: {', '.join(result['regions'])}")
        for line in summary_lines(result):
            self.stdout.write(line)
        if result["errors"]:
            # What was read is saved; the listings that failed left their rows untouched.
            for error in result["errors"]:
                self.stderr.write(f"not read: {error}")
            raise CommandError(f"catalog partly synced: {len(result['errors'])} listing(s) could not be read")
        self.stdout.write(self.style.SUCCESS("catalog synced"))
