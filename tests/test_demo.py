"""The demo: ``manage.py seed_demo`` on a moto server, and ``manage.py demo`` as a real process tree."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from io import StringIO
from pathlib import Path

import boto3
import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.authz.routing import covered_accounts, match_rule, scope_of
from accessrequests.aws.motoserver import free_port, start_moto_server, stop_moto_server
from accessrequests.intake.parse import parse_access_denied
from accessrequests.intake.resolve import resolve_denial
from accessrequests.management.commands.seed_demo import DEMO_PASSWORD, MATEO_ERROR
from accessrequests.models import (
    AccessLevel,
    ApprovalRule,
    AuditEvent,
    AwsAccount,
    DriftCheck,
    Environment,
    Grant,
    GrantStatus,
    PermissionSet,
    Principal,
    PrincipalKind,
    RequestKind,
)
from accessrequests.workflow.requests import RequestDraft, request_approve, request_submit
from tests.conftest import ROOT, wait_for
from tests.factories import fresh_factor
from tests.provisioning_support import reconcile

MANAGEMENT = "123456789012"


def _seed(settings, tmp_path: Path) -> str:
    settings.VAR_DIR = tmp_path
    out = StringIO()
    call_command("seed_demo", stdout=out, stderr=StringIO())
    return out.getvalue()


# --- seed_demo ---


@pytest.mark.django_db
def test_seed_demo_refuses_without_an_endpoint(settings, monkeypatch):
    settings.AWS_ENDPOINT_URL = None
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)

    with pytest.raises(CommandError, match="AWS_ENDPOINT_URL is not set"):
        call_command("seed_demo", stdout=StringIO())


@pytest.mark.moto
@pytest.mark.django_db
def test_seed_demo_creates_the_demo_users_in_their_roles(aws, settings, tmp_path):
    _seed(settings, tmp_path)

    users = {user.username: user for user in get_user_model().objects.prefetch_related("groups")}
    groups = {name: sorted(g.name for g in user.groups.all()) for name, user in users.items()}
    assert groups == {
        "requester": ["requesters"],
        "marymajor": ["requesters"],
        "approver": ["approvers"],
        "approver2": ["approvers"],
        "admin": ["admins"],
        "auditor": ["auditors"],
    }
    assert all(user.check_password(DEMO_PASSWORD) for user in users.values())
    assert users["admin"].is_staff and users["admin"].is_superuser
    assert not any(users[name].is_staff for name in ("requester", "approver", "auditor"))


@pytest.mark.moto
@pytest.mark.django_db
def test_seed_demo_links_requesters_to_their_principals(aws, settings, tmp_path):
    _seed(settings, tmp_path)

    linked = {
        username: sorted((p.kind, p.name) for p in Principal.objects.filter(users__username=username))
        for username in ("requester", "marymajor", "approver")
    }
    assert linked == {
        "requester": [(PrincipalKind.IAM_USER, "mateojackson"), (PrincipalKind.IC_USER, "paulo.santos")],
        "marymajor": [(PrincipalKind.IAM_USER, "marymajor")],
        "approver": [],
    }


@pytest.mark.moto
@pytest.mark.django_db
def test_seed_demo_creates_the_approval_rules(aws, settings, tmp_path):
    _seed(settings, tmp_path)

    rules = {rule.name: rule for rule in ApprovalRule.objects.prefetch_related("accounts", "approver_groups")}
    assert list(rules) == ["Production", "PassRole", "Non-production pipelines"]  # priority order
    production, pass_role, non_production = rules.values()
    # By environment (the demo accounts' tags in Organizations), never by lists of account ids.
    assert production.environments == [Environment.PRODUCTION]
    assert non_production.environments == [Environment.STAGING, Environment.DEVELOPMENT, Environment.SANDBOX]
    assert not any(rule.accounts.exists() for rule in rules.values())
    routed = {
        account.environment: match_rule(
            account=account, kind=RequestKind.PIPELINE, level="viewer", pipelines=[]
        )
        for account in AwsAccount.objects.all()
    }
    assert routed == {Environment.PRODUCTION: production, Environment.DEVELOPMENT: non_production}
    assert AwsAccount.objects.get(account_id=MANAGEMENT).environment == Environment.DEVELOPMENT
    assert pass_role.kinds == [RequestKind.PASS_ROLE] and not pass_role.environments
    assert [(r.approvals_required, r.max_duration_hours) for r in rules.values()] == [(2, 4), (1, 8), (1, 8)]
    for rule in rules.values():
        assert [g.name for g in rule.approver_groups.all()] == ["approvers"]
        assert rule.contact == "platform-team@example.com"
        assert rule.auto_approve_low_risk is False and rule.allow_permanent is False


@pytest.mark.moto
@pytest.mark.django_db
def test_the_error_the_tips_suggest_resolves_to_a_filable_request(aws, settings, tmp_path):
    output = _seed(settings, tmp_path)
    assert MATEO_ERROR in output

    denial = parse_access_denied(MATEO_ERROR).denial
    assert denial is not None
    resolution = resolve_denial(denial)

    assert resolution.error is None, resolution.error
    principal = Principal.objects.get(pk=resolution.initial["principal"])
    assert principal.users.filter(username="requester").exists()
    account = AwsAccount.objects.get(pk=resolution.initial["account"])
    [pipeline] = account.pipelines.filter(pk__in=resolution.initial["pipelines"])
    rule = match_rule(
        account=account,
        kind=resolution.initial["kind"],
        level=resolution.initial["level"],
        pipelines=[pipeline],
    )
    assert (pipeline.name, rule and rule.name) == ("my-pipeline", "Non-production pipelines")


@pytest.mark.moto
@pytest.mark.django_db
def test_seed_demo_writes_the_access_keys_privately_once(aws, settings, tmp_path):
    first = _seed(settings, tmp_path)
    keys_file = tmp_path / "demo-aws-keys.json"
    written = keys_file.read_text()

    second = _seed(settings, tmp_path)

    assert f"written to {keys_file} (mode 0600)" in first
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    document = json.loads(written)
    assert document["endpoint_url"] == aws
    assert sorted(document["users"]) == ["marymajor", "mateojackson"]
    assert all(key["aws_secret_access_key"] for key in document["users"].values())
    # AWS shows a secret once: the re-run keeps the file of the first run.
    assert f"kept in {keys_file}" in second
    assert keys_file.read_text() == written


@pytest.mark.moto
@pytest.mark.django_db
def test_seed_demo_twice_changes_nothing(aws, settings, tmp_path):
    _seed(settings, tmp_path)
    counts = (
        get_user_model().objects.count(),
        ApprovalRule.objects.count(),
        Principal.objects.count(),
        sorted(get_user_model().objects.values_list("username", "password")),
    )

    output = _seed(settings, tmp_path)

    assert "nothing created" in output and "0 created, 6 kept" in output
    assert counts == (
        get_user_model().objects.count(),
        ApprovalRule.objects.count(),
        Principal.objects.count(),
        sorted(get_user_model().objects.values_list("username", "password")),
    )
    assert AuditEvent.objects.filter(action="demo.seeded").count() == 2


@pytest.mark.moto
@pytest.mark.django_db
def test_seed_demo_disables_accounts_of_an_earlier_demo_world(aws, settings, tmp_path):
    earlier = AwsAccount.objects.create(account_id="999988887777", name="production")

    output = _seed(settings, tmp_path)

    earlier.refresh_from_db()
    assert earlier.enabled is False
    assert "999988887777" in output
    production = ApprovalRule.objects.get(name="Production")
    routed = covered_accounts([scope_of(production)]).filter(enabled=True)
    assert [(a.environment, a.name) for a in routed] == [(Environment.PRODUCTION, "production")]
    assert earlier not in routed


def _use_moto(url: str, settings, monkeypatch) -> None:
    """Point the portal (settings and environment) at the moto server at ``url``."""
    from accessrequests.aws.client import clear_credentials_cache

    settings.AWS_ENDPOINT_URL = url
    monkeypatch.setenv("AWS_ENDPOINT_URL", url)
    clear_credentials_cache()


def _demo_grants() -> dict[str, Grant]:
    """As the README's try-it path does: requester asks, approver approves, the worker applies; here for
    mateojackson (an IAM policy) and paulo.santos (an Identity Center assignment)."""
    users = {user.username: user for user in get_user_model().objects.all()}
    account = AwsAccount.objects.get(account_id=MANAGEMENT)
    asks = {
        "mateojackson": {
            "kind": RequestKind.PIPELINE,
            "pipelines": [account.pipelines.get(name="my-pipeline")],
            "level": AccessLevel.VIEWER,
        },
        "paulo.santos": {
            "kind": RequestKind.PERMISSION_SET,
            "permission_set": PermissionSet.objects.get(name="CodePipelineReadOnly"),
        },
    }
    grants = {}
    for name, ask in asks.items():
        draft = RequestDraft(
            principal=Principal.objects.get(name=name), account=account, justification="release 42", **ask
        )
        req = request_submit(requester=users["requester"], draft=draft)
        request_approve(
            request_id=req.pk, reviewer=users["approver"], second_factor=fresh_factor(users["approver"])
        )
        grants[name] = Grant.objects.get(request=req)
        reconcile(grants[name])
        grants[name].refresh_from_db()
        assert grants[name].status == GrantStatus.ACTIVE
    return grants


def _held_in_aws(url: str, seeded_ic: dict) -> tuple[str, list[str]]:
    """What moto at ``url`` holds: mateojackson's Gatehouse policy, and who is assigned CodePipelineReadOnly."""
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1")
    try:
        held = json.dumps(
            iam.get_user_policy(UserName="mateojackson", PolicyName="gatehouse")["PolicyDocument"]
        )
    except iam.exceptions.NoSuchEntityException:
        held = ""
    sso = boto3.client("sso-admin", endpoint_url=url, region_name="us-east-1")
    assigned = sso.list_account_assignments(
        InstanceArn=seeded_ic["instance_arn"],
        AccountId=MANAGEMENT,
        PermissionSetArn=PermissionSet.objects.get(name="CodePipelineReadOnly").arn,
    )["AccountAssignments"]
    return held, [a["PrincipalId"] for a in assigned]


@pytest.mark.moto
@pytest.mark.django_db
def test_a_restart_on_a_new_moto_server_keeps_the_demo_true_in_aws(settings, tmp_path, monkeypatch, client):
    """Ctrl-C and make demo again: the database stays, the moto server is a new one. The world comes back with
    the same ids, every access the pages call Active is in AWS again, each account is listed once, and the
    dashboard says when drift was last checked."""
    first, first_url = start_moto_server()
    try:
        _use_moto(first_url, settings, monkeypatch)
        _seed(settings, tmp_path)
        admin = get_user_model().objects.get(username="admin")
        client.force_login(admin)
        status = client.get("/dashboard/").content.decode()
        assert "Not checked yet" in status
        grants = _demo_grants()
        seeded_ic = {"instance_arn": grants["paulo.santos"].principal.identity_center.instance_arn}
        before = _held_in_aws(first_url, seeded_ic)
        assert "codepipeline:GetPipeline" in before[0] and before[1] == [
            grants["paulo.santos"].principal.external_id
        ]
    finally:
        stop_moto_server(first)

    second, second_url = start_moto_server()
    try:
        _use_moto(second_url, settings, monkeypatch)
        assert _held_in_aws_empty(second_url)
        output = _seed(settings, tmp_path)
        assert "2 principals compared, 2 put back (drift repaired)" in output
        assert (
            _held_in_aws(second_url, seeded_ic) == before
        )  # the same ids: the same access, in the new server
    finally:
        stop_moto_server(second)

    production = AwsAccount.objects.get(name="production")
    assert AwsAccount.objects.count() == 2 and AwsAccount.objects.filter(enabled=False).count() == 0
    dashboard = client.get("/dashboard/").content.decode()
    listed = dashboard.split('data-testid="synced-accounts"')[1].split("</ul>")[0]
    assert listed.count(f"production ({production.account_id})") == 1 and listed.count("<li>") == 2
    check = DriftCheck.current()
    assert check is not None and (check.checked, check.drifted, check.repaired) == (2, 2, 2)
    when = f"at {timezone.localtime(check.checked_at):%H:%M} UTC on {timezone.localtime(check.checked_at):%Y-%m-%d}"
    status = re.sub(r"<[^>]+>", "", dashboard.split('data-testid="drift-status">')[1].split("</p>")[0])
    assert status == f"Drift found in 2 of 2 principals {when}; 2 repaired."
    client.force_login(get_user_model().objects.get(username="requester"))
    for grant in grants.values():
        page = client.get(f"/requests/{grant.request_id}/").content.decode()
        assert 'data-testid="grant-status">Grant: <span class="badge' in page and ">Active<" in page
        extend = client.get(f"/requests/new/?extends={grant.pk}")
        assert extend.status_code == 200 and 'data-testid="extending"' in extend.content.decode()


def _held_in_aws_empty(url: str) -> bool:
    """A new moto server holds nothing yet: no demo user at all."""
    iam = boto3.client("iam", endpoint_url=url, region_name="us-east-1")
    return iam.list_users()["Users"] == []


@pytest.mark.moto
@pytest.mark.django_db
def test_seed_demo_refuses_a_database_of_another_demo_world_and_changes_nothing(aws, settings, tmp_path):
    audit.record(action="demo.seeded", object_type="demo", after={"world": "an older, random world"})
    settings.VAR_DIR = tmp_path
    with pytest.raises(CommandError, match="seeded against another demo AWS world") as refused:
        call_command("seed_demo", stdout=StringIO(), stderr=StringIO())
    assert refused.value.returncode == 3
    assert AwsAccount.objects.count() == 0 and not get_user_model().objects.exists()


# --- manage.py demo ---

# The demo must run on its own embedded profile under the temporary var dir, never on the services the
# test run itself may point at (CI's PostgreSQL and Redis) nor on the test run's moto server.
_NOT_INHERITED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "CELERY_RESULT_BACKEND",
    "AWS_ENDPOINT_URL",
    "SITE_URL",
    "GATEHOUSE_REGIONS",
    "DEMO_PORT",
)


def _demo_env(var_dir: Path, port: int) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _NOT_INHERITED}
    return env | {"DEBUG": "1", "DEMO_PORT": str(port), "GATEHOUSE_VAR_DIR": str(var_dir)}


def _processes_of(var_dir: Path) -> dict[int, str]:
    """Live processes whose environment names this var dir: the demo's whole tree, grandchildren included."""
    marker = f"GATEHOUSE_VAR_DIR={var_dir}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # exited meanwhile, or not ours to read
        if state != "Z":
            found[int(entry.name)] = command.strip()
    return found


def _start_demo(var_dir: Path, port: int, output_path: Path, **env: str) -> subprocess.Popen:
    """``manage.py demo`` as ``make demo`` runs it, in its own session, its output to ``output_path``."""
    with output_path.open("wb") as output:
        return subprocess.Popen(
            [sys.executable, "manage.py", "demo"],
            cwd=ROOT,
            env=_demo_env(var_dir, port) | env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _kill_if_running(demo: subprocess.Popen) -> None:
    if demo.poll() is None:
        os.killpg(demo.pid, signal.SIGKILL)
        demo.wait()


def _get(url: str) -> tuple[int | None, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return None, b""


def _healthy_with_worker(base: str) -> bool:
    login, _ = _get(f"{base}/accounts/login/")
    health, body = _get(f"{base}/healthz")
    return login == 200 and health == 200 and bool(json.loads(body)["worker"]["ok"])


@pytest.mark.worker
@pytest.mark.moto
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to look for leftovers")
def test_demo_serves_a_healthy_portal_and_ctrl_c_leaves_no_process(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    output_path = tmp_path / "demo-output.txt"
    started = time.monotonic()
    demo = _start_demo(tmp_path, port, output_path)
    try:
        # The bar: a working login page and a worker heartbeat within 3 minutes.
        wait_for(
            lambda: demo.poll() is not None or _healthy_with_worker(base),
            timeout=180,
            interval=0.5,
            what="the demo's login page and /healthz with a worker heartbeat",
        )
        assert demo.poll() is None, output_path.read_text()
        ready_after = time.monotonic() - started
        print(f"manage.py demo: login page and healthy /healthz after {ready_after:.1f}s")
        # The banner is written line by line after the page answers: wait for its last line, not its first.
        wait_for(
            lambda: "Ctrl-C stops everything." in output_path.read_text(), timeout=60, what="the whole banner"
        )
        text = output_path.read_text()
        started_pids = {
            name: int(pid) for name, pid in re.findall(r"\b(web|worker|beat|moto) pid (\d+)", text)
        }
        assert set(started_pids) == {"web", "worker", "beat", "moto"}
        assert set(started_pids.values()) <= set(_processes_of(tmp_path))
        assert MATEO_ERROR in text and f"{base}/" in text
        assert "make demo-doctor" in text

        # manage.py doctor, from another shell with the settings the demo wrote (what make demo-doctor does):
        # the demo is a sound deployment; what it lacks on purpose is a warning.
        doctor = subprocess.run(
            ["bash", "-c", f"set -a && . {tmp_path / 'demo.env'} && set +a && exec {sys.executable} manage.py doctor --json"],
            cwd=ROOT, env=_demo_env(tmp_path, port), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert doctor.returncode == 0, doctor.stdout + doctor.stderr
        verdicts = {check["name"]: check["status"] for check in json.loads(doctor.stdout)["checks"]}
        assert {name for name, status in verdicts.items() if status != "ok"} == {
            "settings.external-id", "audit.bucket",
        }, doctor.stdout  # fmt: skip

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, output_path.read_text()
    finally:
        _kill_if_running(demo)
        leftovers = _processes_of(tmp_path)
        for pid in leftovers:  # never leave them running, even when the assertion below fails
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    assert leftovers == {}, f"still running after Ctrl-C: {leftovers}"
    assert "stopped; no process left running." in output_path.read_text()
    assert not (tmp_path / "demo.env").exists()
    # The port is free again: nothing is still listening.
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0


def _demo_until_seeded(var_dir: Path, port: int, **env: str) -> str:
    """Run ``manage.py demo`` until seeding is over (seed_demo prints the logins last), Ctrl-C it; its output."""
    output_path = var_dir / f"demo-output-{time.monotonic_ns()}.txt"
    demo = _start_demo(var_dir, port, output_path, **env)
    try:
        wait_for(
            lambda: demo.poll() is not None or "Demo logins (password" in output_path.read_text(),
            timeout=180,
            what="the demo's seeding",
        )
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0, output_path.read_text()
    finally:
        _kill_if_running(demo)
    return output_path.read_text()


@pytest.mark.moto
def test_a_restarted_demo_says_what_it_keeps_and_starts_clean_when_it_cannot_keep_it(tmp_path):
    port = free_port()
    first = _demo_until_seeded(tmp_path, port)
    assert "[demo] a new demo: an empty database" in first

    again = _demo_until_seeded(tmp_path, port)
    assert "[demo] keeping the demo of the last run: its database" in again
    # A new moto server (the world is created again, not found), holding the same world.
    assert re.search(r"Demo AWS world at \S+: created \d+ objects", again) and "already seeded" not in again

    # A database of an older, unrepeatable world (an earlier Gatehouse): set aside, said so, a new demo.
    forge = "from accessrequests.audit import trail; trail.record(action='demo.seeded', object_type='demo', after={})"
    subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", forge],
        cwd=ROOT,
        env=_demo_env(tmp_path, port),
        check=True,
    )
    older = _demo_until_seeded(tmp_path, port)
    assert "[demo] starting clean: the last run's database was made against another demo AWS world" in older
    [kept] = tmp_path.glob("previous-*")
    assert (kept / "gatehouse.sqlite3").exists() and (tmp_path / "gatehouse.sqlite3").exists()

    fresh = _demo_until_seeded(tmp_path, port, DEMO_FRESH="1")
    assert "[demo] starting clean: DEMO_FRESH asks for a new database and a new demo AWS world." in fresh
    assert "[demo] a new demo: an empty database" in fresh and len(list(tmp_path.glob("previous-*"))) == 2


def test_demo_says_clearly_when_its_port_is_busy(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "manage.py", "demo"],
            cwd=ROOT,
            env=_demo_env(tmp_path, port),
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr
    assert f"DEMO_PORT={port + 1} make demo" in result.stderr
    assert not (tmp_path / "moto.log").exists()  # refused before starting anything


# --- the demo's stand-in for IAM's last-accessed data ---


@pytest.mark.moto
@pytest.mark.django_db
def test_the_demo_endpoint_answers_iams_last_accessed_data_from_the_calls_that_passed_it(
    aws, settings, monkeypatch
):
    """moto does not implement last-accessed data; the endpoint ``manage.py demo`` puts in front of it answers
    Gatehouse's own reads (``aws/last_used.py``, unchanged) from the calls it saw signed with a user's key."""
    import boto3

    from accessrequests.aws import last_used
    from accessrequests.devworld.last_accessed import LastAccessedEndpoint

    endpoint = LastAccessedEndpoint(aws).start()
    try:
        settings.AWS_ENDPOINT_URL = endpoint.url
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
        iam = boto3.client("iam", endpoint_url=endpoint.url, region_name="us-east-1")
        dora = iam.create_user(UserName="dora")["User"]["Arn"]
        idle = iam.create_user(UserName="idle")["User"]["Arn"]
        key = iam.create_access_key(UserName="dora")["AccessKey"]
        iam.create_access_key(UserName="idle")
        boto3.client(
            "codepipeline", endpoint_url=endpoint.url, region_name="eu-west-1",
            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
        ).list_pipelines()  # fmt: skip

        job = last_used.start_job(dora, account_id=MANAGEMENT)
        assert last_used.read_job(job, account_id=MANAGEMENT).status == "IN_PROGRESS"  # as IAM: not at once
        report = last_used.read_job(job, account_id=MANAGEMENT)
        assert report.status == "COMPLETED"
        pipeline = next(s for s in report.services if s.namespace == "codepipeline")
        used = pipeline.actions["codepipeline:ListPipelines"]
        assert used is not None and abs(time.time() - used.timestamp()) < 120
        keys = {k.access_key_id: k for k in last_used.access_keys_last_used("dora", account_id=MANAGEMENT)}
        assert keys[key["AccessKeyId"]].last_used is not None and keys[key["AccessKeyId"]].service

        never = last_used.start_job(idle, account_id=MANAGEMENT)
        last_used.read_job(never, account_id=MANAGEMENT)
        idle_report = last_used.read_job(never, account_id=MANAGEMENT)
        assert idle_report.status == "COMPLETED"
        assert all(s.last_authenticated is None for s in idle_report.services)
        assert all(
            k.last_used is None for k in last_used.access_keys_last_used("idle", account_id=MANAGEMENT)
        )
        # Everything else is moto's, unchanged.
        assert {u["UserName"] for u in iam.list_users()["Users"]} >= {"dora", "idle"}
    finally:
        endpoint.close()
