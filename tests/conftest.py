"""Shared fixtures: fast passwords, small factories, a real Celery worker process, a real Chromium."""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group, User

from tests.conftest_moto import aws, demo_world, moto_server  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "var" / "artifacts"
REQUIRE_SERVICES = os.environ.get("GATEHOUSE_REQUIRE_SERVICES") == "1"


def service_missing(what: str) -> None:
    """Skip on a bare laptop; fail loudly in CI, where GATEHOUSE_REQUIRE_SERVICES=1 makes absence an error."""
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (GATEHOUSE_REQUIRE_SERVICES=1) but not available")
    pytest.skip(f"{what} not available")


@contextlib.contextmanager
def scratch_postgres(name: str) -> Iterator[str]:
    """A PostgreSQL database of its own (``DATABASE_URL`` form), whatever the suite's own database is; dropped
    afterwards. ``GATEHOUSE_TEST_POSTGRES_URL`` names the server's maintenance database."""
    import psycopg

    admin_url = os.environ.get("GATEHOUSE_TEST_POSTGRES_URL", "postgresql://root@127.0.0.1:5432/postgres")
    name = f"{name}_{os.getpid()}"  # two suites side by side on one server never drop each other's database
    try:
        admin = psycopg.connect(admin_url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        service_missing(f"PostgreSQL ({exc.__class__.__name__})")
    admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.execute(f"CREATE DATABASE {name}")
    try:
        yield admin_url.rsplit("/", 1)[0].replace("postgresql://", "postgres://") + f"/{name}"
    finally:
        admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.close()


def passes_on_scratch_postgres(test: str, name: str) -> None:
    """Run one test (``path::name``) in a child pytest against a scratch PostgreSQL database and assert it passed:
    for a test of PostgreSQL's locks (SQLite admits one writer at a time), so that on the embedded profile it runs
    there instead of being skipped."""
    with scratch_postgres(name) as url:
        child = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url},
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    assert child.returncode == 0 and "1 passed" in child.stdout, child.stdout[-3000:] + child.stderr[-2000:]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


# Where a test that did not ask for the moto server finds "AWS": a closed local port, which refuses at once.
NO_AWS = "http://127.0.0.1:9"


@pytest.fixture(autouse=True)
def _no_real_aws(settings, monkeypatch):
    """No test reaches real AWS: unless it asks for moto (the ``aws`` fixture, which points here later and wins),
    every AWS call it makes fails fast, as AWS being down would."""
    settings.AWS_ENDPOINT_URL = NO_AWS
    monkeypatch.setenv("AWS_ENDPOINT_URL", NO_AWS)
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing")):
        monkeypatch.setenv(name, value)


_cache_namespaces = itertools.count(1)


@pytest.fixture(autouse=True)
def _own_cache_namespace(settings):
    """Each test gets fresh rate-limit counters and used-code records in the real shared cache (Redis or the
    file cache), under a key prefix of its own: runs on one machine share that cache, and a clear() of Redis
    would also empty the broker."""
    caches = {alias: dict(config) for alias, config in settings.CACHES.items()}
    caches["default"]["KEY_PREFIX"] = f"test-{os.getpid()}-{next(_cache_namespaces)}"
    settings.CACHES = caches


@pytest.fixture(autouse=True)
def _own_checkpoints(settings, tmp_path):
    """Each test's audit checkpoints in its own folder: they describe that test's database, no other."""
    settings.GATEHOUSE_AUDIT_CHECKPOINT_DIR = tmp_path / "audit-checkpoints"


def make_user(username: str, *groups: str, password: str = "correct-horse-battery", **extra) -> User:
    user = User.objects.create_user(
        username=username, email=f"{username}@example.com", password=password, **extra
    )
    for name in groups:
        user.groups.add(Group.objects.get_or_create(name=name)[0])
    return user


def database_url_for_subprocess() -> str:
    """The URL of the database the tests are using right now (the test database), for child processes."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] or ""
    if s.get("PASSWORD"):
        auth += f":{s['PASSWORD']}"
    host = s.get("HOST") or "127.0.0.1"
    port = s.get("PORT") or 5432
    return f"postgres://{auth}@{host}:{port}/{s['NAME']}"


class WorkerProcess:
    """A real `celery worker` child process on the configured broker and the test database, started as the
    README says (no `-Q`: the app declares its queues)."""

    def __init__(self, env: dict[str, str], concurrency: int = 1, name: str = "w1"):
        self.env = env
        self.concurrency = concurrency
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.log_path = ARTIFACTS / f"worker-{name}.log"

    def start(self) -> WorkerProcess:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "celery", "-A", "portal", "worker",
                "-n", f"{self.name}@%h", "--concurrency", str(self.concurrency),
                "--pool", "prefork", "-l", "info", "--without-gossip", "--without-mingle",
            ],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@pytest.fixture
def worker_env(transactional_db, settings) -> dict[str, str]:
    env = dict(os.environ)
    env["DATABASE_URL"] = database_url_for_subprocess()
    # The test's own cache namespace (see _own_cache_namespace): a worker removes the reconcile marks the test's
    # approvals set there (provisioning/grants.py).
    env["GATEHOUSE_CACHE_PREFIX"] = settings.CACHES["default"]["KEY_PREFIX"]
    env.setdefault("DEBUG", "1")
    env["GATEHOUSE_HEARTBEAT_SECONDS"] = "1"
    return env


@pytest.fixture
def celery_worker(worker_env) -> Iterator[WorkerProcess]:
    from portal.celery import app

    conn = app.connection_for_write()
    try:
        conn.ensure_connection(max_retries=1, timeout=3)
    except Exception as exc:
        service_missing(f"the Celery broker ({exc})")
    finally:
        conn.release()
    app.control.purge()
    worker = WorkerProcess(worker_env).start()
    yield worker
    worker.stop()


@pytest.fixture
def workers():
    """Celery worker processes a test starts itself (``workers.start(env)``), each on its own queue prefix;
    all stopped when the test ends."""
    from tests.provisioning_support import Workers

    started = Workers()
    yield started
    started.close()


def wait_for(predicate, timeout: float = 30, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="session")
def browser():
    if CHROMIUM is None:
        service_missing("Chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        service_missing("Playwright")
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
            ],
        )  # fmt: skip
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    yield page
    context.close()


def screenshot(page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def enable_totp(user) -> str:
    """Give a user TOTP through allauth itself; returns the secret so tests can compute codes."""
    from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret

    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    return secret


def sign_in_with_mfa(client, user) -> None:
    """``client.force_login`` plus what allauth records in the session when a sign-in passed its MFA stage, for
    tests about what comes after signing in. The sign-in and step-up flows themselves are tested for real, with
    codes, in tests/test_step_up.py."""
    from allauth.account.internal.flows.login import (
        _AUTHENTICATION_METHODS_USER_SESSION_KEY,
        AUTHENTICATION_METHODS_SESSION_KEY,
    )
    from allauth.mfa.models import Authenticator

    authenticator = Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).first()
    if authenticator is None:
        enable_totp(user)
        authenticator = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)
    client.force_login(user)
    session = client.session
    now = time.time()
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [
        {"method": "password", "at": now, "username": user.get_username()},
        {"method": "mfa", "at": now, "id": authenticator.pk, "type": "totp"},
    ]
    session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
    session.save()


def totp_code(secret: str) -> str:
    from allauth.mfa import app_settings
    from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value

    counter = int(time.time()) // app_settings.TOTP_PERIOD  # the step an authenticator app shows now
    return format_hotp_value(hotp_value(secret, counter))


def current_code(user) -> str:
    """The TOTP code the user's authenticator app shows now (from their enrolled secret)."""
    from allauth.mfa.models import Authenticator
    from allauth.mfa.utils import decrypt

    authenticator = Authenticator.objects.get(user=user, type=Authenticator.Type.TOTP)
    return totp_code(decrypt(authenticator.data["secret"]))


def verify_export(path: Path, *options: str) -> subprocess.CompletedProcess:
    """The documented offline check, run as a user would: `python -m accessrequests.chain verify FILE`."""
    return subprocess.run(
        [sys.executable, "-m", "accessrequests.chain", "verify", str(path), *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
