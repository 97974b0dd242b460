"""manage.py sync_catalog: read accounts, pipelines, roles, principals and Identity Center from AWS now.

The same work the periodic task does every 15 minutes (which is ``--incremental``); useful after adding an account
or a pipeline. Without ``--incremental`` every enabled account is listed again; ``--read-all`` also reads every
pipeline in full, not only those ``ListPipelines`` shows changed.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accessrequests.catalog.listings import summary_lines
from accessrequests.catalog.sync import FULL, INCREMENTAL, catalog_sync
from accessrequests.core.wording import counted
from accessrequests.models import CatalogSyncRun


class Command(BaseCommand):
    help = "Sync the AWS catalog into the database; exits 1 when part of AWS could not be read."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--incremental",
            action="store_true",
            help="List only accounts that changed in Organizations, are new, failed last time or are due.",
        )
        parser.add_argument(
            "--resume",
            action="store_true",
            help="Resume an unfinished sync now (its process is gone) instead of waiting for it to go stale.",
        )
        parser.add_argument(
            "--read-all",
            action="store_true",
            help="Read every pipeline in full (GetPipeline, tags), also those ListPipelines shows unchanged.",
        )
        parser.add_argument("--progress", action="store_true", help="Print progress every 100 accounts.")

    def handle(self, *args: Any, **options: Any) -> None:
        shown = [-1]  # the hundreds of accounts last reported (accounts are written in batches)

        def progress(run: CatalogSyncRun) -> None:
            if options["progress"] and (
                run.accounts_done // 100 != shown[0] or run.accounts_done == run.accounts_total
            ):
                shown[0] = run.accounts_done // 100
                self.stdout.write(f"{run.progress}", ending="\n")

        result = catalog_sync(
            mode=INCREMENTAL if options["incremental"] else FULL,
            resume=options["resume"],
            progress=progress,
            read_all=options["read_all"],
        )
        if result.get("skipped"):
            raise CommandError(f"not synced: {result['skipped']} (--resume if its process is gone)")
        self.stdout.write(f"regions: {', '.join(result['regions'])}")
        for line in summary_lines(result):
            self.stdout.write(line)
        if result["errors"]:
            # What was read is saved; the listings that failed left their rows untouched.
            for error in result["errors"]:
                self.stderr.write(f"not read: {error}")
            raise CommandError(
                f"catalog partly synced: {counted(len(result['errors']), 'listing')} could not be read"
            )
        self.stdout.write(self.style.SUCCESS("catalog synced"))
