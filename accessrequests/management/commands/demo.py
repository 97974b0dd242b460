"""manage.py demo (what ``make demo`` runs): the whole portal on this machine, in the foreground.

1. a moto server on 127.0.0.1 (a free port, log in ``var/moto.log``) stands in for AWS, behind an endpoint in
   this process that answers what moto does not implement: IAM's last-accessed data, which access reviews read
   (``accessrequests.devworld.last_accessed``);
2. ``AWS_ENDPOINT_URL`` (that endpoint), dummy credentials and ``AWS_DEFAULT_REGION`` are exported to this process
   and every child, so nothing can reach real AWS;
3. ``migrate`` and ``seed_demo`` (demo AWS world, catalog sync, demo users and rules);
4. ``runserver 127.0.0.1:$DEMO_PORT --noreload`` (default 8000), a Celery worker on every queue and Celery
   beat, their output prefixed ``[web]`` / ``[worker]`` / ``[beat]``;
5. once the login page and ``/healthz`` (with a worker heartbeat) answer, the URL and what to try first.

Ctrl-C or SIGTERM stops everything: SIGTERM to each child, SIGKILL to each child's whole process group (a
worker's pool processes share its group) after a grace period, then the moto server; exit status 0. A
second Ctrl-C skips the grace period. Every child runs in its own session, so the terminal's Ctrl-C reaches
only this process, which stops the children before the moto server they talk to instead of all of them
racing; on Linux each child is also told to exit if this process dies (even by SIGKILL).
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from accessrequests.aws.demo_world import PRIMARY_REGION, SECOND_REGION
from accessrequests.aws.motoserver import (
    DUMMY_CREDENTIALS,
    die_with_parent,
    start_moto_server,
    stop_moto_server,
)
from accessrequests.devworld.last_accessed import LastAccessedEndpoint
from accessrequests.management.commands.seed_demo import logins, tips
from portal.celery import QUEUES

DEFAULT_PORT = 8000
GRACE_SECONDS = 10.0  # a warm worker shutdown finishes its current task; longer than that it gets killed
READY_TIMEOUT = 180.0  # the "working login page within 3 minutes"
_LINUX = sys.platform.startswith("linux")


class _Stop(Exception):
    """Ctrl-C or SIGTERM arrived; raised at the next safe point (never from inside the signal handler)."""


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR like runserver (socketserver's allow_reuse_address): connections of a previous run
        # lingering in TIME_WAIT must not count, only another listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own http URL
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


class _Child:
    """A long-running child: its process, its name for prefixes, and the unfinished line of its output."""

    def __init__(self, name: str, process: subprocess.Popen[bytes]) -> None:
        self.name = name
        self.process = process
        self.pending = b""


class Demo:
    """Runs the demo; ``run()`` returns the exit status."""

    def __init__(self, *, port: int, var_dir: Path, out: IO[str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.var_dir = var_dir
        self.out = out
        self.signals = 0  # Ctrl-C / SIGTERM received so far
        self.signals_when_stopping = 0
        self.moto: subprocess.Popen[bytes] | None = None
        self.last_accessed: LastAccessedEndpoint | None = None
        self.children: list[_Child] = []
        self.selector = selectors.DefaultSelector()
        self.env: dict[str, str] = {}

    # --- output ---

    def say(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.out.write(f"[demo] {line}\n" if line else "\n")
        self.out.flush()

    def _pump(self, timeout: float) -> None:
        """Copy whatever the children wrote to the terminal, each line prefixed with the child's name."""
        for key, _ in self.selector.select(timeout):
            child: _Child = key.data
            try:
                chunk = os.read(key.fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.selector.unregister(key.fileobj)
                if child.pending:
                    self._emit(child, child.pending)
                    child.pending = b""
                continue
            *lines, child.pending = (child.pending + chunk).split(b"\n")
            for line in lines:
                self._emit(child, line)
        self.out.flush()

    def _emit(self, child: _Child, line: bytes) -> None:
        self.out.write(f"[{child.name}] {line.decode(errors='replace').rstrip()}\n")

    # --- signals ---

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only count: raising here could interrupt Popen between fork and bookkeeping and lose a child.
        self.signals += 1

    def _check(self) -> None:
        if self.signals:
            raise _Stop

    # --- processes ---

    def _prepare_env(self, endpoint: str) -> None:
        os.environ.update(
            {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_DEFAULT_REGION": PRIMARY_REGION,
                **DUMMY_CREDENTIALS,
                "DEBUG": "1",
                "SITE_URL": self.url,
                "PYTHONUNBUFFERED": "1",
            }
        )
        # Dummy credentials only: a developer's profile must never be what signs the demo's calls.
        for name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
            os.environ.pop(name, None)
        # The demo world has a pipeline in a second region; show it unless the developer chose regions.
        os.environ.setdefault("GATEHOUSE_REGIONS", f"{PRIMARY_REGION},{SECOND_REGION}")
        self.env = dict(os.environ)

    def _spawn(self, args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            args,
            cwd=settings.BASE_DIR,
            env=self.env,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_parent if _LINUX else None,
            **kwargs,
        )

    def _step(self, title: str, args: list[str]) -> None:
        """Run one setup command to completion, its output straight to the terminal."""
        self.say(title)
        process = self._spawn(args)
        while process.poll() is None:
            if self.signals:
                self._signal_group(process, signal.SIGTERM)
                try:
                    process.wait(GRACE_SECONDS)
                except subprocess.TimeoutExpired:
                    self._signal_group(process, signal.SIGKILL)
                    process.wait()
                raise _Stop
            time.sleep(0.1)
        if process.returncode != 0:
            raise CommandError(f"{' '.join(args[1:3])} failed with exit status {process.returncode}")

    def _start(self, name: str, args: list[str]) -> None:
        process = self._spawn(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        child = _Child(name, process)
        assert process.stdout is not None
        os.set_blocking(process.stdout.fileno(), False)
        self.selector.register(process.stdout, selectors.EVENT_READ, child)
        self.children.append(child)

    @staticmethod
    def _signal_group(process: subprocess.Popen[bytes], sig: int) -> bool:
        """Signal the child's whole process group; False when nobody in it is left."""
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _stop_children(self) -> None:
        alive = [child for child in self.children if child.process.poll() is None]
        if alive:
            self.say("stopping " + ", ".join(child.name for child in alive) + " …")
        for child in alive:
            # The leader only: a Celery worker's warm shutdown lets its pool finish the current task, which a
            # SIGTERM to the whole group would cut short.
            child.process.terminate()
        deadline = time.monotonic() + GRACE_SECONDS
        # Another Ctrl-C while stopping means "now": skip the rest of the grace period.
        while time.monotonic() < deadline and self.signals <= self.signals_when_stopping:
            if all(child.process.poll() is not None for child in self.children):
                break
            self._pump(0.2)
        # SIGKILL the groups, not just the leaders: a worker's pool processes outlive a killed main process.
        for child in self.children:
            if self._signal_group(child.process, signal.SIGKILL) and child.process.poll() is None:
                self.say(f"{child.name} did not stop within {GRACE_SECONDS:.0f}s: killed")
            child.process.wait()
        self._pump(0)

    def _stop_moto(self) -> None:
        if self.last_accessed is not None:
            self.last_accessed.close()
            self.last_accessed = None
        if self.moto is not None:
            stop_moto_server(self.moto)
            self.moto = None

    # --- the demo ---

    def run(self) -> int:
        started = time.monotonic()
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        status = 0
        try:
            self._run(started)
        except _Stop:
            pass
        except CommandError as exc:
            self.say(f"error: {exc}")
            status = 1
        finally:
            self.signals_when_stopping = self.signals
            self._stop_children()
            self._stop_moto()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.say("stopped; no process left running.")
        return status

    def _run(self, started: float) -> None:
        python = sys.executable
        self.var_dir.mkdir(parents=True, exist_ok=True)
        moto_log = self.var_dir / "moto.log"
        self.say(f"starting a moto server (stands in for AWS; log: {moto_log}) …")
        # From the main thread: the kernel's "die with parent" signal is tied to the starting thread.
        self.moto, endpoint = start_moto_server(log_file=moto_log, own_session=True)
        self._check()
        # moto does not implement IAM's last-accessed data: a stand-in answers it, in front of moto, and passes
        # everything else on. Gatehouse's own AWS code sees one endpoint, as it would see AWS.
        self.last_accessed = LastAccessedEndpoint(endpoint).start()
        self.say(
            f"AWS_ENDPOINT_URL={self.last_accessed.url}: moto, with IAM's last-accessed data (access review "
            "evidence) answered by a stand-in in front of it"
        )
        self._prepare_env(self.last_accessed.url)

        self._step("migrating the database …", [python, "manage.py", "migrate", "--noinput", "-v", "0"])
        self._step(
            "seeding the demo AWS world, the catalog and the demo users …",
            [python, "manage.py", "seed_demo", "--no-tips", "--url", self.url],
        )

        self._check()
        self._start("web", [python, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload"])
        self._start(
            "worker",
            [
                python, "-m", "celery", "-A", "portal", "worker", "-Q", QUEUES, "--concurrency", "2",
                "-n", "demo@%h", "-l", "info", "--without-gossip", "--without-mingle",
            ],
        )  # fmt: skip
        schedule = self.var_dir / "celerybeat-schedule"
        self._start(
            "beat", [python, "-m", "celery", "-A", "portal", "beat", "-l", "info", "-s", str(schedule)]
        )
        pids = " · ".join(f"{child.name} pid {child.process.pid}" for child in self.children)
        self.say(f"{pids} · moto pid {self.moto.pid} at {endpoint}")

        ready = False
        next_check = 0.0
        while True:
            self._check()
            self._pump(0.25)
            for child in self.children:
                if child.process.poll() is not None:
                    self._pump(0)
                    raise CommandError(
                        f"{child.name} exited with status {child.process.returncode}; stopping the demo"
                    )
            now = time.monotonic()
            if not ready and now >= next_check:
                next_check = now + 0.5
                ready = self._ready()
                if ready:
                    self._banner(now - started)
                elif now - started > READY_TIMEOUT:
                    raise CommandError(f"the portal did not become healthy within {READY_TIMEOUT:.0f}s")

    def _ready(self) -> bool:
        return _status(f"{self.url}/accounts/login/") == 200 and _status(f"{self.url}/healthz") == 200

    def _banner(self, seconds: float) -> None:
        self.say("")
        self.say(
            f"Gatehouse is up at {self.url}/ (ready in {seconds:.0f}s; /healthz healthy, worker running)"
        )
        self.say("")
        self.say(logins())
        self.say("")
        self.say(tips(self.url))
        self.say("")
        self.say(f"Demo IAM access keys: {self.var_dir / 'demo-aws-keys.json'}. Ctrl-C stops everything.")
        self.say("")


class Command(BaseCommand):
    help = "Run the demo in the foreground: moto, migrate, seed_demo, web, worker and beat; Ctrl-C stops all."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            raise CommandError("the demo runs with DEBUG=1 (`make demo` sets it).")
        raw_port = os.environ.get("DEMO_PORT", str(DEFAULT_PORT))
        try:
            port = int(raw_port)
        except ValueError:
            raise CommandError(f"DEMO_PORT must be a port number, not {raw_port!r}.") from None
        if not port_is_free(port):
            raise CommandError(
                f"port {port} on 127.0.0.1 is already in use (another `make demo`?). "
                f"Stop it, or choose another port: DEMO_PORT={port + 1} make demo"
            )
        status = Demo(port=port, var_dir=Path(settings.VAR_DIR), out=sys.stdout).run()
        if status:
            sys.exit(status)
