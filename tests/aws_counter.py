"""A counting HTTP proxy in front of the moto server: what the portal asked AWS, counted on the wire.

Tests point ``AWS_ENDPOINT_URL`` at it. Every request is forwarded unchanged to moto; the proxy records the
operation (``X-Amz-Target`` for JSON services, ``Action=`` for query services) and the account the request was
made in: the access key in its signature, mapped to an account by the STS ``AssumeRole`` answers it saw
(requests with the hub's own key count as the hub's).
"""

from __future__ import annotations

import json
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_KEY = re.compile(r"Credential=([A-Z0-9]+)/")
_ROLE_ACCOUNT = re.compile(r"RoleArn=arn%3Aaws%3Aiam%3A%3A(\d{12})")
_ISSUED_KEY = re.compile(rb"<AccessKeyId>([A-Z0-9]+)</AccessKeyId>")
HUB = "hub"


def _named(body: bytes) -> str:
    try:
        fields = json.loads(body or b"{}")
    except ValueError:
        return ""
    if not isinstance(fields, dict):
        return ""
    return str(fields.get("name") or fields.get("resourceArn") or fields.get("ResourceId") or "")


class CountingProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")
        self.calls: Counter[tuple[str, str]] = Counter()  # (account, operation) -> count
        # (operation, what a JSON request names: a pipeline's name, a resource ARN or id) -> count
        self.named: Counter[tuple[str, str]] = Counter()
        self._accounts: dict[str, str] = {}  # access key -> account
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {
                    k: v for k, v in self.headers.items() if k.lower() not in {"host", "content-length"}
                }
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body or None, method=self.command, headers=headers
                )
                try:
                    with urllib.request.urlopen(request, timeout=60) as answer:
                        status, answer_headers, payload = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as exc:
                    status, answer_headers, payload = exc.code, exc.headers, exc.read()
                proxy._record(self.headers, self.path, body, payload)
                self.send_response(status)
                for key, value in answer_headers.items():
                    if key.lower() not in {"transfer-encoding", "connection", "content-length"}:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _record(self, headers, path: str, body: bytes, payload: bytes) -> None:
        target = headers.get("X-Amz-Target", "")
        if target:
            operation = target.rsplit(".", 1)[-1]
        else:
            fields = urllib.parse.parse_qs(body.decode("utf-8", "replace")) if body else {}
            fields.update(urllib.parse.parse_qs(urllib.parse.urlsplit(path).query))
            operation = (fields.get("Action") or [f"{headers.get('X-Amz-Target', '')}{path}"])[0]
        key_match = _KEY.search(headers.get("Authorization", ""))
        key = key_match.group(1) if key_match else ""
        with self._lock:
            account = self._accounts.get(key, HUB)
            self.calls[(account, operation)] += 1
            if target:
                named = _named(body)
                if named:
                    self.named[(operation, named)] += 1
            if operation == "AssumeRole":
                role = _ROLE_ACCOUNT.search(body.decode("utf-8", "replace"))
                issued = _ISSUED_KEY.search(payload)
                if role and issued:
                    self._accounts[issued.group(1).decode()] = role.group(1)

    def accounts_calling(self, operation: str) -> Counter[str]:
        with self._lock:
            return Counter({acct: n for (acct, op), n in self.calls.items() if op == operation})

    def names(self, operation: str) -> Counter[str]:
        """What the calls of a JSON operation named (``GetPipeline``: pipeline names; ``ListTagsForResource``:
        a pipeline's ARN or an account id), with how often."""
        with self._lock:
            return Counter({name: n for (op, name), n in self.named.items() if op == operation})

    def count(self, operation: str) -> int:
        return sum(self.accounts_calling(operation).values())

    def clear(self) -> None:
        with self._lock:
            self.calls.clear()
            self.named.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
