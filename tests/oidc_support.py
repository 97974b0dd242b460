"""A real, independent OpenID Provider for the sign-in tests: tests/oidc/provider.js (the `oidc-provider` npm
package) in its own Node process on a free port of 127.0.0.1, with users and groups read from a JSON file the
tests rewrite."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlparse

import requests

from tests.conftest import ARTIFACTS, ROOT, service_missing

OIDC_DIR = ROOT / "tests" / "oidc"
CLIENT_ID = "gatehouse-tests"
CLIENT_SECRET = "client-secret-for-tests-only"
CALLBACK_PATH = "/accounts/oidc/oidc/login/callback/"
PASSWORD = "idp-password-1"

DEFAULT_USERS = {
    "alice": {
        "password": PASSWORD,
        "email": "alice@example.com",
        "email_verified": True,
        "name": "Alice Approver",
        "groups": ["aws-approvers", "everyone"],
    },
    "bob": {
        "password": PASSWORD,
        "email": "bob@example.com",
        "email_verified": True,
        "name": "Bob Builder",
        "groups": ["everyone"],
    },
}


class OpenIdProvider:
    """The provider process and its configuration file."""

    def __init__(self, config_path: Path, gatehouse_url: str):
        self.config_path = config_path
        self.gatehouse_url = gatehouse_url.rstrip("/")
        self.proc: subprocess.Popen | None = None
        self.url = ""
        self.log_path = ARTIFACTS / "oidc-provider.log"

    def write(self, users: dict) -> None:
        config = {
            "client": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [self.gatehouse_url + CALLBACK_PATH],
            },
            "users": users,
        }
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(config))
        os.replace(tmp, self.config_path)  # the provider never reads half a file

    def set_groups(self, login: str, groups: list[str]) -> None:
        users = json.loads(self.config_path.read_text())["users"]
        users[login]["groups"] = groups
        self.write(users)

    def start(self) -> OpenIdProvider:
        node = shutil.which("node")
        if node is None or not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
            service_missing("Node and tests/oidc/node_modules (make oidc-provider)")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.write(DEFAULT_USERS)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
        self.proc = subprocess.Popen(
            [node, str(OIDC_DIR / "provider.js"), str(self.config_path)],
            cwd=OIDC_DIR, stdout=subprocess.PIPE, stderr=log, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        # A bound for a failure, not a wait: the line comes in about a second. Once, in a full run on a fresh
        # clone, it had not come after the 30 s this bound was (only the import's warning was logged): the error
        # now says how long it waited and whether the provider was still running.
        started = time.monotonic()
        deadline = started + 120
        line = b""
        while time.monotonic() < deadline and b"\n" not in line:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 200)
                if not chunk:
                    break
                line += chunk
        text = line.decode(errors="replace")
        if not text.startswith("listening on "):
            running = self.proc.poll() is None
            self.stop()
            raise AssertionError(
                f"the OpenID Provider did not start: {text!r} after {time.monotonic() - started:.0f} s, "
                f"{'still running' if running else f'exited with {self.proc.returncode}'} (see {self.log_path})"
            )
        self.url = text.split()[-1].strip()
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def app_settings(self) -> dict:
        """allauth's SOCIALACCOUNT_PROVIDERS entry for Gatehouse registered with this provider."""
        return {
            "OAUTH_PKCE_ENABLED": True,
            "SCOPE": ["openid", "profile", "email", "groups"],
            "provider_class": "portal.oidc.NonceOpenIDConnectProvider",
            "APPS": [
                {
                    "provider_id": "oidc",
                    "name": "Test IdP",
                    "client_id": CLIENT_ID,
                    "secret": CLIENT_SECRET,
                    "settings": {"server_url": self.url},
                }
            ],
        }


class ScriptedBrowser:
    """A plain HTTP client through the same sign-in, one redirect at a time, so a test can stop before the
    callback and tamper with it (what an attacker with a stolen or forged link would do)."""

    def __init__(self, gatehouse_url: str):
        self.gatehouse_url = gatehouse_url.rstrip("/")
        self.http = requests.Session()

    def _follow(self, response: requests.Response, stop_at: str) -> requests.Response | str:
        """Follow redirects until one points at ``stop_at`` (returned as a URL) or a page is reached."""
        for _ in range(10):
            if response.status_code not in (301, 302, 303, 307, 308):
                return response
            location = urljoin(response.url, response.headers["Location"])
            if location.startswith(stop_at):
                return location
            response = self.http.get(location, allow_redirects=False, timeout=20)
        raise AssertionError("too many redirects")

    def start(self) -> requests.Response | str:
        """Ask Gatehouse to sign in with the provider; returns the provider's page (or the callback URL when
        the provider remembers the person and has their consent)."""
        self.http.get(self.gatehouse_url + "/accounts/login/", timeout=20)
        token = self.http.cookies.get("csrftoken")
        response = self.http.post(
            self.gatehouse_url + "/accounts/oidc/oidc/login/",
            data={"csrfmiddlewaretoken": token},
            headers={"Referer": self.gatehouse_url + "/accounts/login/"},
            allow_redirects=False,
            timeout=20,
        )
        return self._follow(response, self.gatehouse_url + CALLBACK_PATH)

    def authorize(self, login: str, password: str = PASSWORD) -> str:
        """Sign in at the provider and consent; returns the callback URL the provider sends back (unvisited)."""
        page = self.start()
        for _ in range(4):
            if isinstance(page, str):
                return page
            action = page.url.split("?")[0].rstrip("/")
            if 'name="password"' in page.text:
                response = self.http.post(
                    action + "/login", data={"login": login, "password": password}, allow_redirects=False
                )
            elif "Allow" in page.text:
                response = self.http.post(action + "/confirm", allow_redirects=False)
            else:
                raise AssertionError(f"unexpected provider page: {page.text[:300]}")
            page = self._follow(response, self.gatehouse_url + CALLBACK_PATH)
        raise AssertionError("the provider never sent the browser back")

    def callback(self, url: str) -> requests.Response:
        return self.http.get(url, allow_redirects=True, timeout=20)

    def signed_in(self) -> bool:
        home = self.http.get(self.gatehouse_url + "/", allow_redirects=False, timeout=20)
        return home.status_code == 200


def with_params(url: str, **changes: str) -> str:
    parsed = urlparse(url)
    query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
    query.update(changes)
    from urllib.parse import urlencode

    return parsed._replace(query=urlencode(query)).geturl()


def params(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(url).query).items()}
