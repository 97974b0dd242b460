"""manage.py seed_scale: the scale world for benchmarks (an organization of thousands of accounts, a million
requests).

1. the Organization on the moto server at ``AWS_ENDPOINT_URL`` (units, accounts with roles and pipelines,
   Identity Center users, groups and permission sets): ``accessrequests.devworld.scale_world.seed_aws``;
2. a full catalog sync of it (skipped with ``--no-sync``);
3. portal users linked to the Identity Center users, approvers and two rules, then historical requests up to
   ``--requests`` (PostgreSQL only; ``COPY``).

Every step finds what exists and adds only what is missing, so running it again is quick and changes nothing.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from accessrequests.catalog.listings import summary_lines
from accessrequests.catalog.sync import FULL, catalog_sync
from accessrequests.devworld import scale_history, scale_world


class Command(BaseCommand):
    help = "Seed the scale world on a moto server and N historical requests in the database."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--accounts", type=int, default=3000)
        parser.add_argument("--pipelines-per-account", type=int, default=20)
        parser.add_argument("--requests", type=int, default=1_000_000)
        parser.add_argument("--concurrency", type=int, default=8, help="AWS clients at once while seeding.")
        parser.add_argument("--ic-users", type=int, default=300)
        parser.add_argument("--no-sync", action="store_true", help="Do not run the catalog sync afterwards.")
        parser.add_argument("--skip-aws", action="store_true", help="Only the database half.")

    def handle(self, *args: Any, **options: Any) -> None:
        def log(line: str) -> None:
            self.stdout.write(line)
            self.stdout.flush()

        try:
            if not options["skip_aws"]:
                seeded = scale_world.seed_aws(
                    accounts=options["accounts"],
                    pipelines_per_account=options["pipelines_per_account"],
                    ic_users=options["ic_users"],
                    concurrency=options["concurrency"],
                    log=log,
                )
                log(f"aws: {seeded}")
            if not options["no_sync"]:
                started = time.perf_counter()
                result = catalog_sync(mode=FULL)
                for line in summary_lines(result):
                    log(line)
                log(f"catalog sync (full): {time.perf_counter() - started:.1f}s")
            if options["requests"]:
                scale_history.seed_people(requesters=options["ic_users"], log=log)
                scale_history.seed_requests(total=options["requests"], log=log)
        except RuntimeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS("scale world ready"))
