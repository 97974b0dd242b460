"""Rule changes in the admin take effect only when a second, different admin approves them (with a fresh second
factor); with GATEHOUSE_RULES_FILE set the admin shows the rules read-only."""

from __future__ import annotations

import json
import time

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accessrequests.authz.permissions import NotAllowed
from accessrequests.governance import rules_file as governance
from accessrequests.governance.rule_changes import (
    RuleChangeError,
    rule_change_approve,
    rule_change_propose,
    rule_change_reject,
)
from accessrequests.models import (
    ApprovalRule,
    AuditEvent,
    AwsAccount,
    EligibilityRule,
    RuleChange,
    RuleChangeStatus,
    RuleTarget,
)
from tests.conftest import make_user, sign_in_with_mfa
from tests.factories import fresh_factor
from tests.rules_support import Org

pytestmark = pytest.mark.django_db


@pytest.fixture
def org():
    org = Org()
    org.admin1 = make_user("admin-one", "admins", is_staff=True, is_superuser=True)
    org.admin2 = make_user("admin-two", "admins", is_staff=True, is_superuser=True)
    Group.objects.get_or_create(name="sre")
    return org


def rule_form(org, **overrides) -> dict:
    fields = {
        "name": "Sandbox pipelines",
        "priority": 100,
        "enabled": "on",
        "accounts": [org.account.pk],
        "approver_groups": [Group.objects.get(name="approvers").pk],
        "approvals_required": 1,
        "max_duration_hours": 8,
        "contact": "platform@example.com",
    }
    fields.update(overrides)
    return {k: v for k, v in fields.items() if v is not None}


def change_url(rule) -> str:
    return reverse("admin:accessrequests_approvalrule_change", args=[rule.pk])


def test_a_change_in_the_admin_waits_until_a_second_admin_approves_it(client, org):
    sign_in_with_mfa(client, org.admin1)
    sre = Group.objects.get(name="sre").pk
    groups = [Group.objects.get(name="approvers").pk, sre]
    response = client.post(change_url(org.rule), rule_form(org, approvals_required=2, approver_groups=groups))
    proposal = RuleChange.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:accessrequests_rulechange_change", args=[proposal.pk])
    assert proposal.summary == "rule 'Sandbox pipelines': approvals 1 → 2; adds group 'sre'"
    assert proposal.status == RuleChangeStatus.PENDING and proposal.proposed_by == org.admin1
    org.rule.refresh_from_db()
    assert org.rule.approvals_required == 1  # not yet
    assert not AuditEvent.objects.filter(action="approvalrule.changed").exists()
    proposed = AuditEvent.objects.get(action="rulechange.proposed")
    assert proposed.actor_label == "admin-one" and proposed.after["rule_after"]["approvals"] == 2

    # The page shows the diff in words; the proposer gets no buttons, only why, and a POST is refused.
    page = client.get(reverse("admin:accessrequests_rulechange_change", args=[proposal.pk])).content.decode()
    assert "approvals 1 → 2; adds group &#x27;sre&#x27;" in page
    assert "You proposed this change; another admin must decide it." in page
    assert "Approve and apply" not in page
    client.post(reverse("admin:accessrequests_rulechange_approve", args=[proposal.pk]))
    proposal.refresh_from_db()
    assert proposal.status == RuleChangeStatus.PENDING
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 1

    client.logout()
    sign_in_with_mfa(client, org.admin2)
    page = client.get(reverse("admin:accessrequests_rulechange_change", args=[proposal.pk])).content.decode()
    assert "Approve and apply" in page and "Reject" in page
    done = client.post(
        reverse("admin:accessrequests_rulechange_approve", args=[proposal.pk]), {"comment": "ok"}
    )
    assert done.status_code == 302
    proposal.refresh_from_db()
    assert proposal.status == RuleChangeStatus.APPROVED and proposal.decided_by == org.admin2
    org.rule.refresh_from_db()
    assert org.rule.approvals_required == 2
    assert sorted(g.name for g in org.rule.approver_groups.all()) == ["approvers", "sre"]
    changed = AuditEvent.objects.get(action="approvalrule.changed")
    assert changed.actor_label == "admin-two"
    assert changed.before["approvals"] == 1 and changed.after["approvals"] == 2
    approved = AuditEvent.objects.get(action="rulechange.approved")
    assert (
        approved.after["proposed_by"] == "admin-one" and approved.after["second_factor"]["method"] == "totp"
    )


def test_who_may_break_the_glass_is_a_rule_change_like_any_other(client, org):
    # The break-glass fields bypass every approver once set: they must wait for the second admin and then apply.
    sign_in_with_mfa(client, org.admin1)
    sre = Group.objects.get(name="sre").pk
    client.post(change_url(org.rule), rule_form(org, break_glass_groups=[sre], break_glass_max_hours=2))
    proposal = RuleChange.objects.get()
    assert "adds break-glass group 'sre'" in proposal.summary
    assert "break-glass max duration (hours) 1 → 2" in proposal.summary
    assert not org.rule.break_glass_groups.exists()
    client.logout()
    sign_in_with_mfa(client, org.admin2)
    client.post(reverse("admin:accessrequests_rulechange_approve", args=[proposal.pk]), {"comment": "ok"})
    org.rule.refresh_from_db()
    assert [g.name for g in org.rule.break_glass_groups.all()] == ["sre"]
    assert org.rule.break_glass_max_hours == 2


def test_what_break_glass_may_give_is_a_rule_change_like_any_other_and_the_rule_says_it(client, org):
    org.rule.break_glass_users.add(org.approver2)
    assert "at most 1 h, pipeline access only) for approver2" in org.rule.describe()
    sign_in_with_mfa(client, org.admin1)
    page = client.get(change_url(org.rule)).content.decode()
    assert 'name="break_glass_kinds" value="pipeline"' in page and "pipeline access only" in page
    client.post(
        change_url(org.rule),
        rule_form(org, break_glass_users=[org.approver2.pk], break_glass_kinds=["pipeline", "pass_role"]),
    )
    proposal = RuleChange.objects.get()
    assert proposal.summary == "rule 'Sandbox pipelines': adds break-glass kind 'pass_role'"
    assert ApprovalRule.objects.get(pk=org.rule.pk).break_glass_kinds == ["pipeline"]  # not yet
    client.logout()
    sign_in_with_mfa(client, org.admin2)
    client.post(reverse("admin:accessrequests_rulechange_approve", args=[proposal.pk]), {"comment": "ok"})
    rule = ApprovalRule.objects.get(pk=org.rule.pk)
    assert rule.break_glass_kinds == ["pipeline", "pass_role"]
    assert "at most 1 h, pipeline access and PassRole only) for approver2" in rule.describe()
    assert AuditEvent.objects.get(action="approvalrule.changed").after["break_glass_kinds"] == [
        "pipeline", "pass_role",
    ]  # fmt: skip


def test_adding_and_deleting_a_rule_wait_for_the_second_admin_too(client, org):
    sign_in_with_mfa(client, org.admin1)
    add = client.post(
        reverse("admin:accessrequests_approvalrule_add"),
        rule_form(org, name="Everything else", priority=500, accounts=None, kinds=["pipeline", "pass_role"]),
    )
    assert add.status_code == 302
    assert not ApprovalRule.objects.filter(name="Everything else").exists()
    created = RuleChange.objects.get(rule_name="Everything else")
    assert created.summary.startswith("rule 'Everything else': added: 1 approval from group 'approvers'")
    unused = ApprovalRule.objects.create(name="Unused", priority=900)
    delete = client.post(
        reverse("admin:accessrequests_approvalrule_delete", args=[unused.pk]), {"post": "yes"}
    )
    assert delete.status_code == 302
    assert ApprovalRule.objects.filter(pk=unused.pk).exists()
    deleted = RuleChange.objects.get(rule_name="Unused")
    assert deleted.summary == "rule 'Unused': removed"
    # The bulk delete action would skip the second admin: it is not offered.
    assert (
        "delete_selected"
        not in client.get(reverse("admin:accessrequests_approvalrule_changelist")).content.decode()
    )

    for change in (created, deleted):
        rule_change_approve(change_id=change.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    rule = ApprovalRule.objects.get(name="Everything else")
    assert rule.kinds == ["pipeline", "pass_role"] and list(rule.accounts.all()) == []
    assert not ApprovalRule.objects.filter(pk=unused.pk).exists()
    assert AuditEvent.objects.filter(action__in=["approvalrule.created", "approvalrule.deleted"]).count() == 2


def test_the_proposer_cannot_approve_and_the_database_agrees(org):
    proposal = rule_change_propose(
        user=org.admin1,
        target=RuleTarget.APPROVAL_RULE,
        instance=org.rule,
        after={**governance.approval_spec(org.rule), "approvals": 3},
    )
    with pytest.raises(NotAllowed, match="another admin must decide it"):
        rule_change_approve(change_id=proposal.pk, user=org.admin1, second_factor=fresh_factor(org.admin1))
    with pytest.raises(NotAllowed, match="another admin must decide it"):
        rule_change_reject(change_id=proposal.pk, user=org.admin1)
    with pytest.raises(NotAllowed, match="Only admins"):
        rule_change_approve(
            change_id=proposal.pk, user=org.approver, second_factor=fresh_factor(org.approver)
        )
    # Without a fresh second factor even another admin cannot approve.
    with pytest.raises(NotAllowed, match="second factor"):
        rule_change_approve(change_id=proposal.pk, user=org.admin2, second_factor=None)
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic():
        RuleChange.objects.filter(pk=proposal.pk).update(
            status=RuleChangeStatus.APPROVED, decided_by=org.admin1, decided_at=proposal.proposed_at
        )
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 1


def test_a_stale_second_factor_is_asked_for_again(client, org, settings):
    proposal = rule_change_propose(
        user=org.admin1,
        target=RuleTarget.APPROVAL_RULE,
        instance=org.rule,
        after={**governance.approval_spec(org.rule), "approvals": 3},
    )
    sign_in_with_mfa(client, org.admin2)
    session = client.session
    from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY

    records = session[AUTHENTICATION_METHODS_SESSION_KEY]
    for record in records:
        record["at"] = time.time() - settings.GATEHOUSE_STEP_UP_SECONDS - 60
    session[AUTHENTICATION_METHODS_SESSION_KEY] = records
    session.save()
    response = client.post(reverse("admin:accessrequests_rulechange_approve", args=[proposal.pk]))
    assert response.status_code == 302 and response["Location"].startswith(reverse("mfa_reauthenticate"))
    proposal.refresh_from_db()
    assert proposal.status == RuleChangeStatus.PENDING


def test_a_second_admin_can_reject_and_nothing_changes(client, org):
    proposal = rule_change_propose(
        user=org.admin1,
        target=RuleTarget.APPROVAL_RULE,
        instance=org.rule,
        after={**governance.approval_spec(org.rule), "max_duration_hours": 72},
    )
    assert proposal.summary == "rule 'Sandbox pipelines': max duration (hours) 8 → 72"
    sign_in_with_mfa(client, org.admin2)
    client.post(
        reverse("admin:accessrequests_rulechange_reject", args=[proposal.pk]), {"comment": "too long"}
    )
    proposal.refresh_from_db()
    assert proposal.status == RuleChangeStatus.REJECTED and proposal.comment == "too long"
    assert ApprovalRule.objects.get(pk=org.rule.pk).max_duration_hours == 8
    assert AuditEvent.objects.get(action="rulechange.rejected").after["comment"] == "too long"
    with pytest.raises(NotAllowed, match="already rejected"):
        rule_change_approve(change_id=proposal.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))


def test_a_change_is_refused_when_the_rule_changed_since_it_was_proposed(org):
    first = rule_change_propose(
        user=org.admin1,
        target=RuleTarget.APPROVAL_RULE,
        instance=org.rule,
        after={**governance.approval_spec(org.rule), "approvals": 2},
    )
    second = rule_change_propose(
        user=org.admin1,
        target=RuleTarget.APPROVAL_RULE,
        instance=org.rule,
        after={**governance.approval_spec(org.rule), "approvals": 3},
    )
    rule_change_approve(change_id=first.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    with pytest.raises(RuleChangeError, match="changed since this was proposed"):
        rule_change_approve(change_id=second.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 2


def test_eligibility_rules_are_changed_with_four_eyes_too(client, org):
    sign_in_with_mfa(client, org.admin1)
    response = client.post(
        reverse("admin:accessrequests_eligibilityrule_add"),
        {
            "name": "Administrator access",
            "description": "admin sets are for sre",
            "permission_sets": [org.admin_set.pk],
            "groups": [Group.objects.get(name="sre").pk],
        },
    )
    assert response.status_code == 302
    assert not EligibilityRule.objects.exists()
    proposal = RuleChange.objects.get()
    assert proposal.summary == (
        "eligibility rule 'Administrator access': added: only group 'sre' may request permission sets "
        "AdministratorAccess on any account"
    )
    rule_change_approve(change_id=proposal.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    rule = EligibilityRule.objects.get()
    assert list(rule.permission_sets.all()) == [org.admin_set]
    assert (
        rule.describe()
        == "Only members of sre may request the permission set AdministratorAccess on any account."
    )


def test_a_rules_slack_webhook_is_applied_on_approval_but_never_shown_or_audited_in_full(client, org):
    sign_in_with_mfa(client, org.admin1)
    secret_url = "https://hooks.slack.com/services/T000/B000/very-secret-token"
    client.post(change_url(org.rule), rule_form(org, slack_webhook_url=secret_url))
    proposal = RuleChange.objects.get()
    assert proposal.summary == "rule 'Sandbox pipelines': sets a new Slack webhook"
    page = client.get(reverse("admin:accessrequests_rulechange_change", args=[proposal.pk])).content.decode()
    assert "very-secret-token" not in page
    rule_change_approve(change_id=proposal.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    org.rule.refresh_from_db()
    assert org.rule.slack_webhook_url == secret_url
    applied = AuditEvent.objects.get(action="approvalrule.changed")
    assert applied.after["change"] == "rule 'Sandbox pipelines': sets a new Slack webhook"
    page = client.get(change_url(org.rule)).content.decode()
    assert "very-secret-token" not in page and "hooks.slack.com" in page
    # Saving again without typing the URL keeps it (and proposes only what changed).
    client.post(change_url(org.rule), rule_form(org, max_duration_hours=2))
    latest = RuleChange.objects.filter(status=RuleChangeStatus.PENDING).get()
    assert latest.summary == "rule 'Sandbox pipelines': max duration (hours) 8 → 2"
    rule_change_approve(change_id=latest.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    org.rule.refresh_from_db()
    assert org.rule.slack_webhook_url == secret_url and org.rule.max_duration_hours == 2
    events = AuditEvent.objects.filter(object_type__in=["approvalrule", "rulechange"])
    assert events.count() == 6
    assert all("very-secret-token" not in json.dumps([e.before, e.after]) for e in events)


def test_with_a_rules_file_the_admin_shows_rules_read_only_and_says_where_they_come_from(
    client, org, settings
):
    settings.GATEHOUSE_RULES_FILE = "/etc/gatehouse/rules.yaml"
    sign_in_with_mfa(client, org.admin1)
    note = (
        "Rules come from the rules file /etc/gatehouse/rules.yaml (GATEHOUSE_RULES_FILE); change them there."
    )
    listing = client.get(reverse("admin:accessrequests_approvalrule_changelist")).content.decode()
    assert note in listing
    assert reverse("admin:accessrequests_approvalrule_add") not in listing
    page = client.get(change_url(org.rule))
    assert page.status_code == 200 and note in page.content.decode()
    assert 'name="_save"' not in page.content.decode()
    assert client.get(reverse("admin:accessrequests_approvalrule_add")).status_code == 403
    assert client.post(change_url(org.rule), rule_form(org, approvals_required=2)).status_code == 403
    delete = reverse("admin:accessrequests_approvalrule_delete", args=[org.rule.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert client.get(reverse("admin:accessrequests_eligibilityrule_add")).status_code == 403
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 1
    assert not RuleChange.objects.exists()
    # The service refuses too, whoever calls it.
    with pytest.raises(NotAllowed, match="GATEHOUSE_RULES_FILE"):
        rule_change_propose(
            user=org.admin1,
            target=RuleTarget.APPROVAL_RULE,
            instance=org.rule,
            after={**governance.approval_spec(org.rule), "approvals": 2},
        )


def test_only_admins_propose(org):
    with pytest.raises(NotAllowed, match="Only admins"):
        rule_change_propose(
            user=org.approver,
            target=RuleTarget.APPROVAL_RULE,
            instance=org.rule,
            after={**governance.approval_spec(org.rule), "approvals": 2},
        )


@pytest.mark.parametrize(
    ("actor", "propose", "decide"),
    [
        ("proposer", True, False),
        ("other_admin", True, True),
        ("admin_auditor", False, False),
        ("approver", False, False),
        ("requester", False, False),
    ],
)
def test_who_may_propose_and_decide_rule_changes(org, actor, propose, decide):
    from accessrequests.authz import permissions

    people = {
        "proposer": org.admin1,
        "other_admin": org.admin2,
        "admin_auditor": make_user("admin-auditor", "admins", "auditors", is_staff=True, is_superuser=True),
        "approver": org.approver,
        "requester": org.requester,
    }
    proposal = rule_change_propose(
        user=org.admin1,
        target=RuleTarget.APPROVAL_RULE,
        instance=org.rule,
        after={**governance.approval_spec(org.rule), "approvals": 2},
    )
    user = people[actor]
    assert permissions.allowed(permissions.rule_change_propose_problem, user) is propose
    assert permissions.allowed(permissions.rule_change_decide_problem, user, proposal) is decide
    if not decide:
        with pytest.raises(NotAllowed):
            rule_change_approve(change_id=proposal.pk, user=user, second_factor=fresh_factor(user))
        assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 1


def test_beat_applies_the_rules_file():
    from portal.celery import app

    entry = app.conf.beat_schedule["apply-rules-file"]
    assert entry["task"] == "accessrequests.tasks.apply_rules_file"
    assert entry["schedule"].total_seconds() == 300


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_every_rule_and_pending_rule_change_at_pipeline_only_break_glass():
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    [added] = [
        key
        for key in executor.loader.graph.nodes
        if key[0] == "accessrequests" and key[1].endswith("break_glass_kinds")
    ]
    [before] = [d for d in executor.loader.get_migration(*added).dependencies if d[0] == "accessrequests"]
    executor.migrate([before])
    try:
        old = executor.loader.project_state([before]).apps
        admin = old.get_model("auth", "User").objects.create(username="admin-one")
        old.get_model("accessrequests", "ApprovalRule").objects.create(name="Before", max_duration_hours=8)
        spec = {"name": "Before", "break_glass_max_hours": 1}
        old.get_model("accessrequests", "RuleChange").objects.create(
            target="approval_rule", operation="update", rule_name="Before", before=spec,
            after={**spec, "break_glass_max_hours": 2}, summary="rule 'Before': …", proposed_by=admin,
        )  # fmt: skip
        executor = MigrationExecutor(connection)
        executor.migrate([added])
        new = executor.loader.project_state([added]).apps
        assert new.get_model("accessrequests", "ApprovalRule").objects.get().break_glass_kinds == ["pipeline"]
        change = new.get_model("accessrequests", "RuleChange").objects.get()
        assert change.before["break_glass_kinds"] == change.after["break_glass_kinds"] == ["pipeline"]
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


# --- units, tags and environments in the admin's rule forms ------------------------------------------------


def _unit(ou_id: str, path: str, parent=None):
    from accessrequests.models import OrganizationalUnit

    return OrganizationalUnit.objects.create(
        ou_id=ou_id, name=path.rsplit(" / ", 1)[-1], path=path, parent=parent
    )


def test_a_rule_by_unit_tag_and_environment_is_proposed_and_applied_with_four_eyes(client, org):
    root = _unit("r-ab12", "Root")
    workloads = _unit("ou-ab12-11111111", "Root / Workloads", root)
    sign_in_with_mfa(client, org.admin1)
    response = client.post(
        reverse("admin:accessrequests_approvalrule_add"),
        rule_form(
            org,
            name="Payments production",
            priority=5,
            approvals_required=2,
            accounts=None,
            units=[workloads.pk],
            account_tags="team = payments, billing\ntier=1",
            environments=["production"],
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    proposal = RuleChange.objects.get()
    assert proposal.after["units"] == ["Root / Workloads"]
    assert proposal.after["account_tags"] == {"team": ["billing", "payments"], "tier": ["1"]}
    assert proposal.after["environments"] == ["production"]
    assert (
        "on production accounts in Root / Workloads (or a unit below) tagged team=billing|payments and tier=1"
        in (proposal.summary)
    )
    assert not ApprovalRule.objects.filter(name="Payments production").exists()
    rule_change_approve(change_id=proposal.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    rule = ApprovalRule.objects.get(name="Payments production")
    assert list(rule.units.all()) == [workloads]
    assert rule.account_tags == {"team": ["billing", "payments"], "tier": ["1"]}
    assert rule.environments == ["production"]
    assert rule.describe().startswith(
        "Requests for any kind of access on production accounts in Root / Workloads (or a unit below) tagged "
        "team=billing|payments and tier=1 go to approvers: 2 distinct approvals"
    )
    # The change form shows the tags back as they were typed.
    page = client.get(change_url(rule)).content.decode()
    assert "team = billing, payments\ntier = 1" in page


def test_a_malformed_tag_line_is_refused_with_how_to_write_it_and_nothing_is_proposed(client, org):
    sign_in_with_mfa(client, org.admin1)
    response = client.post(change_url(org.rule), rule_form(org, account_tags="team payments"))
    assert response.status_code == 200
    assert (
        "Line 1 (&#x27;team payments&#x27;): write a tag as key = value, value (e.g. team = payments)."
        in (response.content.decode())
    )
    assert not RuleChange.objects.exists()


def test_an_eligibility_rule_by_environment_is_proposed_from_the_admin(client, org):
    sign_in_with_mfa(client, org.admin1)
    client.post(
        reverse("admin:accessrequests_eligibilityrule_add"),
        {
            "name": "Production people",
            "environments": ["production"],
            "groups": [Group.objects.get(name="sre").pk],
        },
    )
    proposal = RuleChange.objects.get()
    assert proposal.summary == (
        "eligibility rule 'Production people': added: only group 'sre' may request any kind on production accounts"
    )
    rule_change_approve(change_id=proposal.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    assert EligibilityRule.objects.get().describe() == (
        "Only members of sre may request any kind of access on production accounts."
    )


def test_the_pending_change_page_says_which_accounts_move_to_fewer_approvals(client, org):
    production = ApprovalRule.objects.create(
        name="Production", priority=10, approvals_required=2, environments=["production"]
    )
    proposal = rule_change_propose(
        user=org.admin1,
        target=RuleTarget.APPROVAL_RULE,
        instance=org.rule,
        after={**governance.approval_spec(org.rule), "accounts": [], "priority": 1},
    )
    sign_in_with_mfa(client, org.admin2)
    page = client.get(reverse("admin:accessrequests_rulechange_change", args=[proposal.pk])).content.decode()
    assert "What it does to routing" in page
    assert "⚠ 1 account moves to fewer approvals:" in page
    assert (
        f'<li style="margin:0 0 .25em 1.5em">{org.production.account_id} production: Production (2 approvals) → '
        "Sandbox pipelines (1 approval) for "
        "pipeline access, PassRole, standard permission sets, cross-account access" in page
    )
    assert production.pk  # still in force until a second admin approves


def test_an_accounts_environment_is_the_admins_only_where_organizations_has_no_tag(client, org):
    from accessrequests.authz import permissions
    from accessrequests.governance.governed_changes import governed_change_propose

    sign_in_with_mfa(client, org.admin1)
    url = reverse("admin:accessrequests_awsaccount_change", args=[org.account.pk])
    form = {
        "account_id": org.account.account_id,
        "name": "sandbox",
        "environment": "production",
        "enabled": "on",
        "repair_drift": "on",
    }
    # Untagged: an admin proposes it, and a second admin's approval sets it.
    assert client.post(url, form).status_code == 302
    proposal = RuleChange.objects.get(target=RuleTarget.ACCOUNT)
    # Meanwhile Organizations tags the account (with the environment it has): the environment is the tag's now,
    # so the approval is refused.
    org.account.tags = {"environment": "development"}
    org.account.save()
    with pytest.raises(NotAllowed, match="its tag environment=development"):
        rule_change_approve(change_id=proposal.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    assert AwsAccount.objects.get(pk=org.account.pk).environment == "development"
    # Tagged: the page only shows it, and the service refuses a proposal however it is asked.
    page = client.get(url).content.decode()
    assert 'name="environment"' not in page
    assert "Organizations: its tag environment=development. Change the tag there" in page
    client.post(url, form)
    assert RuleChange.objects.filter(target=RuleTarget.ACCOUNT).count() == 1
    with pytest.raises(NotAllowed, match="Organizations sets the environment of sandbox"):
        governed_change_propose(
            user=org.admin1, target=RuleTarget.ACCOUNT, instance=org.account, after={"environment": "sandbox"}
        )
    assert "its tag environment=development" in permissions.account_environment_problem(
        org.admin1, org.account
    )


def test_a_pending_environment_change_says_which_rule_the_account_would_move_to(client, org):
    production = ApprovalRule.objects.create(
        name="Production", priority=10, approvals_required=2, environments=["production"]
    )
    production.approver_groups.add(Group.objects.get(name="approvers"))
    ApprovalRule.objects.create(name="Non-production", priority=20, environments=["development", "sandbox"])
    sign_in_with_mfa(client, org.admin1)
    url = reverse("admin:accessrequests_awsaccount_change", args=[org.production.pk])
    client.post(
        url,
        {
            "account_id": org.production.account_id,
            "name": "production",
            "environment": "sandbox",
            "enabled": "on",
        },
    )
    proposal = RuleChange.objects.get(target=RuleTarget.ACCOUNT)
    client.logout()
    sign_in_with_mfa(client, org.admin2)
    page = client.get(reverse("admin:accessrequests_rulechange_change", args=[proposal.pk])).content.decode()
    assert "⚠ 1 account moves to fewer approvals:" in page
    assert (
        f"{org.production.account_id} production: Production (2 approvals) → Non-production (1 approval) for "
        "pipeline access, PassRole, standard permission sets, cross-account access" in page
    )


def test_a_change_proposed_before_rules_had_units_tags_and_environments_is_still_approved(org):
    proposal = rule_change_propose(
        user=org.admin1,
        target=RuleTarget.APPROVAL_RULE,
        instance=org.rule,
        after={**governance.approval_spec(org.rule), "approvals": 2},
    )
    # As a change stored by the previous release reads: its specs lack the new fields.
    old = {"units", "account_tags", "environments"}
    RuleChange.objects.filter(pk=proposal.pk).update(
        before={k: v for k, v in proposal.before.items() if k not in old},
        after={k: v for k, v in proposal.after.items() if k not in old},
    )
    rule_change_approve(change_id=proposal.pk, user=org.admin2, second_factor=fresh_factor(org.admin2))
    assert ApprovalRule.objects.get(pk=org.rule.pk).approvals_required == 2
