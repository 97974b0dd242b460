"""Admin pages need MFA, and catalog and rule changes are audited."""

import pytest
from django.urls import reverse

from accessrequests.models import ApprovalRule, AuditEvent
from tests.conftest import make_user, sign_in_with_mfa

pytestmark = pytest.mark.django_db


def test_admin_pages_send_staff_without_mfa_to_set_it_up(client):
    admin = make_user("root-admin", "admins", is_staff=True, is_superuser=True)
    client.force_login(admin)
    response = client.get(reverse("admin:index"))
    assert response.status_code == 302
    follow = client.get(response["Location"])
    assert follow.status_code == 302
    assert follow["Location"] == reverse("mfa_activate_totp")


def test_admin_with_mfa_can_add_a_rule_and_it_is_audited(client):
    """Added in the admin, the rule waits for a second admin (tests/test_rules_admin.py says more)."""
    from accessrequests.governance.rule_changes import rule_change_approve
    from accessrequests.models import RuleChange
    from tests.factories import fresh_factor

    admin = make_user("root-admin", "admins", is_staff=True, is_superuser=True)
    second = make_user("second-admin", "admins", is_staff=True, is_superuser=True)
    sign_in_with_mfa(client, admin)
    assert client.get(reverse("admin:index")).status_code == 200
    response = client.post(
        reverse("admin:accessrequests_approvalrule_add"),
        {
            "name": "Everything else",
            "priority": 500,
            "enabled": "on",
            "kinds": ["pipeline", "pass_role"],
            "approvals_required": 2,
            "max_duration_hours": 4,
            "contact": "platform@example.com",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    assert not ApprovalRule.objects.filter(name="Everything else").exists()
    proposed = AuditEvent.objects.get(action="rulechange.proposed")
    assert proposed.actor_label == "root-admin"
    rule_change_approve(
        change_id=RuleChange.objects.get().pk, user=second, second_factor=fresh_factor(second)
    )
    rule = ApprovalRule.objects.get(name="Everything else")
    event = AuditEvent.objects.get(action="approvalrule.created")
    assert event.actor_label == "second-admin"
    assert event.object_id == str(rule.pk)
    assert event.after["approvals"] == 2
    assert rule.kinds == ["pipeline", "pass_role"] and rule.levels == []


def test_requests_grants_and_audit_are_read_only_in_admin(client):
    admin = make_user("root-admin", "admins", is_staff=True, is_superuser=True)
    sign_in_with_mfa(client, admin)
    for name in ("accessrequest", "grant", "auditevent"):
        assert client.get(reverse(f"admin:accessrequests_{name}_add")).status_code == 403


def test_a_rule_says_in_one_sentence_what_it_does(client):
    from tests.factories import make_account, make_rule

    admin = make_user("root-admin", "admins", is_staff=True, is_superuser=True)
    sign_in_with_mfa(client, admin)
    rule = make_rule(
        "Production", accounts=[make_account()], approvals=2, max_duration_hours=4, kinds=["pipeline"]
    )
    sentence = (
        "Requests for pipeline actions on sandbox go to approvers: 2 distinct approvals, at most 4 hours."
    )
    assert rule.describe() == sentence
    page = client.get(reverse("admin:accessrequests_approvalrule_change", args=[rule.pk])).content.decode()
    assert sentence in page
    form = page.split('name="kinds"')
    assert len(form) > 2 and 'type="checkbox"' in page  # kinds are checkboxes of the valid values, not JSON
