"""DESIGN.md's last security invariant: secrets only from the environment, no AWS keys in the database, nothing
sensitive in the logs (nor in the audit trail, which auditors export).

One walk touches every place a secret passes through: the demo world's IAM access keys, the catalog sync, a password
sign-in (and a wrong one), a TOTP sign-in, a personal API token issued on its page and used, and a grant applied
in moto with the hub's own access key. Then every log record, every audit event and every row of every table is
searched for each secret.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.apps import apps
from django.test import Client
from django.urls import reverse

from accessrequests.models import AuditEvent, GrantStatus
from accessrequests.provisioning import engine as provisioning
from tests.conftest import enable_totp, totp_code
from tests.provisioning_support import PortalWorld, admin_credentials, aws_env, use_credentials

pytestmark = [pytest.mark.moto, pytest.mark.django_db]

PASSWORD = "correct-horse-battery"
# Secrets the database must hold for the feature to work at all; they never reach the logs or the audit trail.
KEPT_BY_DESIGN = {
    "the session id": "Django's session table is how a sign-in is remembered",
    "the TOTP secret": "allauth's authenticator row: checking a code needs it",
}


def _everything_in_the_database() -> str:
    """Every row of every model, as text (JSON fields and all)."""
    rows = []
    for model in apps.get_models():
        for row in model.objects.values():
            rows.append(json.dumps(row, default=str))
    return "\n".join(rows)


def test_no_secret_reaches_the_logs_the_audit_trail_or_the_database(aws, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    from accessrequests.devworld.demo_world import seed_demo_world

    seeded = seed_demo_world()  # creates access keys for mateojackson and marymajor
    demo_keys = seeded["access_keys"]
    assert all(key["secret_access_key"] for key in demo_keys.values())
    world = PortalWorld(seeded)
    hub = admin_credentials(aws)
    use_credentials(monkeypatch, aws_env({}, aws), hub)

    # Passwords: one wrong, one right.
    browser = Client()
    browser.post(reverse("account_login"), {"login": "requester", "password": "not-the-" + PASSWORD})
    signed_in = browser.post(reverse("account_login"), {"login": "requester", "password": PASSWORD})
    assert signed_in.status_code == 302
    session_id = browser.cookies["sessionid"].value

    # TOTP: the approver signs in with a code.
    totp_secret = enable_totp(world.approver)
    approver = Client()
    approver.post(reverse("account_login"), {"login": "approver", "password": PASSWORD})
    code = totp_code(totp_secret)
    assert approver.post(reverse("mfa_authenticate"), {"code": code}).status_code == 302

    # A personal API token, issued on its page and used once.
    issued = browser.post(
        reverse("tokens"), {"name": "laptop", "scopes": ["read"], "days": 7}
    ).content.decode()
    token = issued.split('data-testid="new-token"')[1].split("<code>", 1)[1].split("</code>", 1)[0]
    assert token.startswith("gh_")
    listed = Client().get("/api/v1/requests/", HTTP_AUTHORIZATION=f"Bearer {token}")
    assert listed.status_code == 200

    # A grant applied in AWS with the hub's access key.
    grant = world.approve("mateojackson")
    provisioning.reconcile_principal(principal_id=grant.principal_id, account_id=grant.account_id)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE, grant.last_error

    secrets = {
        "the password": PASSWORD,
        "the wrong password": "not-the-" + PASSWORD,
        "the session id": session_id,
        "the TOTP secret": totp_secret,
        "the API token": token,
        "the API token's secret part": token.removeprefix("gh_").partition("_")[2],  # gh_<hex key>_<secret>
        "the hub's secret key": hub["AWS_SECRET_ACCESS_KEY"],
        "the hub's access key id": hub["AWS_ACCESS_KEY_ID"],
    }
    assert len(secrets["the API token's secret part"]) >= 40  # the whole secret, not a fragment of it
    for user, key in demo_keys.items():
        secrets[f"{user}'s secret key"] = key["secret_access_key"]
        secrets[f"{user}'s access key id"] = key["access_key_id"]

    logs = caplog.text + "\n".join(repr(record.args) for record in caplog.records)
    audit = "\n".join(json.dumps(event, default=str) for event in AuditEvent.objects.values())
    database = _everything_in_the_database()
    assert caplog.records and AuditEvent.objects.filter(action="auth.login_failed").exists()
    for what, value in secrets.items():
        assert value not in logs, f"{what} is in the logs"
        assert value not in audit, f"{what} is in the audit trail"
        if what not in KEPT_BY_DESIGN:
            assert value not in database, f"{what} is in the database"
