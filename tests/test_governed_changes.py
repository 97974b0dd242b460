"""Four eyes on what moves who approves or how risky access looks, beside the rules: an account's environment,
the links between users and principals, membership of governed groups, a SCIM group's principals. The admin
pages only propose; another admin applies with a fresh second factor; everything is audited."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User
from django.db import IntegrityError, transaction
from django.urls import reverse

from accessrequests.authz.permissions import NotAllowed
from accessrequests.governance import governed
from accessrequests.governance.governed_changes import governed_change_propose
from accessrequests.governance.rule_changes import RuleChangeError, rule_change_approve, rule_change_reject
from accessrequests.models import (
    AuditEvent,
    AwsAccount,
    Environment,
    RuleChange,
    RuleChangeStatus,
    RuleTarget,
    ScimGroup,
)
from tests.admin_forms import admin_form
from tests.conftest import make_user, sign_in_with_mfa
from tests.factories import fresh_factor
from tests.rules_support import Org

pytestmark = pytest.mark.django_db


@pytest.fixture
def org():
    org = Org()
    org.admin1 = make_user("admin-one", "admins", is_staff=True, is_superuser=True)
    org.admin2 = make_user("admin-two", "admins", is_staff=True, is_superuser=True)
    Group.objects.get_or_create(name="book-club")
    return org


def url(model: str, obj, app: str = "accessrequests") -> str:
    return reverse(f"admin:{app}_{model}_change", args=[obj.pk])


def pending() -> RuleChange:
    return RuleChange.objects.get(status=RuleChangeStatus.PENDING)


def approve(change: RuleChange, user) -> RuleChange:
    return rule_change_approve(change_id=change.pk, user=user, second_factor=fresh_factor(user))


def proposer_is_refused_and_the_second_admin_applies(org, change: RuleChange, unchanged, changed) -> None:
    """The proposer cannot approve (the service, then the database); another admin can, and then it holds."""
    with pytest.raises(NotAllowed, match="another admin must decide it"):
        approve(change, org.admin1)
    with pytest.raises(IntegrityError), transaction.atomic():
        RuleChange.objects.filter(pk=change.pk).update(
            status=RuleChangeStatus.APPROVED, decided_by=org.admin1, decided_at=change.proposed_at
        )
    assert unchanged()
    approve(change, org.admin2)
    change.refresh_from_db()
    assert change.status == RuleChangeStatus.APPROVED and change.decided_by == org.admin2
    assert changed()


def audited(change: RuleChange, *, action: str, before: dict, after: dict) -> None:
    proposed = AuditEvent.objects.get(action="rulechange.proposed", object_id=str(change.pk))
    assert proposed.actor_label == "admin-one" and proposed.before == before
    assert proposed.after["facts_after"] == after and proposed.after["summary"] == change.summary
    applied = AuditEvent.objects.get(action=action)
    assert applied.actor_label == "admin-two" and applied.before == before
    assert {k: applied.after[k] for k in after} == after and applied.after["proposed_by"] == "admin-one"
    approved = AuditEvent.objects.get(action="rulechange.approved", object_id=str(change.pk))
    assert approved.actor_label == "admin-two" and approved.after["second_factor"]["method"] == "totp"


# --- an account's environment --------------------------------------------------------------------------


def test_an_accounts_environment_changes_only_when_a_second_admin_approves(client, org):
    sign_in_with_mfa(client, org.admin1)
    response = client.post(
        url("awsaccount", org.production),
        admin_form(client, url("awsaccount", org.production), environment="development", name="prod-main"),
    )
    assert response.status_code == 302
    account = AwsAccount.objects.get(pk=org.production.pk)
    assert account.environment == Environment.PRODUCTION  # the direct POST changed the environment not at all
    assert account.name == "prod-main"  # and everything else at once
    change = pending()
    assert change.target == RuleTarget.ACCOUNT and change.proposed_by == org.admin1
    assert change.summary == "account 'prod-main (111122223333)': environment production → development"
    page = client.get(url("rulechange", change)).content.decode()
    assert "environment: production" in page and "environment: development" in page
    assert "You proposed this change; another admin must decide it." in page

    proposer_is_refused_and_the_second_admin_applies(
        org,
        change,
        unchanged=lambda: AwsAccount.objects.get(pk=org.production.pk).environment == "production",
        changed=lambda: AwsAccount.objects.get(pk=org.production.pk).environment == "development",
    )
    audited(
        change,
        action="account.changed",
        before={"environment": "production"},
        after={"environment": "development"},
    )


def test_an_account_added_in_the_admin_counts_as_production_until_its_environment_is_approved(client, org):
    sign_in_with_mfa(client, org.admin1)
    add = reverse("admin:accessrequests_awsaccount_add")
    fields = admin_form(client, add, account_id="444455556666", name="scratch", environment="sandbox")
    assert client.post(add, fields).status_code == 302
    account = AwsAccount.objects.get(account_id="444455556666")
    assert account.environment == Environment.PRODUCTION
    assert pending().summary == "account 'scratch (444455556666)': environment production → sandbox"


# --- links between users and principals ----------------------------------------------------------------


def test_linking_a_user_from_the_principal_page_waits_for_a_second_admin(client, org):
    sign_in_with_mfa(client, org.admin1)
    page = url("principal", org.principal)
    fields = admin_form(client, page, users=[org.requester.pk, org.other_requester.pk])
    assert client.post(page, fields).status_code == 302
    assert list(org.principal.users.all()) == [org.requester]
    change = pending()
    assert change.target == RuleTarget.PRINCIPAL_LINKS
    assert change.summary == f"principal '{governed.principal_ref(org.principal)}': adds user 'other'"
    proposer_is_refused_and_the_second_admin_applies(
        org,
        change,
        unchanged=lambda: set(org.principal.users.all()) == {org.requester},
        changed=lambda: set(org.principal.users.all()) == {org.requester, org.other_requester},
    )
    audited(
        change,
        action="principal_links.changed",
        before={"users": ["requester"]},
        after={"users": ["other", "requester"]},
    )


def test_unlinking_a_user_from_the_principal_page_waits_too(client, org):
    # An unlinked user is no longer a recipient of the principal's access, so may approve it: as governed as a link.
    sign_in_with_mfa(client, org.admin1)
    page = url("principal", org.principal)
    assert client.post(page, admin_form(client, page, users=[])).status_code == 302
    assert list(org.principal.users.all()) == [org.requester]
    approve(pending(), org.admin2)
    assert not org.principal.users.exists()


def test_linking_a_principal_from_the_user_page_waits_for_a_second_admin(client, org):
    sign_in_with_mfa(client, org.admin1)
    page = url("user", org.other_requester, app="auth")
    ids = f"{org.principal.pk},{org.ic_user.pk}"
    fields = admin_form(client, page, principals=ids, first_name="Olive")
    response = client.post(page, fields)
    assert response.status_code == 302, response.content.decode()[:3000]
    other = User.objects.get(pk=org.other_requester.pk)
    assert other.first_name == "Olive" and not other.principals.exists()
    change = pending()
    assert change.target == RuleTarget.USER_ACCESS
    assert change.summary == (
        f"user 'other': adds principal '{governed.principal_ref(org.principal)}'; "
        f"adds principal '{governed.principal_ref(org.ic_user)}'"
    )
    before = {"superuser": False, "groups": ["requesters"], "principals": []}
    after = {**before, "principals": sorted(governed.principal_ref(p) for p in (org.principal, org.ic_user))}
    proposer_is_refused_and_the_second_admin_applies(
        org,
        change,
        unchanged=lambda: not other.principals.exists(),
        changed=lambda: set(other.principals.all()) == {org.principal, org.ic_user},
    )
    audited(change, action="user_access.changed", before=before, after=after)


# --- governed groups -----------------------------------------------------------------------------------


def test_joining_a_governed_group_from_the_user_page_waits_but_other_groups_change_at_once(client, org):
    sign_in_with_mfa(client, org.admin1)
    page = url("user", org.other_requester, app="auth")
    groups = [Group.objects.get(name=n).pk for n in ("requesters", "approvers", "book-club")]
    assert client.post(page, admin_form(client, page, groups=groups, is_superuser="on")).status_code == 302
    other = User.objects.get(pk=org.other_requester.pk)
    assert sorted(g.name for g in other.groups.all()) == ["book-club", "requesters"]
    assert not other.is_superuser
    change = pending()
    assert change.summary == "user 'other': superuser off → on; adds group 'approvers'"
    proposer_is_refused_and_the_second_admin_applies(
        org,
        change,
        unchanged=lambda: not other.groups.filter(name="approvers").exists(),
        changed=lambda: sorted(other.groups.values_list("name", flat=True))
        == ["approvers", "book-club", "requesters"]
        and User.objects.get(pk=other.pk).is_superuser,
    )
    audited(
        change,
        action="user_access.changed",
        before={"superuser": False, "groups": ["requesters"], "principals": []},
        after={"superuser": True, "groups": ["approvers", "requesters"], "principals": []},
    )


def test_leaving_a_role_group_from_the_user_page_waits_too(client, org):
    sign_in_with_mfa(client, org.admin1)
    page = url("user", org.approver, app="auth")
    assert client.post(page, admin_form(client, page, groups=[])).status_code == 302
    assert org.approver.groups.filter(name="approvers").exists()
    approve(pending(), org.admin2)
    assert not org.approver.groups.exists()


def test_a_governed_groups_members_change_only_when_a_second_admin_approves(client, org):
    sign_in_with_mfa(client, org.admin1)
    admins = Group.objects.get(name="admins")
    page = url("group", admins, app="auth")
    members = [org.admin1.pk, org.admin2.pk, org.requester.pk]
    assert client.post(page, admin_form(client, page, members=members, name="superheroes")).status_code == 302
    admins.refresh_from_db()
    assert admins.name == "admins"  # a governed group keeps its name: rules and roles name it
    assert not org.requester.groups.filter(name="admins").exists()
    change = pending()
    assert change.target == RuleTarget.GROUP_MEMBERS
    assert change.summary == "group 'admins': adds user 'requester'"
    proposer_is_refused_and_the_second_admin_applies(
        org,
        change,
        unchanged=lambda: not org.requester.groups.filter(name="admins").exists(),
        changed=lambda: org.requester.groups.filter(name="admins").exists(),
    )
    audited(
        change,
        action="group_members.changed",
        before={"users": ["admin-one", "admin-two"]},
        after={"users": ["admin-one", "admin-two", "requester"]},
    )


def test_a_group_a_rule_names_is_governed_and_cannot_be_deleted_here(client, org):
    sign_in_with_mfa(client, org.admin1)
    sre = Group.objects.get(name="sre")
    assert not governed.is_governed_group(sre)
    org.rule.break_glass_groups.add(sre)
    assert governed.is_governed_group(sre)
    delete = reverse("admin:auth_group_delete", args=[sre.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 403
    assert Group.objects.filter(pk=sre.pk).exists()
    listing = client.get(reverse("admin:auth_group_changelist")).content.decode()
    assert "delete_selected" not in listing


def test_members_of_an_ordinary_group_change_at_once_and_are_audited(client, org):
    sign_in_with_mfa(client, org.admin1)
    club = Group.objects.get(name="book-club")
    page = url("group", club, app="auth")
    assert client.post(page, admin_form(client, page, members=[org.requester.pk])).status_code == 302
    assert list(club.user_set.all()) == [org.requester]
    assert not RuleChange.objects.exists()
    event = AuditEvent.objects.get(action="group.members_changed")
    assert event.before == {"users": []} and event.after["users"] == ["requester"]


def test_a_scim_groups_principals_wait_for_a_second_admin(client, org):
    sign_in_with_mfa(client, org.admin1)
    group = ScimGroup.objects.create(display_name="pipeline-team")
    page = url("scimgroup", group)
    assert client.post(page, admin_form(client, page, principals=[org.principal.pk])).status_code == 302
    assert not group.principals.exists()
    change = pending()
    assert (
        change.summary
        == f"SCIM group 'pipeline-team': adds principal '{governed.principal_ref(org.principal)}'"
    )
    approve(change, org.admin2)
    assert list(group.principals.all()) == [org.principal]


# --- the rules every governed change follows -----------------------------------------------------------


def propose_environment(org, user=None, environment: str = "development") -> RuleChange:
    return governed_change_propose(
        user=user or org.admin1,
        target=RuleTarget.ACCOUNT,
        instance=org.production,
        after={"environment": environment},
    )


def test_only_admins_propose_governed_changes(org):
    with pytest.raises(NotAllowed, match="Only admins propose"):
        propose_environment(org, user=org.approver)
    auditor_admin = make_user("audit-admin", "admins", "auditors")
    with pytest.raises(NotAllowed, match="Auditors have read-only access"):
        propose_environment(org, user=auditor_admin)
    assert not RuleChange.objects.exists()


def test_a_change_that_changes_nothing_or_names_nothing_real_is_refused(org):
    with pytest.raises(RuleChangeError, match="changes nothing"):
        propose_environment(org, environment="production")
    with pytest.raises(RuleChangeError, match="Choose the environment"):
        propose_environment(org, environment="moon")
    with pytest.raises(RuleChangeError, match="No user named ghost"):
        governed_change_propose(
            user=org.admin1,
            target=RuleTarget.PRINCIPAL_LINKS,
            instance=org.principal,
            after={"users": ["ghost"]},
        )
    assert not RuleChange.objects.exists()


def test_approving_needs_a_fresh_second_factor(org):
    change = propose_environment(org)
    with pytest.raises(NotAllowed, match="second factor"):
        rule_change_approve(change_id=change.pk, user=org.admin2, second_factor=None)
    assert AwsAccount.objects.get(pk=org.production.pk).environment == "production"


def test_a_change_is_refused_when_the_object_changed_since_it_was_proposed(org):
    first = propose_environment(org, environment="development")
    second = propose_environment(org, environment="sandbox")
    approve(first, org.admin2)
    with pytest.raises(RuleChangeError, match="changed since this was proposed"):
        approve(second, org.admin2)
    assert AwsAccount.objects.get(pk=org.production.pk).environment == "development"
    assert RuleChange.objects.get(pk=second.pk).status == RuleChangeStatus.PENDING


def test_nobody_approves_a_change_to_their_own_roles_or_links(org):
    third = make_user("admin-three", "admins", is_staff=True, is_superuser=True)
    admins = Group.objects.get(name="admins")
    raise_self = governed_change_propose(
        user=org.admin1,
        target=RuleTarget.GROUP_MEMBERS,
        instance=Group.objects.get(name="approvers"),
        after={"users": ["admin-two", "approver", "approver2"]},
    )
    with pytest.raises(NotAllowed, match="about your own roles or links"):
        approve(raise_self, org.admin2)
    approve(raise_self, third)
    link_self = governed_change_propose(
        user=org.admin1,
        target=RuleTarget.USER_ACCESS,
        instance=org.admin2,
        after={"principals": [governed.principal_ref(org.principal)]},
    )
    with pytest.raises(NotAllowed, match="about your own roles or links"):
        approve(link_self, org.admin2)
    assert admins.user_set.count() == 3


def test_a_rejected_change_changes_nothing_and_is_audited(org):
    change = propose_environment(org)
    with pytest.raises(NotAllowed, match="another admin must decide it"):
        rule_change_reject(change_id=change.pk, user=org.admin1)
    rule_change_reject(change_id=change.pk, user=org.admin2, comment="it is production")
    assert AwsAccount.objects.get(pk=org.production.pk).environment == "production"
    rejected = AuditEvent.objects.get(action="rulechange.rejected")
    assert rejected.actor_label == "admin-two" and rejected.after["comment"] == "it is production"
    assert rejected.after["summary"] == change.summary


def test_a_second_admin_approves_in_the_admin_with_the_pages_buttons(client, org):
    change = propose_environment(org)
    sign_in_with_mfa(client, org.admin2)
    page = client.get(url("rulechange", change)).content.decode()
    assert "Approve and apply" in page and "environment production → development" in page
    client.post(reverse("admin:accessrequests_rulechange_approve", args=[change.pk]), {"comment": "ok"})
    assert AwsAccount.objects.get(pk=org.production.pk).environment == "development"
