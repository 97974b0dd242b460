"""The simulated people of ``bench/load.py``: requesters, approvers and auditors, each a thread that acts and
thinks in turn (a closed loop, as a person does), talking HTTP to gunicorn with its own cookies and token.

Nothing here imports Django: the orchestrator hands every person what the script created for them (a session
cookie, an API token, a TOTP secret, their principal), and each request's time is measured from sending it to the
last byte of its answer, on a fresh connection (what a browser's first request to a host pays, minus DNS)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import json
import random
import struct
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any

ACCOUNT = "123456789012"
# The pipelines of the demo account a requester asks for, and the action a refused call names for each level:
# intake proposes the smallest level that contains the action (GetPipeline: viewer, StartPipelineExecution:
# operator).
PIPELINES = {
    "my-pipeline": "us-east-1",
    "web-frontend": "us-east-1",
    "data-etl": "us-east-1",
    "web-frontend-eu": "eu-west-1",
}
LEVEL_ACTION = {"viewer": "codepipeline:GetPipeline", "operator": "codepipeline:StartPipelineExecution"}
TOTP_PERIOD = 30
# How long a person takes to read a code off their authenticator and type it.
TYPING_SECONDS = (2.0, 12.0)


@dataclass
class Sample:
    name: str
    status: int  # 0: no HTTP answer (connection refused or reset)
    started: float  # monotonic
    seconds: float


class Recorder:
    """Every request of every person, and what the people saw (refusals by kind, races lost)."""

    def __init__(self) -> None:
        self.samples: list[Sample] = []
        self.notes: dict[str, int] = {}
        self.bodies_5xx: list[tuple[str, int, str]] = []
        self._lock = threading.Lock()

    def add(self, sample: Sample, body: bytes) -> None:
        with self._lock:
            self.samples.append(sample)
            if sample.status >= 500 and len(self.bodies_5xx) < 50:
                self.bodies_5xx.append((sample.name, sample.status, body[:400].decode(errors="replace")))

    def note(self, what: str) -> None:
        with self._lock:
            self.notes[what] = self.notes.get(what, 0) + 1


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """One person's HTTP: their cookies (set by the script or by the server) and bearer token."""

    def __init__(self, port: int, recorder: Recorder, *, cookies: dict[str, str], token: str = "") -> None:
        self.port = port
        self.recorder = recorder
        self.cookies = dict(cookies)
        self.token = token

    def request(
        self,
        method: str,
        path: str,
        name: str,
        *,
        form: dict[str, Any] | None = None,
        body: Any = None,
        api: bool = False,
    ) -> Answer:
        headers = {"User-Agent": "gatehouse-load", "Connection": "close"}
        data: bytes | None = None
        if api:
            headers["Authorization"] = f"Bearer {self.token}"
            headers["Accept"] = "application/json"
            if body is not None:
                data = json.dumps(body).encode()
                headers["Content-Type"] = "application/json"
        else:
            if self.cookies:
                headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
            if form is not None:
                data = urllib.parse.urlencode(form, doseq=True).encode()
                headers["Content-Type"] = "application/x-www-form-urlencoded"
        started = time.monotonic()
        status, answer_headers, content = 0, {}, b""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            content = response.read()
            status = response.status
            answer_headers = {k.lower(): v for k, v in response.getheaders()}
            for value in response.headers.get_all("Set-Cookie") or []:
                pair = value.split(";", 1)[0]
                key, _, val = pair.partition("=")
                self.cookies[key.strip()] = val.strip()
        except (OSError, http.client.HTTPException) as exc:
            content = f"{exc.__class__.__name__}: {exc}".encode()
        finally:
            connection.close()
        self.recorder.add(Sample(name, status, started, time.monotonic() - started), content)
        return Answer(status, answer_headers, content)


class FormFields(HTMLParser):
    """The fields of one form (by id) and the values the page shows for them, as a browser would post them."""

    def __init__(self, form_id: str) -> None:
        super().__init__()
        self.form_id = form_id
        self.data: dict[str, list[str]] = {}
        self.inside = False
        self.select: str | None = None
        self.textarea: str | None = None

    def _put(self, name: str, value: str) -> None:
        self.data.setdefault(name, []).append(value)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.inside = a.get("id") == self.form_id
        if not self.inside:
            return
        name = a.get("name", "")
        if tag == "input" and name:
            kind = a.get("type", "text")
            if kind in ("submit", "button", "file"):
                return
            if kind in ("checkbox", "radio") and "checked" not in a:
                return
            self._put(name, a.get("value", "on" if kind in ("checkbox", "radio") else ""))
        elif tag == "select" and name:
            self.select = name
        elif tag == "option" and self.select and "selected" in a:
            self._put(self.select, a.get("value", ""))
        elif tag == "textarea" and name:
            self.textarea = name
            self.data[name] = [""]

    def handle_endtag(self, tag: str) -> None:
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "form":
            self.inside = False

    def handle_data(self, data: str) -> None:
        if self.inside and self.textarea:
            self.data[self.textarea][-1] += data


def form_of(page: bytes, form_id: str) -> dict[str, list[str]]:
    parser = FormFields(form_id)
    parser.feed(page.decode(errors="replace"))
    return parser.data


def csrf_token(page: bytes) -> str:
    marker = b'name="csrfmiddlewaretoken" value="'
    start = page.find(marker)
    if start < 0:
        return ""
    start += len(marker)
    return page[start : page.index(b'"', start)].decode()


def totp_code(secret: str, step: int) -> str:
    """RFC 6238 with allauth's defaults (SHA-1, 6 digits, 30 s), as the person's authenticator app shows it."""
    key = base64.b32decode(secret.upper() + "=" * (-len(secret) % 8))
    digest = hmac.new(key, struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return f"{value % 1_000_000:06d}"


@dataclass
class Person:
    """What the script made for one person; the orchestrator fills it."""

    username: str
    role: str  # requester | approver | auditor
    session: str = ""
    token: str = ""
    totp_secret: str = ""
    principal_id: int = 0
    principal_name: str = ""
    account_pk: int = 0
    pipeline_pks: dict[str, int] = field(default_factory=dict)
    last_step: int = -1  # the last TOTP step an approver used


class Simulation:
    """Runs every person until ``stop`` is set; ``think`` is each role's mean pause between visits (seconds)."""

    def __init__(
        self,
        people: list[Person],
        *,
        port: int,
        session_cookie: str,
        think: dict[str, float],
        recorder: Recorder,
        seed: int,
    ) -> None:
        self.people = people
        self.port = port
        self.session_cookie = session_cookie
        self.think = think
        self.recorder = recorder
        self.stop = threading.Event()
        self.seed = seed
        self.threads: list[threading.Thread] = []

    def start(self, ramp_seconds: float) -> None:
        for n, person in enumerate(self.people):
            rng = random.Random(self.seed * 100_003 + n)
            delay = ramp_seconds * n / max(1, len(self.people))
            thread = threading.Thread(
                target=self._run, args=(person, rng, delay), name=person.username, daemon=True
            )
            thread.start()
            self.threads.append(thread)

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def _run(self, person: Person, rng: random.Random, delay: float) -> None:
        if self.stop.wait(delay):
            return
        client = Client(
            self.port,
            self.recorder,
            cookies={self.session_cookie: person.session} if person.session else {},
            token=person.token,
        )
        visit: Callable[[Person, Client, random.Random], None] = {
            "requester": self._requester,
            "approver": self._approver,
            "auditor": self._auditor,
        }[person.role]
        while not self.stop.is_set():
            try:
                visit(person, client, rng)
            except Exception as exc:  # a person's script error must not end the run silently
                self.recorder.note(f"script error {exc.__class__.__name__}: {exc}"[:120])
            self.stop.wait(self.think[person.role] * rng.uniform(0.5, 1.5))

    # --- requesters ---------------------------------------------------------------------------------------

    def _requester(self, person: Person, client: Client, rng: random.Random) -> None:
        roll = rng.random()
        if roll < 0.63:
            client.request("GET", "/", "GET / (home)")
            listing = client.request("GET", "/requests/", "GET /requests/")
            ids = _request_ids(listing.body)
            if ids:
                client.request("GET", f"/requests/{rng.choice(ids)}/", "GET /requests/<id>/")
            return
        held, grants = self._holdings(client)
        free = [(p, level) for p in PIPELINES for level in LEVEL_ACTION if (p, level) not in held]
        if roll > 0.93 or not free:
            if grants:
                grant_id = rng.choice(grants)
                answer = client.request(
                    "POST", f"/api/v1/grants/{grant_id}/revoke/", "POST /api/v1/grants/<id>/revoke/", api=True
                )
                self.recorder.note(f"revoke answered {answer.status}")
            return
        pipeline, level = rng.choice(free)
        channel = rng.choices(["web paste", "web form", "api paste", "api fields"], [35, 20, 25, 20])[0]
        if channel == "web paste":
            self._file_web_paste(person, client, pipeline, level, rng)
        elif channel == "web form":
            self._file_web_form(person, client, pipeline, level)
        elif channel == "api paste":
            message = self._message(person, pipeline, level, rng)
            client.request(
                "POST", "/api/v1/intake/", "POST /api/v1/intake/", body={"message": message}, api=True
            )
            filed = client.request(
                "POST", "/api/v1/requests/", "POST /api/v1/requests/ (message)", api=True,
                body={"message": message, "justification": "release is blocked", "duration_hours": 2},
            )  # fmt: skip
            self._filed(filed, 201, "api paste")
        else:
            filed = client.request(
                "POST", "/api/v1/requests/", "POST /api/v1/requests/ (fields)", api=True,
                body={
                    "kind": "pipeline", "account": ACCOUNT, "principal": person.principal_id,
                    "pipelines": [pipeline], "level": level, "justification": "on call this week",
                    "duration_hours": 2,
                },
            )  # fmt: skip
            self._filed(filed, 201, "api fields")

    def _holdings(self, client: Client) -> tuple[set[tuple[str, str]], list[int]]:
        """What the person has asked for and still holds or waits for, and their grants that are live."""
        answer = client.request("GET", "/api/v1/requests/?limit=100", "GET /api/v1/requests/", api=True)
        held: set[tuple[str, str]] = set()
        if answer.status != 200:
            return held, []
        for req in answer.json():
            live = req["status"] == "pending" or (
                req["status"] == "approved" and req["grant_status"] not in ("revoked", "expired", "abandoned")
            )
            if live and req["pipelines"]:
                held.add((req["pipelines"][0], req["level"]))
        grants = client.request(
            "GET", "/api/v1/grants/?status=active&limit=100", "GET /api/v1/grants/?status=active", api=True
        )
        active = [g["id"] for g in grants.json()] if grants.status == 200 else []
        return held, active

    def _message(self, person: Person, pipeline: str, level: str, rng: random.Random) -> str:
        resource = (
            f"arn:aws:codepipeline:{PIPELINES[pipeline]}:{ACCOUNT}:{pipeline}"
            if rng.random() < 0.5
            else pipeline
        )
        text = (
            f"User: arn:aws:iam::{ACCOUNT}:user/{person.principal_name} is not authorized to perform: "
            f"{LEVEL_ACTION[level]} on resource: {resource}"
        )
        if rng.random() < 0.3:  # as the CLI prints it
            text = f"An error occurred (AccessDeniedException) when calling the GetPipeline operation: {text}"
        return text

    def _file_web_paste(
        self, person: Person, client: Client, pipeline: str, level: str, rng: random.Random
    ) -> None:
        page = client.request("GET", "/requests/paste/", "GET /requests/paste/")
        message = self._message(person, pipeline, level, rng)
        preview = client.request(
            "POST", "/requests/paste/", "POST /requests/paste/", form={
                "csrfmiddlewaretoken": csrf_token(page.body), "message": message,
            },
        )  # fmt: skip
        if preview.status != 200:
            self.recorder.note(f"paste answered {preview.status}")
            return
        self._submit_form(client, preview.body, {}, "web paste")

    def _file_web_form(self, person: Person, client: Client, pipeline: str, level: str) -> None:
        query = urllib.parse.urlencode(
            {
                "account": person.account_pk,
                "kind": "pipeline",
                "principal": person.principal_id,
                "level": level,
            }
        )
        page = client.request("GET", f"/requests/new/?{query}", "GET /requests/new/")
        if page.status != 200:
            return
        self._submit_form(
            client,
            page.body,
            {"pipelines": [str(person.pipeline_pks[pipeline])], "level": [level]},
            "web form",
        )

    def _submit_form(self, client: Client, page: bytes, changes: dict[str, list[str]], how: str) -> None:
        data = form_of(page, "request-form")
        if not data:
            self.recorder.note(f"{how}: no request form on the page")
            return
        data.update(changes)
        data["justification"] = ["the release is blocked on this"]
        data["duration_hours"] = ["2"]
        data["intent"] = ["submit"]
        filed = client.request("POST", "/requests/new/", f"POST /requests/new/ ({how})", form=data)
        if self._filed(filed, 302, how):
            client.request("GET", filed.headers["location"], "GET /requests/<id>/")

    def _filed(self, answer: Answer, expected: int, how: str) -> bool:
        if answer.status == expected:
            self.recorder.note(f"filed by {how}")
            return True
        if 400 <= answer.status < 500 or answer.status == 200:
            # 200 on the web form is the form again with its errors (a duplicate, a rule's refusal)
            self.recorder.note(f"{how} refused ({answer.status}): {_first_error(answer.body)}")
        return False

    # --- approvers ----------------------------------------------------------------------------------------

    def _approver(self, person: Person, client: Client, rng: random.Random) -> None:
        listing = client.request(
            "GET",
            "/api/v1/requests/?status=pending&limit=100",
            "GET /api/v1/requests/?status=pending",
            api=True,
        )
        if listing.status != 200 or not listing.json():
            return
        req = rng.choice(listing.json())
        client.request("GET", f"/api/v1/requests/{req['id']}/", "GET /api/v1/requests/<id>/", api=True)
        # An authenticator shows one code per 30 s and a used code is refused: a person who decided in this
        # step waits for the next code, as they would with the app in hand; then they read it and type it, which
        # takes a few seconds (the portal accepts the step before too). Without the typing every waiting approver
        # would send their decision in the same few milliseconds after each step begins, a herd no office makes.
        while int(time.time()) // TOTP_PERIOD <= person.last_step:
            if self.stop.wait(TOTP_PERIOD - time.time() % TOTP_PERIOD + 0.05):
                return
        step = int(time.time()) // TOTP_PERIOD
        person.last_step = step
        if self.stop.wait(rng.uniform(*TYPING_SECONDS)):
            return
        outcome = "approve" if rng.random() < 0.9 else "deny"
        answer = client.request(
            "POST", f"/api/v1/requests/{req['id']}/{outcome}/", f"POST /api/v1/requests/<id>/{outcome}/", api=True,
            body={"otp": totp_code(person.totp_secret, step), "comment": "ok" if outcome == "approve" else "not now"},
        )  # fmt: skip
        if answer.status != 200:
            self.recorder.note(f"{outcome} answered {answer.status}: {_first_error(answer.body)}")
        else:
            self.recorder.note(f"{outcome}d")

    # --- auditors -----------------------------------------------------------------------------------------

    def _auditor(self, person: Person, client: Client, rng: random.Random) -> None:
        since = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() - 600))
        if rng.random() < 0.5:
            client.request("GET", f"/audit/?since={since}", "GET /audit/ (last 10 min)")
            return
        if rng.random() < 0.2:
            answer = client.request("GET", "/audit/export.csv", "GET /audit/export.csv (whole trail)")
        else:
            answer = client.request(
                "GET", f"/audit/export.csv?since={since}", "GET /audit/export.csv (last 10 min)"
            )
        if answer.status == 200:
            self.recorder.note("exports")
            lines = answer.body.count(b"\n")
            with self.recorder._lock:
                self.recorder.notes["exported rows"] = self.recorder.notes.get("exported rows", 0) + lines - 1


def _request_ids(page: bytes) -> list[int]:
    ids = set()
    marker = b'href="/requests/'
    start = 0
    while (start := page.find(marker, start)) >= 0:
        start += len(marker)
        end = page.find(b"/", start)
        if page[start:end].isdigit():
            ids.add(int(page[start:end]))
    return sorted(ids)


def _first_error(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        for marker in (b'data-testid="duplicate">', b'class="alert alert-danger'):
            at = body.find(marker)
            if at >= 0:
                text = body[at + len(marker) : at + len(marker) + 200].decode(errors="replace")
                return text.split("<", 1)[0].strip() or "error shown on the form"
        return "page with errors"
    return json.dumps(data)[:160]
