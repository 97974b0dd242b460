"""manage.py rules validate|plan|apply FILE, rules export, rules schema: approval and eligibility rules as code.

``plan`` says each rule's change and, account by account, which requests another rule would route (moves to
fewer approvals called out). ``validate`` is for CI in the repository that holds the rules file: it exits 1 and
prints every problem with its path (``rules[2].approvals: -1 is less than the minimum of 1``); ``--no-database``
checks only what needs no database (syntax, schema, duplicate names).

``apply`` writes the rules only where they are the file's (GATEHOUSE_RULES_FILE set: beat and the workers apply it
too). Anywhere else a shell is no authority over who approves: ``apply`` proposes the changes, naming the
operating-system user and host that ran it (and ``--as`` an admin), and another admin approves them in the admin.
"""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from accessrequests.authz.permissions import NotAllowed
from accessrequests.core.wording import counted
from accessrequests.governance import rule_changes as rules_service
from accessrequests.governance import rules_file as governance


def command_runner() -> str:
    """Who runs this command: the operating-system user and the host."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for the uid (some containers)
        user = "unknown user"
    return f"{user}@{socket.gethostname()}"


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
        apply = sub.add_parser(
            "apply",
            help="propose the file's changes for a second admin (with GATEHOUSE_RULES_FILE set: apply them at once)",
        )
        apply.add_argument("file")
        apply.add_argument(
            "--as",
            dest="as_username",
            metavar="USERNAME",
            help="the Gatehouse admin proposing the changes (that admin then cannot approve them)",
        )
        export = sub.add_parser("export", help="write the rules in force as a rules file")
        export.add_argument("--output", "-o", help="write to this file instead of standard output")
        sub.add_parser("schema", help="print the JSON Schema of the rules file")

    def handle(self, *args, action: str, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except governance.RulesFileError as exc:
            for error in exc.errors:
                self.stderr.write(f"{options.get('file')}: {error}")
            raise CommandError(
                f"{options.get('file')}: {counted(len(exc.errors), 'problem')}; nothing was changed"
            ) from None
        except (rules_service.RuleChangeError, NotAllowed) as exc:
            raise CommandError(
                f"{options.get('file')}: {str(exc).rstrip('.')}; nothing was changed"
            ) from None

    def _validate(self, *, file: str, no_database: bool = False, **options) -> None:
        text = governance.read(file)
        catalog = None if no_database else governance.Catalog.load()
        document = governance.validate(text, catalog=catalog)
        rules, eligibility = len(document.get("rules") or []), len(document.get("eligibility") or [])
        checked = "schema" if no_database else "schema and catalog"
        self.stdout.write(
            self.style.SUCCESS(
                f"{file}: valid ({checked}): {counted(rules, 'approval rule')}, {counted(eligibility, 'eligibility rule')}"
            )
        )

    def _plan(self, *, file: str, **options) -> None:
        result = rules_service.rules_plan(governance.read(file))
        if not result.changes:
            self.stdout.write(f"No changes: the rules in force match {file}.")
            return
        for change in result.changes:
            self.stdout.write(f"  {change.sentence()}")
        self.stdout.write(f"{counted(len(result.changes), 'change')} to apply.")
        assert result.routing is not None
        for line in result.routing.lines():
            self.stdout.write(line)

    def _apply(self, *, file: str, as_username: str | None = None, **options) -> None:
        if not settings.GATEHOUSE_RULES_FILE:
            self._propose(file=file, as_username=as_username)
            return
        result = rules_service.rules_apply(text=governance.read(file), source=Path(file).name)
        for change in result.changes:
            self.stdout.write(f"  {change.sentence()}")
        if result.changes:
            self.stdout.write(self.style.SUCCESS(f"Applied {counted(len(result.changes), 'change')}."))
        else:
            self.stdout.write(f"No changes: the rules in force match {file}.")

    def _propose(self, *, file: str, as_username: str | None) -> None:
        as_user = None
        if as_username:
            as_user = get_user_model().objects.filter(username=as_username).first()
            if as_user is None:
                raise CommandError(
                    f"--as {as_username}: no Gatehouse user has that name; nothing was changed"
                )
        result, proposals = rules_service.rules_propose(
            text=governance.read(file),
            source=Path(file).name,
            proposer_label=command_runner(),
            as_user=as_user,
        )
        if not proposals:
            self.stdout.write(f"No changes: the rules in force match {file}.")
            return
        for change in result.changes:
            self.stdout.write(f"  {change.sentence()}")
        proposer = proposals[0].proposer
        url = settings.SITE_URL + reverse("admin:accessrequests_rulechange_changelist")
        query = f"?change_set={proposals[0].change_set}"
        self.stdout.write(
            self.style.WARNING(
                f"Proposed {len(proposals)} change{'s' if len(proposals) != 1 else ''} (by {proposer}); nothing is "
                "applied yet."
            )
        )
        self.stdout.write(
            f"Another Gatehouse admin approves {'them' if len(proposals) != 1 else 'it'} in the admin, one by one "
            f"or all at once: {url}{query}"
        )

    def _export(self, *, output: str | None = None, **options) -> None:
        text = governance.dump(governance.export_document())
        if output:
            Path(output).write_text(text, encoding="utf-8")
            self.stderr.write(f"wrote {output}")
        else:
            self.stdout.write(text, ending="")

    def _schema(self, **options) -> None:
        self.stdout.write(json.dumps(governance.schema(), indent=2))
