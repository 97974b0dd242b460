"""Admin pages need MFA, and catalog and rule changes are audited."""

import json

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


def test_a_rules_slack_webhook_is_stored_but_never_shown_or_audited_in_full(client):
    admin = make_user("root-admin", "admins", is_staff=True, is_superuser=True)
    sign_in_with_mfa(client, admin)
    secret_url = "https://hooks.slack.com/services/T000/B000/very-secret-token"
    fields = {
        "name": "Releases",
        "priority": 10,
        "enabled": "on",
        "approvals_required": 1,
        "max_duration_hours": 4,
    }
    assert (
        client.post(
            reverse("admin:accessrequests_approvalrule_add"), {**fields, "slack_webhook_url": secret_url}
        ).status_code
        == 302
    )
    rule = ApprovalRule.objects.get(name="Releases")
    assert rule.slack_webhook_url == secret_url
    page = client.get(reverse("admin:accessrequests_approvalrule_change", args=[rule.pk])).content.decode()
    assert "very-secret-token" not in page and "hooks.slack.com" in page
    # Saving the rule again without typing the URL keeps it; the trail never holds it.
    changed = client.post(
        reverse("admin:accessrequests_approvalrule_change", args=[rule.pk]),
        {**fields, "max_duration_hours": 2},
    )
    assert changed.status_code == 302
    rule.refresh_from_db()
    assert rule.slack_webhook_url == secret_url and rule.max_duration_hours == 2
    events = AuditEvent.objects.filter(object_type="approvalrule")
    assert events.count() == 2
    assert all("very-secret-token" not in json.dumps([e.before, e.after]) for e in events)
    assert events.last().after["slack_webhook_url"] == "https://hooks.slack.com/…(redacted)"


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
