"""manage.py doctor: check that this deployment is sound, end to end, and say how to fix what is not.

Human output by default; ``--json`` for monitoring (``--schema`` prints its JSON Schema). Exit status 1 when any
check fails, 0 otherwise (warnings included). Nothing is changed. The checks live in ``accessrequests.doctor``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accessrequests import doctor
from accessrequests.doctor import report


class Command(BaseCommand):
    help = (
        "Check the deployment: database, settings, broker and worker, beat, AWS as the hub sees it, the audit "
        "bucket and trail, the rules file. Exits 1 when a check fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print the report as JSON (see --schema)")
        parser.add_argument("--schema", action="store_true", help="print the JSON Schema of --json and exit")
        parser.add_argument(
            "--only",
            action="append",
            default=[],
            metavar="NAME",
            help="run only this check or group (e.g. aws, audit.bucket) and what it needs; repeatable",
        )
        parser.add_argument(
            "--accounts",
            type=int,
            default=25,
            metavar="N",
            help="assume the provisioning role in at most N managed accounts, chosen at random (0: all; default 25)",
        )
        parser.add_argument(
            "--timeout",
            type=float,
            default=2.0,
            metavar="SECONDS",
            help="how long the broker, the workers, SMTP, Slack and the OpenID Provider get to answer (default 2)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["schema"]:
            self.stdout.write(json.dumps(report.schema(), indent=2))
            return
        if options["accounts"] < 0 or options["timeout"] <= 0:
            raise CommandError("--accounts must be 0 or more, and --timeout more than 0.")
        try:
            checks = doctor.select(options["only"])
        except doctor.UnknownCheck as exc:
            raise CommandError(str(exc)) from None
        context = doctor.Context(account_limit=options["accounts"], timeout=options["timeout"])
        result = doctor.run(checks, context)
        if not options["only"]:
            report.remember(result)  # /healthz shows the newest full run
        self.stdout.write(report.as_json(result) if options["json"] else report.as_text(result))
        if result.status == "fail":
            sys.exit(1)
