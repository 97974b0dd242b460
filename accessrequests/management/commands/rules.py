"""manage.py rules validate|plan|apply FILE, rules export, rules schema: approval and eligibility rules as code.

``validate`` is for CI in the repository that holds the rules file: it exits 1 and prints every problem with its
path (``rules[2].approvals: -1 is less than the minimum of 1``); ``--no-database`` checks only what needs no
database (syntax, schema, duplicate names).
"""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from accessrequests import governance
from accessrequests.services import governance as rules_service


class Command(BaseCommand):
    help = "Rules as code: validate, plan or apply a rules file (YAML), or export the rules in force."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(
            dest="action", required=True, metavar="{validate,plan,apply,export,schema}"
        )
        validate = sub.add_parser("validate", help="check a rules file; exits 1 listing every problem")
        validate.add_argument("file")
        validate.add_argument(
            "--no-database",
            action="store_true",
            help="only syntax, schema and duplicate names (no check that accounts, groups, … exist)",
        )
        plan = sub.add_parser("plan", help="what applying the file would change, in words")
        plan.add_argument("file")
        apply = sub.add_parser("apply", help="make the rules what the file says, in one transaction")
        apply.add_argument("file")
        export = sub.add_parser("export", help="write the rules in force as a rules file")
        export.add_argument("--output", "-o", help="write to this file instead of standard output")
        sub.add_parser("schema", help="print the JSON Schema of the rules file")

    def handle(self, *args, action: str, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except governance.RulesFileError as exc:
            for error in exc.errors:
                self.stderr.write(f"{options.get('file')}: {error}")
            noun = "problem" if len(exc.errors) == 1 else "problems"
            raise CommandError(
                f"{options.get('file')}: {len(exc.errors)} {noun}; nothing was changed"
            ) from None
        except rules_service.RuleChangeError as exc:
            raise CommandError(f"{options.get('file')}: {exc}; nothing was changed") from None

    def _validate(self, *, file: str, no_database: bool = False, **options) -> None:
        text = governance.read(file)
        catalog = None if no_database else governance.Catalog.load()
        document = governance.validate(text, catalog=catalog)
        rules, eligibility = len(document.get("rules") or []), len(document.get("eligibility") or [])
        checked = "schema" if no_database else "schema and catalog"
        self.stdout.write(
            self.style.SUCCESS(
                f"{file}: valid ({checked}): {rules} approval rules, {eligibility} eligibility rules"
            )
        )

    def _plan(self, *, file: str, **options) -> None:
        result = rules_service.rules_plan(governance.read(file))
        if not result.changes:
            self.stdout.write(f"No changes: the rules in force match {file}.")
            return
        for change in result.changes:
            self.stdout.write(f"  {change.sentence()}")
        self.stdout.write(f"{len(result.changes)} change{'s' if len(result.changes) != 1 else ''} to apply.")

    def _apply(self, *, file: str, **options) -> None:
        result = rules_service.rules_apply(text=governance.read(file), source=Path(file).name)
        for change in result.changes:
            self.stdout.write(f"  {change.sentence()}")
        if result.changes:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Applied {len(result.changes)} change{'s' if len(result.changes) != 1 else ''}."
                )
            )
        else:
            self.stdout.write(f"No changes: the rules in force match {file}.")

    def _export(self, *, output: str | None = None, **options) -> None:
        text = governance.dump(governance.export_document())
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")

    def _schema(self, **options) -> None:
        self.stdout.write(json.dumps(governance.schema(), indent=2))
