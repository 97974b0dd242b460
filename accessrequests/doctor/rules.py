"""Check of the rules file (GATEHOUSE_RULES_FILE): valid against the schema and the catalog, and in force."""

from __future__ import annotations

from django.conf import settings

from accessrequests.core.wording import counted
from accessrequests.governance import rules_file as governance

from .registry import Context, Result, check, fail, ok, warn

SHOWN = 3


@check(
    "rules.file",
    "the rules file, when GATEHOUSE_RULES_FILE names one, is valid and is what is in force",
    needs=("database.migrations",),
)
def rules_file(ctx: Context) -> Result:
    path = settings.GATEHOUSE_RULES_FILE
    if not path:
        return ok("no rules file: approval and eligibility rules are kept in the admin")
    try:
        catalog = governance.Catalog.load()
        document = governance.validate(governance.read(path), catalog=catalog)
    except governance.RulesFileError as exc:
        shown = "; ".join(exc.errors[:SHOWN]) + ("; …" if len(exc.errors) > SHOWN else "")
        return fail(
            f"{path}: {counted(len(exc.errors), 'problem')}: {shown}",
            fix=f"correct the file (python manage.py rules validate {path} lists every problem with its place); "
            "until then the rules in force stay as they are",
            problems=exc.errors,
        )
    changes = governance.plan(
        governance.RuleSet.from_database(catalog), governance.RuleSet.from_document(document, catalog)
    )
    rules = counted(len(document.get("rules") or []), "approval rule")
    if changes:
        return warn(
            f"{path} is valid ({rules}) but not in force: {counted(len(changes), 'change')} to apply, e.g. "
            f"{changes[0].sentence()}",
            fix="beat applies the file every GATEHOUSE_RULES_FILE_MINUTES and each worker at its start: check that "
            'beat runs, and the worker\'s log for "rules file … not applied"',
            changes=[c.sentence() for c in changes],
        )
    return ok(f"{path}: valid, {rules}, in force")
