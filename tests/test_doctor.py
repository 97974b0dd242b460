"""manage.py doctor on the demo: it passes, and each thing it checks, broken one at a time at a real boundary (a
setting, the moto server's IAM and S3, a redis-server of the test's own stopped, a worker missing, the database),
makes that check fail (or warn) with its fix in words. Every ``--json`` report is validated against the shipped
schema.

The AWS checks that need IAM to refuse (a provisioning role that is gone, a wrong external id) are in
tests/test_deploy_guide.py, on the deployed organization with authorization on: moto on its own lets anyone
assume any role, even one that does not exist."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import boto3
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from jsonschema import Draft202012Validator

from accessrequests.audit import checkpoints
from accessrequests.audit import trail as audit
from accessrequests.aws.motoserver import free_port
from accessrequests.devworld.demo_world import BOUNDARY_POLICY, boundary_document
from accessrequests.doctor import CHECKS
from accessrequests.doctor.report import SCHEMA_PATH
from accessrequests.ledger import chain
from accessrequests.models import AuditEvent, AuditIntegrity, AwsAccount, CatalogSyncRun, DriftCheck
from tests.conftest import ROOT, database_url_for_subprocess, wait_for
from tests.factories import make_account, make_rule
from tests.test_audit import _recompute_from, tampering
from tests.test_provisioning_faults import PrivateRedis

MANAGEMENT = "123456789012"
SCHEMA = Draft202012Validator(json.loads(SCHEMA_PATH.read_text()))

pytestmark = pytest.mark.moto


def doctor(*args: str) -> tuple[int, dict[str, Any]]:
    """Run ``manage.py doctor --json`` here; (exit status, the report, checked against the schema)."""
    out = StringIO()
    try:
        call_command("doctor", "--json", *args, stdout=out)
        status = 0
    except SystemExit as exc:
        status = int(exc.code or 0)
    report = json.loads(out.getvalue())
    SCHEMA.validate(report)
    return status, report


def checks(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in report["checks"]}


def failing(report: dict[str, Any]) -> set[str]:
    return {item["name"] for item in report["checks"] if item["status"] == "fail"}


def only(name: str, *args: str) -> dict[str, Any]:
    """The one check's entry, from a run of it (and what it needs)."""
    _, report = doctor("--only", name, *args)
    return checks(report)[name]


@pytest.fixture
def demo(aws, settings, tmp_path) -> dict[str, Any]:
    """What ``make demo`` sets up before its processes start: the demo world on moto, seeded by seed_demo."""
    settings.VAR_DIR = tmp_path
    settings.DEBUG = True  # as make demo runs it (pytest-django turns it off)
    settings.GATEHOUSE_REGIONS = ["us-east-1", "eu-west-1"]
    call_command("seed_demo", "--no-tips", stdout=StringIO(), stderr=StringIO())
    production = AwsAccount.objects.exclude(account_id=MANAGEMENT).get(name="production")
    return {"endpoint": aws, "production": production.account_id}


def _worker_env(aws: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url_for_subprocess(),
        "DEBUG": "1",
        "AWS_ENDPOINT_URL": aws,
    }


# --- the demo passes --------------------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_doctor_passes_on_the_demo_and_says_what_to_look_at(demo, workers):
    workers.start(_worker_env(demo["endpoint"]))
    wait_for(lambda: only("worker")["status"] == "ok", timeout=60, what="the worker to answer the doctor")

    status, report = doctor()
    found = checks(report)
    assert status == 0 and report["status"] == "warn"
    assert list(found) == list(CHECKS)
    # The demo is sound; what it lacks on purpose is said, with the fix.
    warnings = {name for name, item in found.items() if item["status"] == "warn"}
    assert warnings == {"settings.external-id", "audit.bucket"}, report
    assert "GATEHOUSE_AUDIT_BUCKET is not set" in found["audit.bucket"]["message"]
    assert found["aws.provisioning-roles"]["message"].startswith("assumed GatehouseProvisioner")
    assert f"the hub's own account {MANAGEMENT}" in found["aws.provisioning-roles"]["message"]
    assert found["aws.boundary"]["message"] == f"{BOUNDARY_POLICY} exists in 2 accounts checked"
    assert "eu-west-1" in found["settings.aws"]["message"]
    assert "a catalog sync" in found["beat"]["message"]
    assert found["aws.identity-center"]["message"].startswith("arn:aws:sso:::instance/")

    # For people: aligned lines, each warning followed by its fix.
    out = StringIO()
    call_command("doctor", stdout=out)
    text = out.getvalue()
    assert text.startswith(
        f"Gatehouse doctor: {len(CHECKS)} checks: {len(CHECKS) - 2} ok, 2 warnings, 0 failures"
    )
    assert "\nwarn  audit.bucket" in text and "fix: deploy deploy/cloudformation/audit-bucket.yaml" in text


def test_the_schema_printed_is_the_one_shipped_and_an_unknown_check_is_refused_by_name():
    out = StringIO()
    call_command("doctor", "--schema", stdout=out)
    assert json.loads(out.getvalue()) == json.loads(SCHEMA_PATH.read_text())
    with pytest.raises(CommandError, match=r"no check is named 'aws\.roles'; the checks are: database, "):
        call_command("doctor", "--only", "aws.roles", stdout=StringIO())


@pytest.mark.django_db
def test_only_runs_the_named_checks_and_what_they_need(demo):
    _, report = doctor("--only", "aws.boundary")
    assert [c["name"] for c in report["checks"]] == [
        "database", "database.migrations", "aws.identity", "aws.provisioning-roles", "aws.boundary",
    ]  # fmt: skip
    _, report = doctor("--only", "audit")
    assert {c["name"] for c in report["checks"]} >= {"audit.bucket", "audit.chain"}


# --- settings -------------------------------------------------------------------------------------------


def test_a_region_that_is_not_one_fails_settings_aws(settings):
    settings.GATEHOUSE_REGIONS = ["us-east-1", "eu_west_1"]
    found = only("settings.aws")
    assert found["status"] == "fail" and "'eu_west_1' is not a region name" in found["message"]
    assert "GATEHOUSE_REGIONS" in found["fix"] and "us-east-1" in found["fix"]


def test_an_endpoint_left_set_in_production_is_a_warning(settings):
    settings.DEBUG = False
    found = only("settings.aws")
    assert found["status"] == "warn" and "unset AWS_ENDPOINT_URL in production" in found["fix"]


def test_an_external_id_aws_would_refuse_fails(settings):
    settings.AWS_PROVISIONING_EXTERNAL_ID = "not valid"
    found = only("settings.external-id")
    assert found["status"] == "fail" and "not a valid external id" in found["message"]
    assert "trust policies" in found["fix"]
    settings.AWS_PROVISIONING_EXTERNAL_ID = "short-id"
    assert only("settings.external-id")["status"] == "warn"
    settings.AWS_PROVISIONING_EXTERNAL_ID = "a-long-enough-external-id"
    assert only("settings.external-id")["message"] == "set (25 characters)"


def test_a_provisioning_role_name_iam_cannot_have_fails_and_no_boundary_warns(settings, monkeypatch):
    monkeypatch.setenv("AWS_PROVISIONING_ROLE_NAME", "Gatehouse Provisioner")
    found = only("settings.roles")
    assert found["status"] == "fail" and "ProvisioningRoleName" in found["fix"]
    monkeypatch.delenv("AWS_PROVISIONING_ROLE_NAME")
    settings.GATEHOUSE_PERMISSIONS_BOUNDARY = ""
    found = only("settings.roles")
    assert found["status"] == "warn" and "BoundaryPolicyName" in found["fix"]


def test_an_identity_center_role_that_is_no_role_arn_fails(settings):
    settings.GATEHOUSE_IDENTITY_CENTER_ROLE_ARN = "GatehouseIdentityCenter"
    found = only("settings.identity-center-role")
    assert found["status"] == "fail" and "role/GatehouseIdentityCenter" in found["fix"]


@pytest.mark.django_db
def test_an_unmanaged_account_enabled_in_the_catalog_fails_and_an_unknown_one_warns(settings):
    management = make_account(MANAGEMENT, "management")
    settings.GATEHOUSE_UNMANAGED_ACCOUNTS = [MANAGEMENT]
    found = only("settings.unmanaged-accounts")
    assert found["status"] == "fail" and found["details"]["accounts"] == [MANAGEMENT]
    assert "disable it under AWS accounts in the Django admin" in found["fix"]
    AwsAccount.objects.filter(pk=management.pk).update(enabled=False)
    assert only("settings.unmanaged-accounts")["status"] == "ok"
    settings.GATEHOUSE_UNMANAGED_ACCOUNTS = [MANAGEMENT, "999999999999"]
    found = only("settings.unmanaged-accounts")
    assert found["status"] == "warn" and found["details"]["accounts"] == ["999999999999"]


# --- the database -----------------------------------------------------------------------------------------


def _doctor_process(env: dict[str, str], *args: str) -> tuple[int, dict[str, Any]]:
    """The command as an operator runs it, in its own process with its own settings."""
    result = subprocess.run(
        [sys.executable, "manage.py", "doctor", "--json", *args],
        cwd=ROOT, env={**os.environ, "DEBUG": "1", **env}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report = json.loads(result.stdout)
    SCHEMA.validate(report)
    return result.returncode, report


def test_a_database_that_does_not_answer_fails_and_what_rests_on_it_is_not_checked():
    status, report = _doctor_process(
        {"DATABASE_URL": f"postgres://gatehouse:secret-password@127.0.0.1:{free_port()}/gatehouse"},
        "--only", "database", "--only", "beat",
    )  # fmt: skip
    found = checks(report)
    assert status == 1 and failing(report) == {"database", "database.migrations", "beat"}
    assert "cannot be reached" in found["database"]["message"] and "DATABASE_URL" in found["database"]["fix"]
    assert "secret-password" not in json.dumps(report)
    assert found["beat"]["message"] == "not checked: database.migrations failed"


def test_a_database_without_the_migrations_fails_naming_the_command(tmp_path):
    status, report = _doctor_process(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'empty.sqlite3'}"}, "--only", "database.migrations"
    )
    found = checks(report)["database.migrations"]
    assert status == 1 and found["status"] == "fail" and "migrations not applied" in found["message"]
    assert found["fix"].startswith("run python manage.py migrate")


# --- the broker, the worker and beat ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_stopped_broker_fails_and_the_worker_is_not_asked(settings):
    redis = PrivateRedis()
    redis.start()
    try:
        settings.CELERY_BROKER_URL = redis.url
        assert only("broker")["status"] == "ok"
    finally:
        redis.stop()
    _, report = doctor("--only", "worker", "--timeout", "1")
    found = checks(report)
    assert failing(report) == {"broker", "worker"}
    assert (
        f"127.0.0.1:{redis.port}" in found["broker"]["message"]
        and "CELERY_BROKER_URL" in found["broker"]["fix"]
    )
    assert found["worker"]["message"] == "not checked: broker failed"


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_no_worker_fails_and_a_worker_missing_a_queue_fails_naming_it(demo, workers):
    found = only("worker", "--timeout", "1")
    assert found["status"] == "fail" and found["fix"].startswith("start a worker: celery -A portal worker")
    workers.start(_worker_env(demo["endpoint"]), queues=["gatehouse"])

    def answered() -> dict[str, Any] | None:
        found = only("worker")
        return found if found["details"].get("workers") else None

    found = wait_for(answered, timeout=60, what="the worker to answer")
    assert found["status"] == "fail", found
    assert found["details"]["missing"] == [workers.prefix + "provisioning", workers.prefix + "notifications"]
    assert "(applying and revoking access)" in found["message"] and "without -Q" in found["fix"]


@pytest.mark.django_db
def test_beat_not_running_fails_once_its_work_is_old_and_warns_before_any():
    assert only("beat")["status"] == "warn"
    sync = CatalogSyncRun.objects.create(status="finished")
    DriftCheck.record(counts={})
    assert only("beat")["status"] == "ok"
    long_ago = timezone.now() - timedelta(hours=2)
    CatalogSyncRun.objects.filter(pk=sync.pk).update(started_at=long_ago)
    DriftCheck.objects.update(checked_at=long_ago)
    AuditIntegrity.objects.update(checked_at=long_ago)
    found = only("beat")
    assert found["status"] == "fail" and "ran 2 hours ago" in found["message"]
    assert found["fix"].startswith("start celery beat, exactly one instance")


# --- AWS ------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_aws_out_of_reach_fails_the_identity_and_everything_asked_of_aws(demo, settings, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    settings.AWS_ENDPOINT_URL = closed
    monkeypatch.setenv("AWS_ENDPOINT_URL", closed)
    status, report = doctor("--only", "aws", "--only", "audit.bucket")
    assert status == 1
    assert failing(report) == {
        "aws.identity", "aws.clock", "aws.provisioning-roles", "aws.boundary", "aws.identity-center",
        "audit.bucket",
    }  # fmt: skip
    found = checks(report)["aws.identity"]
    assert closed in found["message"] and "the hub role" in found["fix"]


@pytest.mark.django_db
def test_at_most_accounts_provisioning_roles_are_assumed_each_run(demo):
    make_account("111122223333", "another")  # moto lets the hub assume a role there too
    _admin("iam", demo["endpoint"], "111122223333").create_policy(
        PolicyName=BOUNDARY_POLICY, PolicyDocument=boundary_document("111122223333")
    )
    assert only("aws.provisioning-roles", "--accounts", "0")["message"].startswith(
        "assumed GatehouseProvisioner in 2 managed accounts; "
    )
    assert only("aws.provisioning-roles", "--accounts", "1")["message"].startswith(
        "assumed GatehouseProvisioner in a sample of 1 of 2 managed accounts (--accounts 0 checks all); "
    )
    _, report = doctor("--only", "aws.boundary", "--accounts", "1")
    # The boundary is looked for where a role was assumed, and in the hub's own account.
    assert checks(report)["aws.boundary"]["message"] == f"{BOUNDARY_POLICY} exists in 2 accounts checked"


@pytest.mark.django_db
def test_no_enabled_account_is_a_warning_to_sync_the_catalog(demo):
    AwsAccount.objects.update(enabled=False)
    found = only("aws.provisioning-roles")
    assert found["status"] == "warn" and "sync_catalog" in found["fix"]


def _admin(service: str, endpoint: str, account: str | None = None) -> Any:
    """A client as the organization's administrator (in a member account through its access role)."""
    credentials: dict[str, str] = {}
    if account is not None:
        sts = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint)
        role = f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole"
        answer = sts.assume_role(RoleArn=role, RoleSessionName="platform-admin")["Credentials"]
        credentials = {
            "aws_access_key_id": answer["AccessKeyId"],
            "aws_secret_access_key": answer["SecretAccessKey"],
            "aws_session_token": answer["SessionToken"],
        }
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint, **credentials)


@pytest.mark.django_db
def test_a_boundary_deleted_in_one_account_fails_naming_that_account(demo):
    production = demo["production"]
    _admin("iam", demo["endpoint"], production).delete_policy(
        PolicyArn=f"arn:aws:iam::{production}:policy/{BOUNDARY_POLICY}"
    )
    found = only("aws.boundary")
    assert found["status"] == "fail" and found["details"]["missing"] == [f"production ({production})"]
    assert "cross-account grants there fail" in found["message"]
    assert "deploy member-provisioning-role.yaml" in found["fix"]


@pytest.mark.django_db
def test_an_identity_center_role_in_the_wrong_account_fails(demo, settings):
    settings.GATEHOUSE_IDENTITY_CENTER_ROLE_ARN = (
        f"arn:aws:iam::{demo['production']}:role/OrganizationAccountAccessRole"
    )
    found = only("aws.identity-center")
    assert found["status"] == "fail" and "another account's or region's Identity Center" in found["message"]
    assert "the account that administers the organization's Identity Center" in found["fix"]


# --- the audit bucket and the chain ----------------------------------------------------------------------


def _events(count: int) -> None:
    for n in range(count):
        audit.record(action="test.event", object_type="thing", object_id=n)


@pytest.mark.django_db
def test_the_audit_bucket_must_be_locked_in_compliance_mode_with_versioning(aws, settings):
    s3 = _admin("s3", aws)
    settings.GATEHOUSE_AUDIT_BUCKET = "gatehouse-audit-missing"
    found = only("audit.bucket")
    assert found["status"] == "fail" and "does not exist" in found["message"]

    s3.create_bucket(Bucket="gatehouse-audit-plain")
    settings.GATEHOUSE_AUDIT_BUCKET = "gatehouse-audit-plain"
    found = only("audit.bucket")
    assert found["status"] == "fail"
    assert found["message"] == (
        "s3://gatehouse-audit-plain: Object Lock is off: anyone with delete rights can remove the archive; "
        "versioning is never enabled"
    )
    assert "audit-bucket.yaml" in found["fix"]

    s3.create_bucket(Bucket="gatehouse-audit", ObjectLockEnabledForBucket=True)
    settings.GATEHOUSE_AUDIT_BUCKET = "gatehouse-audit"

    def lock(mode: str, days: int) -> None:
        s3.put_object_lock_configuration(
            Bucket="gatehouse-audit",
            ObjectLockConfiguration={
                "ObjectLockEnabled": "Enabled",
                "Rule": {"DefaultRetention": {"Mode": mode, "Days": days}},
            },
        )

    lock("GOVERNANCE", 365)
    found = only("audit.bucket")
    assert found["status"] == "fail" and "governance mode" in found["message"]
    lock("COMPLIANCE", 30)
    found = only("audit.bucket")
    assert found["status"] == "warn" and "keep GATEHOUSE_AUDIT_RETENTION_DAYS equal" in found["fix"]
    lock("COMPLIANCE", 365)
    found = only("audit.bucket")
    assert found["status"] == "ok" and found["details"] == {
        "object_lock": True, "mode": "COMPLIANCE", "days": 365, "versioning": "Enabled",
    }  # fmt: skip


@pytest.mark.django_db
def test_a_rewritten_audit_event_after_the_newest_checkpoint_fails_the_chain():
    _events(3)
    checkpoints.write(force=True)
    assert only("audit.chain")["status"] == "ok"
    audit.record(action="test.event", object_type="thing", object_id=1)
    newest = AuditEvent.objects.order_by("-seq").first()
    with tampering() as cursor:
        cursor.execute(
            "UPDATE accessrequests_auditevent SET object_id = %s WHERE seq = %s", ["2", newest.seq]
        )
    found = only("audit.chain")
    assert found["status"] == "fail"
    assert found["message"] == (
        f"the audit trail is broken at seq {newest.seq} (row 2): its content does not match its stored hash"
    )
    assert "security incident" in found["fix"] and "verify_audit" in found["fix"]


@pytest.mark.django_db
def test_deleted_newest_events_fail_the_chain():
    _events(3)
    checkpoints.write()
    with tampering() as cursor:
        cursor.execute(
            "DELETE FROM accessrequests_auditevent WHERE seq = (SELECT MAX(seq) FROM accessrequests_auditevent)"
        )
    found = only("audit.chain")
    assert found["status"] == "fail" and "the newest events were deleted" in found["message"]


@pytest.mark.django_db
def test_a_break_the_periodic_verification_recorded_fails_the_chain():
    _events(3)
    AuditIntegrity.objects.update_or_create(
        pk=AuditIntegrity.SINGLETON,
        defaults={"ok": False, "broken_seq": 3, "reason": "missing [database]", "checked_at": timezone.now()},
    )
    found = only("audit.chain")
    assert found["status"] == "fail" and "broken at seq 3" in found["message"]


@pytest.mark.django_db
def test_checkpoints_that_stopped_or_a_missing_key_are_warnings(settings):
    _events(3)
    found = only("audit.chain")
    assert found["status"] == "ok" and "the first checkpoint comes with beat's first run" in found["message"]
    # A trail begun an hour ago (its times rewritten and every hash made to match, as no tamperer could sign).
    with tampering() as cursor:
        cursor.execute(
            "UPDATE accessrequests_auditevent SET created_at = %s", [timezone.now() - timedelta(hours=1)]
        )
        _recompute_from(cursor, 1)
    found = only("audit.chain")
    assert found["status"] == "warn" and "no checkpoint was ever written" in found["message"]
    checkpoints.write(force=True)
    audit.record(action="test.event", object_type="thing", object_id=1)
    newest = checkpoints.list_local()[-1]
    data = newest.load()
    assert only("audit.chain")["status"] == "ok"
    # The checkpoint was written 20 minutes ago and events came since: beat or the key is missing.
    path = Path(settings.GATEHOUSE_AUDIT_CHECKPOINT_DIR) / newest.name
    old = {**data, "created_at": (timezone.now() - timedelta(minutes=20)).isoformat()}
    old["signature"] = chain.sign(old, settings.GATEHOUSE_AUDIT_CHECKPOINT_KEY.encode())
    path.write_text(json.dumps(old))
    found = only("audit.chain")
    assert found["status"] == "warn" and "was written 20 minutes ago" in found["message"]
    settings.GATEHOUSE_AUDIT_CHECKPOINT_KEY = ""
    found = only("audit.chain")
    assert found["status"] == "warn" and "GATEHOUSE_AUDIT_CHECKPOINT_KEY_FILE" in found["fix"]


@pytest.mark.django_db
def test_a_checkpoint_signed_with_another_key_fails_the_chain(settings):
    _events(3)
    checkpoints.write(force=True)
    settings.GATEHOUSE_AUDIT_CHECKPOINT_KEY = "another-key-than-the-worker-signs-with"
    found = only("audit.chain")
    assert found["status"] == "fail" and "has a bad signature" in found["message"]
    assert "give this process the worker's key" in found["fix"]


# --- the rules file -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_rules_file_must_be_valid_and_in_force(settings, tmp_path):
    account = make_account()
    make_rule("Production", accounts=[account], approvals=2)
    make_rule("Sandbox", accounts=[account])
    rules = tmp_path / "rules.yaml"
    call_command("rules", "export", "--output", str(rules), stdout=StringIO())
    settings.GATEHOUSE_RULES_FILE = str(rules)
    found = only("rules.file")
    assert found["status"] == "ok" and found["message"] == f"{rules}: valid, 2 approval rules, in force"

    rules.write_text(rules.read_text().replace("approvals: 2", "approvals: 3", 1))
    found = only("rules.file")
    assert found["status"] == "warn" and "not in force: 1 change to apply" in found["message"]
    assert "beat applies the file" in found["fix"]

    rules.write_text(rules.read_text().replace("approvals: 3", "approvals: -1", 1))
    found = only("rules.file")
    assert found["status"] == "fail" and "-1 is less than the minimum of 1" in found["message"]
    assert f"python manage.py rules validate {rules}" in found["fix"]

    settings.GATEHOUSE_RULES_FILE = str(tmp_path / "missing.yaml")
    assert only("rules.file")["status"] == "fail"


# --- /healthz and the admin's Doctor page ----------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_shows_the_newest_full_run_with_its_time_and_the_admin_page_runs_it(client, settings):
    from django.urls import reverse

    from tests.conftest import make_user, sign_in_with_mfa

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    health = client.get("/healthz")
    assert health.json()["doctor"]["status"] is None and "not run yet" in health.json()["doctor"]["detail"]

    settings.AWS_DEFAULT_REGION = "moon-base"
    status, report = doctor("--only", "settings.aws")
    assert client.get("/healthz").json()["doctor"]["status"] is None  # a partial run is not the deployment's
    status, report = doctor("--accounts", "1", "--timeout", "0.5")
    assert status == 1
    shown = client.get("/healthz").json()["doctor"]
    assert shown["status"] == "fail" and shown["checked_at"] == report["checked_at"]
    assert shown["summary"] == report["summary"]
    problem = next(p for p in shown["problems"] if p["name"] == "settings.aws")
    assert "'moon-base' is not a region name" in problem["message"] and "AWS_DEFAULT_REGION" in problem["fix"]
    assert all(p["status"] != "ok" for p in shown["problems"])

    # The admin page: outsiders get the admin's login, staff see every check with its fix.
    page = reverse("admin:doctor")
    outsider = make_user("someone", "developers")
    client.force_login(outsider)
    assert client.get(page)["Location"].startswith(reverse("admin:login"))
    admin = make_user("root-admin", "admins", is_staff=True, is_superuser=True)
    sign_in_with_mfa(client, admin)
    assert 'href="/admin/doctor/"' in client.get(reverse("admin:index")).content.decode()
    settings.AWS_DEFAULT_REGION = "us-east-1"
    settings.GATEHOUSE_IDENTITY_CENTER_ROLE_ARN = "not-an-arn"
    body = client.get(page).content.decode()
    assert 'data-check="settings.identity-center-role"' in body
    row = body.split('data-check="settings.identity-center-role"')[1].split("</tr>")[0]
    assert (
        "<strong>FAIL</strong>" in row
        and "is not an IAM role ARN" in row
        and "identity-center-role.yaml" in row
    )
    assert body.count("data-check=") == len(CHECKS)
    shown = client.get("/healthz").json()["doctor"]
    assert {p["name"] for p in shown["problems"]} >= {"settings.identity-center-role"}
    assert not any("moon-base" in p["message"] for p in shown["problems"])  # the newer run replaced the older


# --- what Gatehouse talks to besides AWS --------------------------------------------------------------------


class TinySmtpd:
    """An SMTP server of the test's own on 127.0.0.1: a greeting, 250 to EHLO/HELO/NOOP, 221 to QUIT."""

    def __init__(self) -> None:
        import socketserver
        import threading

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 tiny ESMTP\r\n")
                for line in self.rfile:
                    verb = line.split(b" ", 1)[0].strip().upper()
                    if verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    self.wfile.write(b"250 ok\r\n" if verb in (b"EHLO", b"HELO", b"NOOP") else b"502 no\r\n")

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_email_is_checked_only_when_it_goes_by_smtp_and_a_closed_port_fails(settings):
    assert only("integrations.email")["message"].startswith("not configured")
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    found = only("integrations.email", "--timeout", "1")
    assert (
        found["status"] == "fail" and f"127.0.0.1:{settings.EMAIL_PORT} does not answer" in found["message"]
    )
    assert "EMAIL_URL" in found["fix"]
    smtpd = TinySmtpd()
    try:
        settings.EMAIL_PORT = smtpd.port
        found = only("integrations.email")
        assert found["status"] == "ok", found
        assert found["message"] == f"the SMTP server 127.0.0.1:{smtpd.port} answers"
    finally:
        smtpd.close()


def test_a_slack_token_slack_refuses_or_a_slack_out_of_reach_fails(settings):
    from tests.slack_support import BOT_TOKEN, FakeSlack

    assert only("integrations.slack")["message"].startswith("not configured")
    slack = FakeSlack()
    try:
        settings.SLACK_API_URL = slack.url
        settings.SLACK_BOT_TOKEN = "xoxb-revoked"
        found = only("integrations.slack")
        assert found["status"] == "fail" and "auth.test: invalid_auth" in found["message"]
        assert "Bot User OAuth Token" in found["fix"] and "xoxb-revoked" not in json.dumps(found)
        settings.SLACK_BOT_TOKEN = BOT_TOKEN
        found = only("integrations.slack")
        assert found["status"] == "ok" and found["message"] == "the bot token is gatehouse in Example"
        assert [c["method"] for c in slack.calls] == ["auth.test", "auth.test"]
    finally:
        slack.close()
    settings.SLACK_API_URL = f"http://127.0.0.1:{free_port()}/api/"
    found = only("integrations.slack")
    assert found["status"] == "fail" and "unreachable" in found["message"]


@pytest.mark.django_db(transaction=True)
def test_the_oidc_providers_discovery_document_must_answer_and_name_the_issuer_set(
    settings, tmp_path, live_server
):
    from tests.oidc_support import OpenIdProvider

    assert only("integrations.oidc")["message"].startswith("not configured")
    settings.OIDC_CLIENT_ID = "gatehouse"
    settings.OIDC_SERVER_URL = f"http://127.0.0.1:{free_port()}"
    found = only("integrations.oidc")
    assert (
        found["status"] == "fail" and "/.well-known/openid-configuration: ConnectionError" in found["message"]
    )
    assert "OIDC_SERVER_URL" in found["fix"]
    provider = OpenIdProvider(tmp_path / "provider.json", live_server.url).start()
    try:
        settings.OIDC_SERVER_URL = provider.url
        found = only("integrations.oidc")
        assert found["status"] == "ok", found
        other = provider.url.replace("127.0.0.1", "localhost")
        assert other != provider.url
        settings.OIDC_SERVER_URL = other
        found = only("integrations.oidc")
        assert (
            found["status"] == "warn" and f"set OIDC_SERVER_URL to {provider.url.rstrip('/')}" == found["fix"]
        )
        settings.OIDC_SERVER_URL = live_server.url  # a web server, but no OpenID Provider
        found = only("integrations.oidc")
        assert found["status"] == "fail" and "answered 404, not a discovery document" in found["message"]
    finally:
        provider.stop()


def test_a_short_scim_token_warns_and_one_with_white_space_fails(settings):
    assert only("integrations.scim")["message"].startswith("not configured")
    settings.GATEHOUSE_SCIM_TOKEN = "short-token"
    found = only("integrations.scim")
    assert (
        found["status"] == "warn" and "11 characters" in found["message"] and "32 characters" in found["fix"]
    )
    settings.GATEHOUSE_SCIM_TOKEN = "x" * 40 + "\n"
    assert only("integrations.scim")["status"] == "fail"
    settings.GATEHOUSE_SCIM_TOKEN = "x" * 40
    found = only("integrations.scim")
    assert (found["status"], found["message"], found["fix"]) == ("ok", "set (40 characters)", "")


# --- the clock against AWS's -------------------------------------------------------------------------------


class DateShiftingProxy:
    """An HTTP proxy of the test's own in front of the moto server: it forwards every request and rewrites the
    answer's Date header by ``shift`` seconds, as AWS's answer looks to a machine whose clock is that far off."""

    def __init__(self, upstream: str) -> None:
        import http.client
        import threading
        from email.utils import formatdate
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
        from urllib.parse import urlparse

        target = urlparse(upstream)
        proxy = self
        self.shift = 0.0
        self.dates: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
                upstream_conn.request(self.command, self.path, body=body, headers=dict(self.headers))
                answer = upstream_conn.getresponse()
                data = answer.read()
                upstream_conn.close()
                self.send_response_only(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in (
                        "date",
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "server",
                    ):
                        self.send_header(name, value)
                date = formatdate(time.time() + proxy.shift, usegmt=True)
                proxy.dates.append(date)
                self.send_header("Date", date)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.django_db
def test_a_clock_a_minute_off_aws_warns_and_five_minutes_off_fails(aws, settings, monkeypatch):
    proxy = DateShiftingProxy(aws)
    try:
        settings.AWS_ENDPOINT_URL = proxy.url
        monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
        found = only("aws.clock")
        assert found["status"] == "ok" and abs(found["details"]["skew_seconds"]) <= 2, found
        proxy.shift = -90  # AWS's clock 90 seconds behind this machine's: this one is ahead
        found = only("aws.clock")
        assert found["status"] == "warn", found
        assert "ahead of AWS" in found["message"] and 88 <= found["details"]["skew_seconds"] <= 92
        assert "NTP" in found["fix"]
        proxy.shift = 6 * 60
        status, report = doctor("--only", "aws.clock")
        found = checks(report)["aws.clock"]
        assert status == 1 and found["status"] == "fail", found
        assert "behind AWS: every AWS call is refused" in found["message"]
        assert -362 <= found["details"]["skew_seconds"] <= -358
        assert len(proxy.dates) == 3  # each answer came through the proxy
    finally:
        proxy.close()
