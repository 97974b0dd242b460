"""Rules as code: `manage.py rules validate|plan|apply|export` on a YAML file with a JSON Schema."""

from __future__ import annotations

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accessrequests.governance import rules_file as governance
from accessrequests.governance.rule_changes import rules_apply_configured_file
from accessrequests.models import ApprovalRule, AuditEvent, EligibilityRule, RuleTarget
from tests.factories import ACCOUNT_ID
from tests.rules_support import EXAMPLE, PRODUCTION_ID, ROOT, Org

pytestmark = pytest.mark.django_db


@pytest.fixture
def org(settings, tmp_path):
    # These tests are about the rules as the file's (GATEHOUSE_RULES_FILE set): `rules apply` writes them at once.
    # Without the setting it only proposes them (tests/test_rules_proposed.py).
    settings.GATEHOUSE_RULES_FILE = str(tmp_path / "configured-rules.yaml")
    return Org()


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("rules", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def refused(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("rules", *args, stdout=out, stderr=err)
    return err.getvalue(), str(caught.value)


def write(tmp_path, document, name: str = "rules.yaml"):
    path = tmp_path / name
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document, sort_keys=False))
    return str(path)


def exported(tmp_path) -> dict:
    path = tmp_path / "exported.yaml"
    run("export", "--output", str(path))
    return yaml.safe_load(path.read_text())


def rule(name: str = "Sandbox pipelines", **fields) -> dict:
    return {"name": name, "accounts": [ACCOUNT_ID], "approver_groups": ["approvers"], **fields}


SCHEMA_ERRORS = [
    (
        [rule("a"), rule("b"), rule("c", approvals=-1)],
        "rules[2].approvals: -1 is less than the minimum of 1",
    ),
    ([rule(approvals=6)], "rules[0].approvals: 6 is greater than the maximum of 5"),
    ([rule(max_duration_hours=0)], "rules[0].max_duration_hours: 0 is less than the minimum of 1"),
    (
        [rule(kinds=["pipeline", "everything"])],
        "rules[0].kinds[1]: 'everything' is not one of ['pipeline', 'pass_role', 'permission_set', 'cross_account']",
    ),
    ([rule(accounts=["12345"])], "rules[0].accounts[0]: '12345' is not a 12-digit account id"),
    (
        [rule(accounts=[123456789012])],
        "rules[0].accounts[0]: 123456789012 is not of type 'string' (quote account ids: '123456789012')",
    ),
    ([rule(approvers=["x"])], "rules[0]: Additional properties are not allowed ('approvers' was unexpected)"),
    ([{"approvals": 1}], "rules[0]: 'name' is a required property"),
    ([rule(enabled="yes please")], "rules[0].enabled: 'yes please' is not of type 'boolean'"),
    ([rule(chat_approval="always")], "rules[0].chat_approval: 'always' is not one of ['off', 'low_risk']"),
    ([rule(break_glass_kinds=[])], "rules[0].break_glass_kinds: [] should be non-empty"),
    (
        [rule(break_glass_kinds=["pipeline", "root"])],
        "rules[0].break_glass_kinds[1]: 'root' is not one of ['pipeline', 'pass_role', 'permission_set', 'cross_account']",
    ),
    (
        [rule(environments=["prod"])],
        "rules[0].environments[0]: 'prod' is not one of ['production', 'staging', 'development', 'sandbox']",
    ),
    (
        [rule(environments=["unknown"])],  # a rule never covers an account by its unknown environment
        "rules[0].environments[0]: 'unknown' is not one of ['production', 'staging', 'development', 'sandbox']",
    ),
    (
        [rule(account_tags={"team": "payments"})],
        "rules[0].account_tags.team: 'payments' is not of type 'array' (list the values a tag may have: "
        "[payments])",
    ),
    ([rule(account_tags={"team": []})], "rules[0].account_tags.team: [] should be non-empty"),
    ([rule(account_tags=["team"])], "rules[0].account_tags: ['team'] is not of type 'object'"),
    ([rule(units=[""])], "rules[0].units[0]: '' should be non-empty"),
]


@pytest.mark.parametrize(("rules", "message"), SCHEMA_ERRORS)
def test_validate_names_each_schema_error_with_its_path(org, tmp_path, rules, message):
    path = write(tmp_path, {"version": 1, "rules": rules})
    err, summary = refused("validate", path)
    assert f"{path}: {message}" in err.splitlines()
    assert "nothing was changed" in summary


def test_validate_lists_every_problem_at_once_in_file_order(org, tmp_path):
    path = write(tmp_path, {"rules": [rule(approvals=0), rule("x", levels=["root"])], "extra": True})
    err, summary = refused("validate", path)
    lines = [line.removeprefix(f"{path}: ") for line in err.splitlines()]
    assert lines == [
        "(top level): Additional properties are not allowed ('extra' was unexpected)",
        "(top level): 'version' is a required property",
        "rules[0].approvals: 0 is less than the minimum of 1",
        "rules[1].levels[0]: 'root' is not one of ['viewer', 'operator', 'editor', 'custom']",
    ]
    assert summary.endswith("4 problems; nothing was changed")


def test_validate_names_what_the_catalog_does_not_have(org, tmp_path):
    document = {
        "version": 1,
        "rules": [
            rule(accounts=["999999999999"], approver_groups=["nobody-group"], approver_users=["ghost"]),
            rule("Sandbox pipelines"),
            rule("Elsewhere", accounts=[PRODUCTION_ID], pipelines=[org.pipeline.arn]),
        ],
        "eligibility": [
            {"name": "Admins", "permission_sets": ["PowerUserAccess"], "groups": ["sre"]},
            {
                "name": "Sets",
                "permission_sets": ["AdministratorAccess"],
                "kinds": ["pipeline"],
                "groups": ["sre"],
            },
        ],
    }
    err, _ = refused("validate", write(tmp_path, document))
    problems = [line.split(": ", 1)[1] for line in err.splitlines()]
    assert problems == [
        "rules[1].name: duplicate name 'Sandbox pipelines' (also rules[0])",
        "rules[0].accounts[0]: unknown account '999999999999'",
        "rules[0].approver_groups[0]: unknown group 'nobody-group'",
        "rules[0].approver_users[0]: unknown user 'ghost'",
        f"rules[2].pipelines[0]: pipeline '{org.pipeline.arn}' is in account {ACCOUNT_ID}, which this rule's "
        "accounts leave out, so the rule could never route it",
        "eligibility[0].permission_sets[0]: unknown permission set 'PowerUserAccess'",
        "eligibility[1].permission_sets: its kinds leave out permission_set, so it could never apply",
    ]


def test_validate_reports_schema_and_catalog_errors_in_one_run(org, tmp_path):
    document = {
        "version": 1,
        "rules": [
            rule("Broken", approvals=0, approver_groups=["also-unknown"]),
            rule("Sandbox pipelines", approver_groups=["nobody-group"]),
            rule("Sandbox pipelines"),
        ],
        "eligibility": [{"name": "Sets", "permission_sets": ["PowerUserAccess"], "groups": ["sre"]}],
    }
    path = write(tmp_path, document)
    err, summary = refused("validate", path)
    assert [line.removeprefix(f"{path}: ") for line in err.splitlines()] == [
        "rules[0].approvals: 0 is less than the minimum of 1",
        "rules[2].name: duplicate name 'Sandbox pipelines' (also rules[1])",
        "rules[1].approver_groups[0]: unknown group 'nobody-group'",
        "eligibility[0].permission_sets[0]: unknown permission set 'PowerUserAccess'",
    ]  # the malformed rules[0] is judged by the schema alone: its unknown group is not guessed at
    assert summary.endswith("4 problems; nothing was changed")
    # Without a database (CI): the schema's errors and the duplicate names together.
    with pytest.raises(governance.RulesFileError) as caught:
        governance.validate(Path(path).read_text(), catalog=None)
    assert caught.value.errors == [
        "rules[0].approvals: 0 is less than the minimum of 1",
        "rules[2].name: duplicate name 'Sandbox pipelines' (also rules[1])",
    ]


def test_validate_refuses_broken_yaml_and_duplicate_keys_with_the_line(org, tmp_path):
    err, _ = refused("validate", write(tmp_path, "version: 1\nrules:\n  - name: a\n    name: b\n"))
    assert "line 4, column 5: not valid YAML: duplicate key 'name'" in err
    err, _ = refused("validate", write(tmp_path, "version: 1\nrules: [\n"))
    assert "not valid YAML" in err and "line 3" in err
    err, _ = refused("validate", str(tmp_path / "missing.yaml"))
    assert "cannot read" in err
    err, _ = refused("validate", write(tmp_path, "# nothing yet\n"))
    assert "the file is empty" in err
    err, _ = refused("validate", write(tmp_path, "- just\n- a list\n"))
    assert "(top level): ['just', 'a list'] is not of type 'object'" in err


def test_validate_in_ci_exits_non_zero_without_a_database(tmp_path):
    bad = write(tmp_path, {"version": 1, "rules": [rule(approvals=-1)]})
    good = write(tmp_path, {"version": 1, "rules": [rule()]}, "good.yaml")
    cmd = [sys.executable, "manage.py", "rules", "validate", "--no-database"]
    env = {**os.environ, "DEBUG": "1", "DATABASE_URL": "sqlite:////nonexistent/dir/db.sqlite3"}
    failed = subprocess.run([*cmd, bad], cwd=ROOT, env=env, capture_output=True, text=True)
    assert failed.returncode == 1
    assert f"{bad}: rules[0].approvals: -1 is less than the minimum of 1" in failed.stderr
    assert "Traceback" not in failed.stderr
    passed = subprocess.run([*cmd, good], cwd=ROOT, env=env, capture_output=True, text=True)
    assert passed.returncode == 0, passed.stderr
    assert "valid (schema)" in passed.stdout


def test_the_documented_example_file_is_valid(org, tmp_path):
    governance.validate(EXAMPLE.read_text(), catalog=None)
    out, _ = run("validate", str(EXAMPLE))
    assert "valid (schema and catalog): 3 approval rules, 2 eligibility rules" in out
    run("apply", str(EXAMPLE))
    out, _ = run("plan", str(EXAMPLE))
    assert out.startswith("No changes")


def test_plan_says_the_change_in_words_and_changes_nothing(org, tmp_path):
    document = exported(tmp_path)
    document["rules"][0]["approvals"] = 2
    document["rules"][0]["approver_groups"] = ["approvers", "sre"]
    document["rules"][0]["accounts"] = [ACCOUNT_ID, PRODUCTION_ID]
    document["rules"].append(rule("Production pipelines", accounts=[PRODUCTION_ID], approvals=2))
    document["eligibility"] = [
        {"name": "Administrator access", "permission_sets": ["AdministratorAccess"], "groups": ["sre"]}
    ]
    before = AuditEvent.objects.count()
    out, _ = run("plan", write(tmp_path, document))
    assert out.splitlines() == [
        f"  rule 'Sandbox pipelines': approvals 1 → 2; adds account '{PRODUCTION_ID}'; adds group 'sre'",
        f"  rule 'Production pipelines': added: 2 approvals from group 'approvers', at most 8 hours, on "
        f"{PRODUCTION_ID}, for any kind",
        "  eligibility rule 'Administrator access': added: only group 'sre' may request permission sets "
        "AdministratorAccess on any account",
        "3 changes to apply.",
        "Routing: 1 account moves to another rule.",
        "Moves (1 account):",
        f"  {PRODUCTION_ID} production: no rule (refused) → Production pipelines (2 approvals) for pipeline "
        "access, PassRole, standard permission sets, cross-account access",
    ]
    assert org.rule.approvals_required == ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 1
    assert AuditEvent.objects.count() == before


def test_what_break_glass_may_give_is_in_the_file_pipeline_only_unless_it_names_more(org, tmp_path):
    document = exported(tmp_path)
    assert document["rules"][0]["break_glass_kinds"] == ["pipeline"]  # every rule says it, the default too
    document["rules"][0]["break_glass_kinds"] = ["cross_account", "pipeline"]
    document["rules"].append(rule("Leaves it out", accounts=[PRODUCTION_ID]))
    path = write(tmp_path, document)
    out, _ = run("plan", path)
    assert "  rule 'Sandbox pipelines': adds break-glass kind 'cross_account'" in out.splitlines()
    run("apply", path)
    assert ApprovalRule.objects.get(pk=org.rule.pk).break_glass_kinds == ["pipeline", "cross_account"]
    assert ApprovalRule.objects.get(name="Leaves it out").break_glass_kinds == ["pipeline"]
    event = AuditEvent.objects.get(action="approvalrule.changed")
    assert (event.before["break_glass_kinds"], event.after["break_glass_kinds"]) == (
        ["pipeline"], ["pipeline", "cross_account"],
    )  # fmt: skip
    out, _ = run("plan", path)
    assert out.startswith("No changes")


def test_plan_says_when_a_scope_widens_to_any(org, tmp_path):
    document = exported(tmp_path)
    document["rules"][0]["accounts"] = []
    document["rules"][0]["kinds"] = ["pipeline"]
    out, _ = run("plan", write(tmp_path, document))
    assert f"rule 'Sandbox pipelines': accounts {ACCOUNT_ID} → any account; kinds any kind → pipeline" in out


def test_apply_makes_the_change_and_audits_it_with_before_and_after(org, tmp_path):
    document = exported(tmp_path)
    document["rules"][0].update(approvals=2, approver_groups=["approvers", "sre"], auto_approve_low_risk=True)
    document["eligibility"] = [
        {"name": "Administrator access", "permission_sets": ["AdministratorAccess"], "groups": ["sre"]}
    ]
    path = write(tmp_path, document)
    out, _ = run("apply", path)
    assert "Applied 2 changes." in out
    changed = ApprovalRule.objects.get(pk=org.rule.pk)
    assert changed.approvals_required == 2 and changed.auto_approve_low_risk
    assert sorted(g.name for g in changed.approver_groups.all()) == ["approvers", "sre"]
    eligibility = EligibilityRule.objects.get(name="Administrator access")
    assert list(eligibility.permission_sets.all()) == [org.admin_set]
    event = AuditEvent.objects.get(action="approvalrule.changed")
    assert event.actor_label == "rules-file:rules.yaml"
    assert event.before["approvals"] == 1 and event.after["approvals"] == 2
    assert event.after["change"] == (
        "rule 'Sandbox pipelines': approvals 1 → 2; adds group 'sre'; auto-approval of low-risk requests off → on"
    )
    assert AuditEvent.objects.filter(action="eligibilityrule.created").count() == 1
    applied = AuditEvent.objects.get(action="rules.applied")
    assert len(applied.after["sha256"]) == 64 and len(applied.after["changes"]) == 2
    # Applying the same file again changes and records nothing.
    events = AuditEvent.objects.count()
    out, _ = run("apply", path)
    assert out.startswith("No changes") and AuditEvent.objects.count() == events


def _state() -> list:
    return [governance.RuleSet.from_database().__dict__, AuditEvent.objects.count()]


def test_a_bad_file_changes_nothing(org, tmp_path):
    document = exported(tmp_path)
    document["rules"][0]["approvals"] = 3
    document["rules"].append(rule("New", approver_groups=["no-such-group"]))
    before = _state()
    err, summary = refused("apply", write(tmp_path, document))
    assert "rules[1].approver_groups[0]: unknown group 'no-such-group'" in err
    assert summary.endswith("1 problem; nothing was changed")
    assert _state() == before


def _refuse_inserts_of(name: str) -> None:
    """A database trigger that refuses to store a rule of this name: a failure in the middle of applying that no
    check before the writes can foresee (as a constraint or a lost connection would be)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "CREATE FUNCTION gatehouse_test_refuse() RETURNS trigger AS $$ BEGIN "
                f"IF NEW.name = '{name}' THEN RAISE EXCEPTION 'refused by the test trigger'; END IF; "
                "RETURN NEW; END $$ LANGUAGE plpgsql"
            )
            cursor.execute(
                "CREATE TRIGGER gatehouse_test_refuse BEFORE INSERT ON accessrequests_approvalrule "
                "FOR EACH ROW EXECUTE FUNCTION gatehouse_test_refuse()"
            )
        else:
            cursor.execute(
                "CREATE TRIGGER gatehouse_test_refuse BEFORE INSERT ON accessrequests_approvalrule "
                f"WHEN NEW.name = '{name}' BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
            )


def test_a_failure_in_the_middle_of_applying_changes_nothing(org, tmp_path):
    document = exported(tmp_path)
    document["rules"][0]["approvals"] = 3  # applied first ...
    document["rules"].append(rule("Boom"))  # ... then this insert fails
    document["eligibility"] = [{"name": "Later", "accounts": [PRODUCTION_ID], "groups": ["sre"]}]
    _refuse_inserts_of("Boom")
    before = _state()
    _, summary = refused("apply", write(tmp_path, document))
    assert "the database refused rule 'Boom'" in summary and "nothing was changed" in summary
    assert _state() == before
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 1


def test_export_round_trips_through_apply_with_no_change(org, tmp_path):
    extra = ApprovalRule.objects.create(
        name="Production", priority=5, approvals_required=2, max_duration_hours=4, kinds=["permission_set"],
        levels=[], allow_privileged_permission_sets=True, contact="platform@example.com", slack_channel="C0123ABC",
        chat_approval="low_risk", enabled=False,
    )  # fmt: skip
    extra.accounts.add(org.production)
    extra.pipelines.add(org.prod_pipeline)
    extra.approver_users.add(org.approver)
    extra.approver_groups.add(Group.objects.get(name="release-managers"))
    extra.break_glass_groups.add(Group.objects.get(name="sre"))
    extra.break_glass_users.add(org.approver2)
    extra.break_glass_max_hours = 2
    extra.break_glass_kinds = ["pass_role", "pipeline"]
    extra.save(update_fields=["break_glass_max_hours", "break_glass_kinds"])
    eligible = EligibilityRule.objects.create(
        name="Admins", description="admin sets", kinds=["permission_set"]
    )
    eligible.permission_sets.add(org.admin_set)
    eligible.accounts.add(org.production)
    eligible.groups.add(Group.objects.get(name="sre"))
    eligible.users.add(org.approver2)
    path = tmp_path / "exported.yaml"
    run("export", "--output", str(path))
    text = path.read_text()
    assert text.startswith("# Gatehouse rules")
    governance.validate(text, catalog=governance.Catalog.load())
    out, _ = run("plan", str(path))
    assert out.startswith("No changes"), out
    # Applied to an empty database of rules, the export brings them back exactly.
    before = governance.RuleSet.from_database()
    EligibilityRule.objects.all().delete()
    ApprovalRule.objects.filter(pk=extra.pk).delete()
    run("apply", str(path))
    assert governance.RuleSet.from_database() == before
    out, _ = run("plan", str(path))
    assert out.startswith("No changes")


def test_a_rule_left_out_is_deleted_or_when_requests_name_it_disabled_and_kept(org, tmp_path):
    unused = ApprovalRule.objects.create(name="Unused", priority=200)
    org.submit()  # a request names org.rule
    document = {"version": 1, "rules": [rule("Replacement")]}
    path = write(tmp_path, document)
    out, _ = run("plan", path)
    assert (
        "rule 'Sandbox pipelines': left out of the file: disabled and kept, because requests name it" in out
    )
    assert "rule 'Unused': removed" in out
    run("apply", path)
    assert not ApprovalRule.objects.filter(pk=unused.pk).exists()
    assert ApprovalRule.objects.get(pk=org.rule.pk).enabled is False
    out, _ = run("plan", path)
    assert out.startswith("No changes")


def test_the_configured_rules_file_is_applied_by_the_task_and_a_broken_one_changes_nothing(
    org, tmp_path, settings
):
    from accessrequests.tasks import apply_rules_file

    document = exported(tmp_path)
    document["rules"][0]["approvals"] = 2
    settings.GATEHOUSE_RULES_FILE = write(tmp_path, document)
    result = apply_rules_file.apply().get()
    assert result["applied"] and result["changes"] == ["rule 'Sandbox pipelines': approvals 1 → 2"]
    assert apply_rules_file.apply().get() == {"applied": True, "changes": [], "sha256": result["sha256"]}
    document["rules"][0]["approvals"] = 9
    write(tmp_path, document)
    broken = rules_apply_configured_file()
    assert broken["applied"] is False
    assert broken["errors"] == ["rules[0].approvals: 9 is greater than the maximum of 5"]
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 2


def test_the_schema_command_prints_the_schema_the_validator_uses(org):
    import json

    out, _ = run("schema")
    assert json.loads(out) == governance.schema()
    assert RuleTarget.APPROVAL_RULE == "approval_rule"


@pytest.mark.worker
def test_a_worker_applies_the_configured_rules_file_when_it_starts(worker_env, tmp_path):
    """A real worker process, started with GATEHOUSE_RULES_FILE: the rules are the file's without waiting for
    beat."""
    from portal.celery import app
    from tests.conftest import WorkerProcess, service_missing, wait_for

    conn = app.connection_for_write()
    try:
        conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        service_missing(f"the Celery broker ({exc})")
    finally:
        conn.release()
    app.control.purge()
    org = Org()
    document = exported(tmp_path)
    document["rules"][0]["approvals"] = 3
    worker = WorkerProcess(
        {**worker_env, "GATEHOUSE_RULES_FILE": write(tmp_path, document)}, name="rules"
    ).start()
    try:
        wait_for(
            lambda: ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 3,
            timeout=60,
            what="the worker to apply the rules file",
        )
    finally:
        worker.stop()
    assert AuditEvent.objects.get(action="rules.applied").actor_label.startswith("rules-file:")


# --- rules that follow the organization -------------------------------------------------------------------


def _units(org):
    from accessrequests.models import OrganizationalUnit

    root = OrganizationalUnit.objects.create(ou_id="r-ab12", name="Root", path="Root")
    org.workloads = OrganizationalUnit.objects.create(
        ou_id="ou-ab12-11111111", name="Workloads", path="Root / Workloads", parent=root
    )
    # Two units may share a path only when one of them left the organization; the file then names it by id.
    org.gone = OrganizationalUnit.objects.create(
        ou_id="ou-ab12-22222222", name="Old", path="Root / Old", parent=root, present=False
    )
    OrganizationalUnit.objects.create(ou_id="ou-ab12-33333333", name="Old", path="Root / Old", parent=root)
    org.production.ou = org.workloads
    org.production.save()


def test_validate_names_units_that_do_not_exist_or_are_ambiguous(org, tmp_path):
    _units(org)
    document = {
        "version": 1,
        "rules": [rule(units=["Root / Workloads", "ou-ab12-99999999", "Root / Nowhere", "Root / Old"])],
        "eligibility": [{"name": "E", "units": ["ou-zz"], "groups": ["sre"]}],
    }
    err, _ = refused("validate", write(tmp_path, document))
    problems = [line.split(": ", 1)[1] for line in err.splitlines()]
    assert problems == [
        "rules[0].units[1]: unknown organizational unit 'ou-ab12-99999999'",
        "rules[0].units[2]: unknown organizational unit 'Root / Nowhere'",
        "rules[0].units[3]: organizational unit path 'Root / Old' is ambiguous: name it by id (ou-ab12-22222222, …)",
        "eligibility[0].units[0]: unknown organizational unit 'ou-zz'",
    ]


def test_plan_says_scope_changes_by_unit_tag_and_environment_in_words(org, tmp_path):
    _units(org)
    document = exported(tmp_path)
    document["rules"][0].update(
        accounts=[],
        units=["ou-ab12-11111111"],  # by id: compared as the export writes it, by path
        account_tags={"team": ["payments", "billing"]},
        environments=["production"],
    )
    out, _ = run("plan", write(tmp_path, document))
    assert out.splitlines()[0] == (
        f"  rule 'Sandbox pipelines': accounts {ACCOUNT_ID} → any account; units any unit → Root / Workloads; "
        "account tags any tags → team=billing, team=payments; environments any environment → production"
    )


def test_the_plan_lists_every_account_that_moves_to_fewer_approvals_and_calls_the_moves_out(org, tmp_path):
    from tests.factories import make_account

    for account_id, name in (("111111111111", "prod-a"), ("111111111112", "prod-b")):
        make_account(account_id, name, "production")
    document = {
        "version": 1,
        "rules": [
            rule("Production", accounts=[], environments=["production"], approvals=2, priority=10),
            rule(
                "Non-production", accounts=[], environments=["staging", "development", "sandbox"], priority=30
            ),
        ],
    }
    run("apply", write(tmp_path, document))
    # Someone widens the one-approval rule to production and tries it first.
    document["rules"][1].update(environments=["production", "staging", "development", "sandbox"], priority=5)

    out, _ = run("plan", write(tmp_path, document, "widened.yaml"))

    moved = "Production (2 approvals) → Non-production (1 approval) for pipeline access, PassRole, standard permission sets, cross-account access"
    assert out.splitlines() == [
        "  rule 'Non-production': priority 30 → 5; adds environment 'production'",
        "1 change to apply.",
        "Routing: 3 accounts move to another rule.",
        "⚠ 3 accounts move to fewer approvals:",
        f"  111111111111 prod-a: {moved}",
        f"  111111111112 prod-b: {moved}",
        f"  {PRODUCTION_ID} production: {moved}",
    ]


def test_the_plan_calls_out_a_rule_that_asks_fewer_approvals_of_the_accounts_it_keeps(org, tmp_path):
    document = exported(tmp_path)
    document["rules"][0]["approvals"] = 2
    run("apply", write(tmp_path, document))
    document["rules"][0]["approvals"] = 1
    out, _ = run("plan", write(tmp_path, document))
    assert out.splitlines()[-2:] == [
        "Routing: no account moves to another rule.",
        "⚠ The rule 'Sandbox pipelines' asks fewer approvals (2 → 1) for the requests it routes in 1 account.",
    ]


def test_rules_by_unit_tag_and_environment_round_trip_through_export_and_apply(org, tmp_path):
    _units(org)
    extra = ApprovalRule.objects.create(
        name="Payments", priority=5, approvals_required=2, account_tags={"team": ["payments", "billing"]},
        environments=["production", "staging"],
    )  # fmt: skip
    extra.units.add(org.workloads, org.gone)
    extra.approver_groups.add(Group.objects.get(name="approvers"))
    eligible = EligibilityRule.objects.create(
        name="Production people", environments=["production"], account_tags={"tier": ["1"]}
    )
    eligible.units.add(org.workloads)
    eligible.groups.add(Group.objects.get(name="sre"))
    path = tmp_path / "exported.yaml"
    run("export", "--output", str(path))
    document = yaml.safe_load(path.read_text())
    payments = next(r for r in document["rules"] if r["name"] == "Payments")
    # Units by path, which people read, or by id where the path is not unique.
    assert payments["units"] == ["Root / Workloads", "ou-ab12-22222222"]
    assert payments["account_tags"] == {"team": ["billing", "payments"]}
    assert payments["environments"] == ["production", "staging"]
    assert document["eligibility"][0]["units"] == ["Root / Workloads"]
    out, _ = run("plan", str(path))
    assert out.startswith("No changes"), out
    before = governance.RuleSet.from_database()
    EligibilityRule.objects.all().delete()
    extra.delete()
    run("apply", str(path))
    assert governance.RuleSet.from_database() == before
    out, _ = run("plan", str(path))
    assert out.startswith("No changes")
    assert {u.ou_id for u in ApprovalRule.objects.get(name="Payments").units.all()} == {
        "ou-ab12-11111111",
        "ou-ab12-22222222",
    }
