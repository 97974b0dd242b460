"""manage.py demo (what ``make demo`` runs): the whole portal on this machine, in the foreground.

1. a moto server on 127.0.0.1 (a free port, log in ``var/moto.log``) stands in for AWS, behind an endpoint in
   this process that answers what moto does not implement: IAM's last-accessed data, which access reviews read
   (``accessrequests.devworld.last_accessed``);
2. ``AWS_ENDPOINT_URL`` (that endpoint), dummy credentials and ``AWS_DEFAULT_REGION`` are exported to this process
   and every child, so nothing can reach real AWS, and written to ``var/demo.env`` while the demo runs, for
   ``make demo-doctor`` (``manage.py doctor`` against the demo) in another shell;
3. ``migrate`` and ``seed_demo`` (demo AWS world, catalog sync, demo users and rules). A database from an earlier
   run is kept and so is its demo: moto keeps nothing, so ``seed_demo`` builds the world again with the same ids
   and puts back every access Gatehouse holds as live. ``DEMO_FRESH=1`` (or ``--fresh``) starts from nothing, and
   so does a database made against another demo world (``seed_demo`` exits 3): the embedded SQLite file, the
   audit checkpoints and the task queue of the last run are moved to ``var/previous-<time>/`` and it says so;
   with another DATABASE_URL it stops and says what to do;
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
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from accessrequests.aws.motoserver import (
    DUMMY_CREDENTIALS,
    die_with_parent,
    start_moto_server,
    stop_moto_server,
)
from accessrequests.devworld.demo_world import PRIMARY_REGION, SECOND_REGION
from accessrequests.devworld.last_accessed import LastAccessedEndpoint
from accessrequests.management.commands.seed_demo import FOREIGN_WORLD, logins, tips
from portal.celery import QUEUES

DEFAULT_PORT = 8000
DOCTOR_ENV = "demo.env"  # under the var dir while the demo runs
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

    def __init__(self, *, port: int, var_dir: Path, out: IO[str], fresh: bool = False) -> None:
        self.port = port
        self.fresh = fresh
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
        self.doctor_env = var_dir / DOCTOR_ENV

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

    def _write_doctor_env(self) -> None:
        """What another shell needs to run ``manage.py doctor`` against this demo (``make demo-doctor`` sources
        it): the AWS stand-in, its dummy credentials and the var dir. Removed when the demo stops."""
        names = (*DUMMY_CREDENTIALS, "AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "GATEHOUSE_REGIONS", "DEBUG")
        values = {name: self.env[name] for name in names} | {"GATEHOUSE_VAR_DIR": str(self.var_dir)}
        self.doctor_env.write_text("".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))

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

    def _step(self, title: str, args: list[str], *, allowed: tuple[int, ...] = ()) -> int:
        """Run one setup command to completion, its output straight to the terminal; its exit status, which
        must be 0 or one of ``allowed``."""
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
        if process.returncode not in (0, *allowed):
            raise CommandError(f"{' '.join(args[1:3])} failed with exit status {process.returncode}")
        return process.returncode

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
            self.doctor_env.unlink(missing_ok=True)
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
        self._write_doctor_env()

        if self.fresh:
            self._set_aside("DEMO_FRESH asks for a new database and a new demo AWS world")
        migrate = [python, "manage.py", "migrate", "--noinput", "-v", "0"]
        seed = [python, "manage.py", "seed_demo", "--no-tips", "--url", self.url]
        self._step("migrating the database …", migrate)
        self.say(self._what_is_kept())
        title = "seeding the demo AWS world, the catalog and the demo users …"
        if self._step(title, seed, allowed=(FOREIGN_WORLD,)) == FOREIGN_WORLD:
            self._set_aside(
                "the last run's database was made against another demo AWS world (an older Gatehouse or "
                "another moto version), and what it holds as live cannot be made true in this one"
            )
            self._step("migrating the new database …", migrate)
            self._step(title, seed)

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

    # --- what survives a restart ---

    def _database(self) -> str:
        db = settings.DATABASES["default"]
        if "sqlite" in db["ENGINE"]:
            return str(db["NAME"])
        return f"database {db['NAME']} on {db.get('HOST') or 'localhost'}"

    def _embedded_database(self) -> Path | None:
        """The embedded SQLite file under the var dir, the one database the demo may set aside by itself."""
        db = settings.DATABASES["default"]
        path = Path(str(db["NAME"]))
        return path if "sqlite" in db["ENGINE"] and path == self.var_dir / "gatehouse.sqlite3" else None

    def _what_is_kept(self) -> str:
        from accessrequests.models import AuditEvent

        try:
            kept = AuditEvent.objects.filter(action="demo.seeded").exists()
        finally:
            connections.close_all()  # the file may be moved aside next; hold nothing open
        if not kept:
            return f"a new demo: an empty database ({self._database()}) and a new demo AWS world."
        return (
            f"keeping the demo of the last run: its database ({self._database()}) stays; moto keeps nothing, so "
            "the demo AWS world is built again with the same ids and Gatehouse puts back every access it holds "
            "as live. DEMO_FRESH=1 make demo starts from nothing."
        )

    def _set_aside(self, why: str) -> None:
        """Start clean: move the last run's database, audit checkpoints and task queue to var/previous-<time>/
        (the checkpoints describe that database's audit chain; queued tasks name its rows). ``why`` completes
        "starting clean: …"."""
        database = self._embedded_database()
        if database is None:
            raise CommandError(
                f"cannot start clean ({why}): the demo moves only its own SQLite file aside, and DATABASE_URL "
                f"names the {self._database()}. Empty it, or point DATABASE_URL at an empty one."
            )
        connections.close_all()
        stamp = f"previous-{datetime.now(UTC):%Y%m%d-%H%M%S}"
        folder, n = self.var_dir / stamp, 1
        while folder.exists():
            n += 1
            folder = self.var_dir / f"{stamp}-{n}"
        candidates = [database.with_name(database.name + end) for end in ("", "-wal", "-shm", "-journal")]
        candidates += [
            Path(settings.GATEHOUSE_AUDIT_CHECKPOINT_DIR),
            self.var_dir / "broker",
            self.var_dir / "results",
        ]
        moved = False
        for path in candidates:
            if path.exists() and path.is_relative_to(self.var_dir):
                folder.mkdir(parents=True, exist_ok=True)
                shutil.move(str(path), str(folder / path.name))
                moved = True
        kept = (
            f" The last run's database, audit checkpoints and task queue are kept in {folder}."
            if moved
            else ""
        )
        self.say(f"starting clean: {why}.{kept}")
        # This process's settings made these when it started; the worker and beat expect them.
        for sub in ("queue", "processed", "control"):
            (self.var_dir / "broker" / sub).mkdir(parents=True, exist_ok=True)
        (self.var_dir / "results").mkdir(parents=True, exist_ok=True)

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
        self.say("Check it as a deployment: make demo-doctor (manage.py doctor with this demo's settings).")
        self.say(f"Demo IAM access keys: {self.var_dir / 'demo-aws-keys.json'}. Ctrl-C stops everything.")
        self.say("The next make demo keeps this demo; DEMO_FRESH=1 make demo starts from nothing.")
        self.say("")


class Command(BaseCommand):
    help = "Run the demo in the foreground: moto, migrate, seed_demo, web, worker and beat; Ctrl-C stops all."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--fresh",
            action="store_true",
            help="start from nothing: the last run's database is moved to var/previous-<time>/ (also DEMO_FRESH=1)",
        )

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
        fresh = options["fresh"] or os.environ.get("DEMO_FRESH", "") not in ("", "0")
        status = Demo(port=port, var_dir=Path(settings.VAR_DIR), out=sys.stdout, fresh=fresh).run()
        if status:
            sys.exit(status)
