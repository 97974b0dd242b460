"""`manage.py rules apply FILE` without GATEHOUSE_RULES_FILE: a shell is no authority over who approves, so the
file's changes are proposed, named after who ran the command, and applied when a second admin approves them."""

from __future__ import annotations

import getpass
import socket
from io import StringIO

import pytest
import yaml
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from accessrequests.authz.permissions import NotAllowed
from accessrequests.governance import rules_file as governance
from accessrequests.governance.rule_changes import rule_change_approve, rule_change_set_approve
from accessrequests.models import ApprovalRule, AuditEvent, EligibilityRule, RuleChange, RuleChangeStatus
from tests.conftest import make_user, sign_in_with_mfa
from tests.factories import fresh_factor
from tests.rules_support import Org

pytestmark = pytest.mark.django_db

RUNNER = f"{getpass.getuser()}@{socket.gethostname()}"


@pytest.fixture
def org(settings):
    settings.GATEHOUSE_RULES_FILE = ""
    org = Org()
    org.admin1 = make_user("admin-one", "admins", is_staff=True, is_superuser=True)
    org.admin2 = make_user("admin-two", "admins", is_staff=True, is_superuser=True)
    return org


def lowered_file(tmp_path) -> str:
    """The rules in force with two changes: Sandbox pipelines gains sre approvers and auto-approval, and a new
    eligibility rule."""
    document = governance.export_document()
    document["rules"][0].update(approvals=2, approver_groups=["approvers", "sre"], auto_approve_low_risk=True)
    document["eligibility"] = [
        {"name": "Administrator access", "permission_sets": ["AdministratorAccess"], "groups": ["sre"]}
    ]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return str(path)


def apply(*args: str) -> str:
    out = StringIO()
    call_command("rules", "apply", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def in_force() -> dict:
    return governance.RuleSet.from_database().__dict__


def test_apply_without_a_configured_file_changes_nothing_until_a_second_admin_approves(org, tmp_path):
    path = lowered_file(tmp_path)
    before = in_force()
    out = apply(path)
    assert in_force() == before  # the rules in the database are untouched
    changes = list(RuleChange.objects.order_by("pk"))
    assert [c.summary for c in changes] == [
        "rule 'Sandbox pipelines': approvals 1 → 2; adds group 'sre'; auto-approval of low-risk requests off → on",
        "eligibility rule 'Administrator access': added: only group 'sre' may request permission sets "
        "AdministratorAccess on any account",
    ]
    assert all(c.status == RuleChangeStatus.PENDING and c.proposed_by is None for c in changes)
    assert {c.proposer_label for c in changes} == {RUNNER}
    assert len({c.change_set for c in changes}) == 1 and changes[0].change_set
    assert changes[0].origin.startswith("rules file rules.yaml (sha256 ")
    # It says what it proposed and where a second admin approves it.
    for change in changes:
        assert f"  {change.summary}" in out
    assert f"Proposed 2 changes (by {RUNNER}); nothing is applied yet." in out
    assert (
        reverse("admin:accessrequests_rulechange_changelist") + f"?change_set={changes[0].change_set}" in out
    )
    # The audit trail names who ran it: the operating-system user and the host.
    proposed = AuditEvent.objects.filter(action="rulechange.proposed").order_by("id")
    assert [e.actor_label for e in proposed] == [RUNNER, RUNNER]
    assert all(e.after["command_run_by"] == RUNNER for e in proposed)
    summary = AuditEvent.objects.get(action="rules.proposed")
    assert summary.actor_label == RUNNER and summary.after["rule_changes"] == [c.pk for c in changes]
    assert not AuditEvent.objects.filter(action__in=["approvalrule.changed", "rules.applied"]).exists()

    applied = rule_change_set_approve(
        change_set=changes[0].change_set, user=org.admin2, second_factor=fresh_factor(org.admin2)
    )
    assert [c.status for c in applied] == [RuleChangeStatus.APPROVED] * 2
    rule = ApprovalRule.objects.get(pk=org.rule.pk)
    assert rule.approvals_required == 2 and rule.auto_approve_low_risk
    assert sorted(g.name for g in rule.approver_groups.all()) == ["approvers", "sre"]
    assert EligibilityRule.objects.filter(name="Administrator access").exists()
    assert apply(path).startswith("No changes")  # the rules are now what the file says
    changed = AuditEvent.objects.get(action="approvalrule.changed")
    assert changed.actor_label == "admin-two" and changed.before["approvals"] == 1


def test_with_as_the_named_admin_is_the_proposer_and_cannot_approve(org, tmp_path):
    out = apply(lowered_file(tmp_path), "--as", "admin-one")
    assert f"(by admin-one · {RUNNER})" in out
    first, second = RuleChange.objects.order_by("pk")
    assert first.proposed_by == org.admin1 and first.proposer_label == RUNNER
    event = AuditEvent.objects.filter(action="rulechange.proposed").first()
    assert event.actor_label == "admin-one" and event.after["command_run_by"] == RUNNER
    with pytest.raises(NotAllowed, match="another admin must decide it"):
        rule_change_approve(change_id=first.pk, user=org.admin1, second_factor=fresh_factor(org.admin1))
    with pytest.raises(NotAllowed, match="another admin must decide it"):
        rule_change_set_approve(
            change_set=first.change_set, user=org.admin1, second_factor=fresh_factor(org.admin1)
        )
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 1
    # One change at a time works too.
    rule_change_approve(change_id=second.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    assert EligibilityRule.objects.filter(name="Administrator access").exists()
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 1


def test_as_must_name_an_admin(org, tmp_path):
    path = lowered_file(tmp_path)
    with pytest.raises(CommandError, match="Only admins propose changes to rules; nothing was changed"):
        apply(path, "--as", "approver")
    with pytest.raises(CommandError, match="no Gatehouse user has that name"):
        apply(path, "--as", "nobody")
    assert not RuleChange.objects.exists()


def test_a_set_is_approved_whole_or_not_at_all(org, tmp_path):
    apply(lowered_file(tmp_path))
    first = RuleChange.objects.order_by("pk").first()
    with pytest.raises(NotAllowed, match="second factor"):
        rule_change_set_approve(change_set=first.change_set, user=org.admin2, second_factor=None)
    # Someone changes the rule after the file was proposed: its change no longer describes the truth.
    ApprovalRule.objects.filter(pk=org.rule.pk).update(max_duration_hours=2)
    from accessrequests.governance.rule_changes import RuleChangeError

    with pytest.raises(RuleChangeError, match="changed since this was proposed"):
        rule_change_set_approve(
            change_set=first.change_set, user=org.admin2, second_factor=fresh_factor(org.admin2)
        )
    assert not EligibilityRule.objects.exists()
    assert RuleChange.objects.filter(status=RuleChangeStatus.PENDING).count() == 2


def test_the_admin_shows_the_set_and_approves_it_as_a_whole(client, org, tmp_path):
    apply(lowered_file(tmp_path), "--as", "admin-one")
    first = RuleChange.objects.order_by("pk").first()
    sign_in_with_mfa(client, org.admin2)
    listing = client.get(
        reverse("admin:accessrequests_rulechange_changelist") + f"?change_set={first.change_set}"
    )
    assert listing.status_code == 200 and "2 rule changes" in listing.content.decode()
    page = client.get(reverse("admin:accessrequests_rulechange_change", args=[first.pk])).content.decode()
    assert "Proposed together (2 changes, rules file rules.yaml (sha256" in page
    assert "Approve and apply all 2 waiting changes of this set" in page
    assert f"admin-one · {RUNNER}" in page
    client.post(reverse("admin:accessrequests_rulechange_approve_set", args=[first.pk]), {"comment": "ok"})
    assert RuleChange.objects.filter(status=RuleChangeStatus.APPROVED).count() == 2
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 2


def test_with_a_configured_rules_file_apply_still_writes_at_once(org, tmp_path, settings):
    settings.GATEHOUSE_RULES_FILE = str(tmp_path / "configured.yaml")
    out = apply(lowered_file(tmp_path))
    assert "Applied 2 changes." in out
    assert not RuleChange.objects.exists()
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 2
