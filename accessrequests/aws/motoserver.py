"""Start and stop a moto server process on 127.0.0.1 (tests, ``make demo``, management commands).

The core tests never mock boto3 in-process: they talk HTTP to a real moto server, the same way the demo does.
This module has no pytest dependency so the demo tooling can reuse it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

# Dummy credentials: moto accepts anything until IAM auth is switched on, and boto3 refuses to sign without.
DUMMY_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
}
DEFAULT_REGION = "us-east-1"
START_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _http_only(url: str) -> str:
    # urllib also opens file:// and custom schemes; a moto server is only ever spoken to over http.
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"not an http URL: {url!r}")
    return url


def _post(url: str, body: bytes = b"", timeout: float = 10.0) -> bytes:
    # Not form-encoded (urllib's default): werkzeug would then parse the body as a form and moto's
    # reset-auth, which reads the raw body, would see nothing and fail.
    request = urllib.request.Request(  # noqa: S310 - scheme checked by _http_only
        _http_only(url), data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - http only
        return bytes(response.read())


def answers(url: str, timeout: float = 1.0) -> bool:
    """Does a moto server answer at ``url``?"""
    try:
        with urllib.request.urlopen(  # noqa: S310 - scheme checked by _http_only
            _http_only(f"{url}/moto-api/reset-auth"), timeout=timeout
        ):
            return True
    except urllib.error.HTTPError:
        return True  # a GET on reset-auth answers 400: the server is up
    except OSError:
        return False


def reset(url: str) -> None:
    """Forget every resource (all accounts, all regions) and switch IAM authorization off again."""
    _post(f"{url}/moto-api/reset")
    # reset does not touch the auth switch; "inf" unchecked calls = authorization off (moto's default).
    _post(f"{url}/moto-api/reset-auth", b"inf")


def seed_random(url: str, seed: int) -> None:
    """Seed the server's random generator: the same calls from here on create the same ids (account ids, access
    keys, Identity Center ids) on any moto server of this version."""
    _post(f"{url}/moto-api/seed?a={int(seed)}")


def enable_iam_auth(url: str, unchecked_calls: int = 0) -> None:
    """From now on moto checks every call's credentials and IAM policies (after ``unchecked_calls`` calls).

    Only access keys that moto's IAM knows (``iam.create_access_key`` or STS) then work; the dummy keys are
    refused. Undo with :func:`reset`.
    """
    _post(f"{url}/moto-api/reset-auth", str(unchecked_calls).encode())


def die_with_parent() -> None:
    # Linux: the kernel sends SIGTERM to moto if the process that started it dies, even by SIGKILL, so a
    # killed pytest run or demo never leaves a moto server behind. The signal is tied to the *thread* that
    # started the server, so start it from the main thread (or one that lives as long as the server).
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


def server_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("AWS_DEFAULT_REGION", DEFAULT_REGION)
    for key, value in DUMMY_CREDENTIALS.items():
        env.setdefault(key, value)
    return env


def start_moto_server(
    port: int | None = None,
    *,
    log_file: Path | None = None,
    own_session: bool = False,
    module: str = "moto.server",
    env: dict[str, str] | None = None,
) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``python -m moto.server`` on 127.0.0.1 and wait until it answers. Returns (process, url).

    With ``port=None`` a free port is picked; if another process grabs it before moto binds, another port is
    tried. Stop the server with :func:`stop_moto_server` (also registered with atexit as a safety net).
    ``own_session``: out of the terminal's process group, so a Ctrl-C reaches only the caller, which stops
    the server after the processes that still talk to it (``manage.py demo``). ``module``: what to run instead
    of ``moto.server`` (the deployment tests run moto with a resource- and condition-aware authorization);
    ``env``: more environment for it.
    """
    attempts = 1 if port is not None else 3
    last_error = ""
    for _ in range(attempts):
        chosen = port if port is not None else free_port()
        url = f"http://127.0.0.1:{chosen}"
        output = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - owned by the child
        process = subprocess.Popen(
            [sys.executable, "-m", module, "-H", "127.0.0.1", "-p", str(chosen)],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
            env={**server_env(), **(env or {})},
            start_new_session=own_session,
            preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
        )
        if log_file and not isinstance(output, int):
            output.close()
        atexit.register(stop_moto_server, process)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                last_error = f"moto server exited with code {process.returncode} (port {chosen} taken?)"
                break
            if answers(url):
                return process, url
            time.sleep(0.1)
        else:
            last_error = f"moto server did not answer on {url} within {START_TIMEOUT:.0f}s"
        stop_moto_server(process)
    raise RuntimeError(last_error)


def stop_moto_server(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """Terminate the server and wait for it; kill it if it does not stop in time. Safe to call twice."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m accessrequests.aws.motoserver [PORT]
    server, address = start_moto_server(int(sys.argv[1]) if len(sys.argv) > 1 else None)
    print(address, flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        stop_moto_server(server)
