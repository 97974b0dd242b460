"""Auditor pages, exports that verify offline, and the rule that auditors change nothing anywhere."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.models import (
    AccessRequest,
    ApprovalRule,
    AuditEvent,
    Decision,
    Grant,
    GrantStatus,
    Pipeline,
)
from accessrequests.workflow.requests import request_approve
from tests.conftest import make_user, verify_export
from tests.factories import World, force_update, fresh_factor

pytestmark = pytest.mark.django_db


@pytest.fixture
def world():
    return World()


@pytest.fixture
def auditor():
    return make_user("auditor", "auditors")


def _export(client, fmt="csv", **params) -> str:
    response = client.get(reverse("audit_export", args=[fmt]), params)
    assert response.status_code == 200
    assert response.streaming
    return b"".join(response.streaming_content).decode()


def test_auditors_read_and_filter_the_log(client, world, auditor):
    req = world.submit()
    client.force_login(auditor)
    page = client.get(reverse("audit_log"), {"request_ref": req.reference})
    assert page.status_code == 200
    assert b"request.created" in page.content
    other = client.get(reverse("audit_log"), {"action": "grant."})
    assert b"request.created" not in other.content


def test_bad_filters_get_a_clear_message(client, auditor):
    client.force_login(auditor)
    response = client.get(reverse("audit_log"), {"account": "12", "since": "yesterday-ish"})
    assert response.status_code == 400
    assert b"12 digits" in response.content


def test_requesters_get_404_on_audit_pages(client, world):
    client.force_login(world.requester)
    for url in (reverse("audit_log"), reverse("audit_export", args=["csv"]), reverse("access_report")):
        assert client.get(url).status_code == 404


def _export_with_manifest(client, tmp_path, fmt="csv", **params) -> Path:
    """Download an export and its manifest the way the audit page links them (one through_seq for both)."""
    params.setdefault("through_seq", str(AuditEvent.objects.count()))
    body = _export(client, fmt, **params)
    manifest = client.get(reverse("audit_export", args=[fmt]), {**params, "manifest": "1"})
    assert manifest.status_code == 200
    name = manifest["Content-Disposition"].split('filename="')[1].rstrip('"')
    path = tmp_path / name.removesuffix(".manifest.json")
    path.write_text(body, encoding="utf-8")
    (tmp_path / name).write_bytes(manifest.content)
    return path


def test_a_csv_export_verifies_offline_and_a_tampered_one_does_not(client, world, auditor, tmp_path):
    for _ in range(3):
        world.submit()
    client.force_login(auditor)
    path = _export_with_manifest(client, tmp_path, "csv")
    assert AuditEvent.objects.filter(action="audit.exported", actor=auditor).exists()
    ok = verify_export(path)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "OK: 3 events (seq 1-3)" in ok.stdout  # the three requests; the export itself came after
    assert "complete for seq 1-3 as its manifest says" in ok.stdout
    tampered = tmp_path / "tampered.csv"
    tampered.write_text(path.read_text().replace("requester", "mallory", 1), encoding="utf-8")
    bad = verify_export(tampered)
    assert bad.returncode == 1
    assert "BROKEN at seq 1 (row 1): its content does not match its stored hash" in bad.stdout


def test_a_filtered_jsonl_export_verifies_offline_and_says_what_it_cannot_prove(
    client, world, auditor, tmp_path
):
    req = world.submit()
    world.submit()
    client.force_login(auditor)
    path = _export_with_manifest(client, tmp_path, "jsonl", request_ref=req.reference)
    assert path.read_text().count("\n") == 1
    ok = verify_export(path)
    assert ok.returncode == 0, ok.stdout
    assert "filtered export (request_ref=GH-" in ok.stdout
    assert "cannot prove that no matching event was left out" in ok.stdout


def test_export_audit_command_writes_a_verifiable_file_and_its_manifest(world, tmp_path):
    world.submit()
    out = tmp_path / "cmd.csv"
    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    call_command("export_audit", "--since", since, "--format", "csv", "--output", str(out))
    assert (tmp_path / "cmd.csv.manifest.json").exists()
    ok = verify_export(out)
    assert ok.returncode == 0, ok.stdout
    assert "complete for seq 1-1" in ok.stdout
    assert AuditEvent.objects.filter(action="audit.exported", actor_label="manage.py export_audit").exists()


def test_the_access_report_answers_who_had_what_and_who_approved(client, world, auditor):
    req = world.submit()
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    now = timezone.now()
    force_update(Grant.objects.filter(request=req), status=GrantStatus.ACTIVE, applied_at=now)
    client.force_login(auditor)
    response = client.get(
        reverse("access_report"),
        {
            "since": (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
            "until": (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"),
            "pipeline": "my-pipeline",
        },
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "arn:aws:iam::123456789012:user/mateojackson" in content
    assert "approver" in content and "requester" in content


def _walk(patterns, prefix=""):
    for p in patterns:
        if isinstance(p, URLResolver):
            yield from _walk(p.url_patterns, prefix + str(p.pattern))
        elif isinstance(p, URLPattern):
            yield prefix + str(p.pattern)


def _concrete(route: str, ids: dict[str, str]) -> str:
    import re

    route = route.lstrip("^").rstrip("$").replace("\\Z", "").replace("\\/", "/")
    route = re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: ids.get(m.group(2), "1"), route)
    route = re.sub(r"\(\?P<(\w+)>[^)]*\)", lambda m: ids.get(m.group(1), "1"), route)
    return "/" + route.replace("^", "")


def test_auditors_cannot_change_anything_through_any_url(client, world, auditor):
    """POST to every URL the project serves, as an auditor: nothing is accepted, nothing changes."""
    req = world.submit()
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    ids = {"pk": str(req.pk), "object_id": str(req.pk), "fmt": "csv", "app_label": "accessrequests"}
    client.force_login(auditor)
    counts = lambda: [m.objects.count() for m in (AccessRequest, Decision, Grant, ApprovalRule, Pipeline)]  # noqa: E731
    before = counts()
    statuses = {}
    for route in sorted(set(_walk(get_resolver().url_patterns))):
        # allauth's pages (and the admin's login/logout) and the API token page let every signed-in person
        # manage their own session, password, MFA and tokens; that is the auditor's own account, not portal data.
        if route.startswith(("accounts/", "tokens/")) or route in {"admin/login/", "admin/logout/"}:
            continue
        url = _concrete(route, ids)
        response = client.post(
            url, {"decision": "approve", "comment": "x", "name": "x", "justification": "x"}
        )
        statuses[url] = response.status_code
        if route.startswith("scim/"):  # only the identity provider's SCIM token opens SCIM, never a session
            assert response.status_code == 401, (url, response.status_code)
            continue
        assert response.status_code in (302, 403, 404, 405), (url, response.status_code)
        if response.status_code == 302:  # only the admin site, which sends non-staff to its login page
            assert "/admin/login/" in response["Location"], (url, response["Location"])
    assert counts() == before
    assert len(statuses) > 10
    assert not AuditEvent.objects.filter(actor=auditor).exclude(action__startswith="api.").exists()
    audit.record(action="test.end", object_type="x")  # the chain is still appendable


def test_a_filter_that_can_match_nothing_exports_just_the_header(client, world, auditor):
    world.submit()
    client.force_login(auditor)
    body = _export(client, "csv", request_ref="GH-abc")
    assert body.splitlines() == [body.splitlines()[0]]
    assert body.startswith("id,seq,created_at,")


def test_a_bad_through_seq_gets_a_clear_message(client, auditor):
    client.force_login(auditor)
    response = client.get(reverse("audit_export", args=["csv"]), {"through_seq": "last"})
    assert response.status_code == 400
    assert b"through_seq must be a whole number" in response.content
    api = client.get(reverse("api_audit_export"), {"file_format": "csv", "through_seq": "-3"})
    assert api.status_code == 400
    assert "through_seq must be a whole number" in api.content.decode()


def test_a_filter_with_an_error_says_so_and_lists_nothing(client, world, auditor):
    world.submit()
    client.force_login(auditor)
    response = client.get(reverse("audit_log"), {"account": "12"})
    page = response.content.decode()
    assert response.status_code == 400
    assert 'data-testid="filter-error"' in page and "An AWS account id is 12 digits" in page
    assert "request.created" not in page.split('data-testid="audit-table"')[1]
