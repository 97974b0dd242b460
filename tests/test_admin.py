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
    admin = make_user("root-admin", "admins", is_staff=True, is_superuser=True)
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
    rule = ApprovalRule.objects.get(name="Everything else")
    event = AuditEvent.objects.get(action="approvalrule.created")
    assert event.actor_label == "root-admin"
    assert event.object_id == str(rule.pk)
    assert event.after["approvals_required"] == 2
    assert rule.kinds == ["pipeline", "pass_role"] and rule.levels == []


def test_requests_grants_and_audit_are_read_only_in_admin(client):
    admin = make_user("root-admin", "admins", is_staff=True, is_superuser=True)
    sign_in_with_mfa(client, admin)
    for name in ("accessrequest", "grant", "auditevent"):
        assert client.get(reverse(f"admin:accessrequests_{name}_add")).status_code == 403
