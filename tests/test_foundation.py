"""The foundation: configuration, health, the worker round trip, deployment files, and signing in."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from django.contrib.auth.models import Group
from django.urls import reverse

from accessrequests.models import WorkerHeartbeat
from tests.conftest import ROOT, make_user, screenshot, wait_for


def run_manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "SECRET_KEY", "DEBUG", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    }
    full_env.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"DEBUG": "1", "DATABASE_URL": "mysql-ish://nope"}, "DATABASE_URL must look like"),
        (
            {"DEBUG": "1", "DATABASE_URL": "postgres://u:secretpw@h:notaport/db"},
            "DATABASE_URL cannot be parsed",
        ),
        ({"DEBUG": "0"}, "SECRET_KEY must be set when DEBUG is off"),
    ],
)
def test_bad_configuration_fails_fast_with_one_clear_line(env, expected):
    result = run_manage("check", **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "secretpw" not in result.stderr


def test_deploy_check_is_clean_with_production_settings():
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", DEBUG="0", SECRET_KEY="x" * 64 + "y9!Z",
                        ALLOWED_HOSTS="gatehouse.example.com")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_worker_start_refuses_an_unreachable_broker_in_one_line():
    env = dict(os.environ)
    env.update({"DEBUG": "1", "CELERY_BROKER_URL": "redis://127.0.0.1:9/0"})
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "-l", "warning"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 2
    ours = [line for line in result.stderr.splitlines() if line.startswith("gatehouse:")]
    assert len(ours) == 1
    assert "redis://127.0.0.1:9/0 is not reachable" in ours[0]


@pytest.mark.django_db
def test_the_four_role_groups_exist():
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "requesters",
        "approvers",
        "admins",
        "auditors",
    }


@pytest.mark.django_db
def test_healthz_is_503_without_a_worker_heartbeat(client):
    response = client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unhealthy"
    assert body["database"]["ok"] is True
    assert body["worker"]["ok"] is False
    assert body["versions"]["django"].startswith("5.2")


@pytest.mark.django_db
def test_healthz_is_healthy_with_a_fresh_heartbeat(client):
    WorkerHeartbeat.touch("w1@test")
    response = client.get("/healthz")
    body = response.json()
    assert body["broker"]["ok"] is True, body
    assert response.status_code == 200, body
    assert body["status"] == "healthy"
    assert body["worker"]["last_heartbeat_age_seconds"] < 5


@pytest.mark.django_db
def test_healthz_reports_a_down_broker(client, settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:9/0"  # nothing listens there
    WorkerHeartbeat.touch("w1@test")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broker"]["ok"] is False


@pytest.mark.worker
def test_a_real_worker_process_returns_a_task_result_and_a_heartbeat(celery_worker):
    from accessrequests.tasks import echo

    result = echo.delay("through the broker")
    assert result.get(timeout=60) == "through the broker"
    assert wait_for(
        lambda: WorkerHeartbeat.objects.filter(hostname__startswith="w1@").exists(), what="heartbeat"
    )


def test_a_plain_worker_consumes_every_queue_the_portal_routes_to(celery_worker):
    from accessrequests.tasks import echo
    from portal.celery import QUEUE_NAMES, app

    routed = {app.amqp.router.route({}, name)["queue"].name for name in ROUTED_TASKS}
    assert routed == set(QUEUE_NAMES)
    for queue in QUEUE_NAMES:
        assert echo.apply_async(("via " + queue,), queue=queue).get(timeout=60) == "via " + queue


# One task per route of portal/celery.py: provisioning, notifications, and the default queue.
ROUTED_TASKS = (
    "accessrequests.tasks.reconcile_principal",
    "accessrequests.tasks.notify_request_created",
    "accessrequests.tasks.expire_grants",
)


@pytest.mark.django_db
def test_home_requires_sign_in(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


@pytest.mark.django_db
def test_open_sign_up_is_closed_by_default(client):
    response = client.post(
        reverse("account_signup"),
        {
            "username": "mallory",
            "email": "m@example.com",
            "password1": "x9!long-pass",
            "password2": "x9!long-pass",
        },
    )
    from django.contrib.auth.models import User

    assert not User.objects.filter(username="mallory").exists()
    assert b"Sign up closed" in response.content or response.status_code == 403


@pytest.mark.django_db
def test_signed_in_page_names_the_user(client):
    make_user("mateojackson", "requesters")
    assert client.login(username="mateojackson", password="correct-horse-battery")
    response = client.get("/")
    assert response.status_code == 200
    assert b"mateojackson" in response.content
    assert b"bootstrap.min.css" in response.content
    assert b"cdn" not in response.content.lower()


def test_docker_compose_wires_every_service():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "beat", "moto"} <= set(services)
    assert services["moto"].get("profiles") == ["demo"]
    assert services["postgres"]["image"].startswith("postgres:")
    assert services["redis"]["image"].startswith("redis:")
    for name in ("postgres", "redis", "web"):
        assert "healthcheck" in services[name], name
    for name in ("web", "worker", "beat"):
        env = services[name]["environment"]
        assert env["DATABASE_URL"].startswith("postgres://"), name
        assert env["CELERY_BROKER_URL"].startswith("redis://redis:6379"), name
        assert "SECRET_KEY" in env or "SECRET_KEY_FILE" in env, name
        depends = services[name]["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["redis"]["condition"] == "service_healthy"
    assert "gunicorn" in " ".join(services["web"]["command"])
    assert "worker" in services["worker"]["command"]
    assert "beat" in services["beat"]["command"]
    assert set(compose["volumes"]) >= {"pgdata", "redisdata", "auditcheckpoints"}
    # The audit checkpoint key reaches the worker only, as a secret file; the web never holds it.
    assert services["worker"]["environment"]["GATEHOUSE_AUDIT_CHECKPOINT_KEY_FILE"].startswith(
        "/run/secrets/"
    )
    assert not any("CHECKPOINT_KEY" in k for k in services["web"]["environment"])


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_requester_signs_in_with_a_real_browser(page):
    make_user("mateojackson", "requesters", first_name="Mateo", last_name="Jackson")
    page.goto("/")
    assert "/accounts/login/" in page.url
    screenshot(page, "login")
    page.fill("input[name=login]", "mateojackson")
    page.fill("input[name=password]", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url("**/")
    assert page.text_content("[data-testid=current-user]") == "mateojackson"
    assert "Mateo Jackson" in page.text_content("h1")
    path: Path = screenshot(page, "home-requester")
    assert path.stat().st_size > 10_000
