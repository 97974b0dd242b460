"""A fake Slack Web API: a real HTTP server on 127.0.0.1 that answers the methods Gatehouse calls the way Slack
documents them and records every call; and a signer for interactive callbacks as Slack signs them (v0 HMAC)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlparse

BOT_TOKEN = "xoxb-test-bot-token-0000"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.users: dict[str, dict[str, Any]] = {}  # Slack user id -> users.info "user" object
        self.fail_with: str | None = None
        self.before_answer = None  # a test's hook, called with the method name before each answer
        self._ts = itertools.count(1)
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                parsed = urlparse(self.path)
                method = parsed.path.rsplit("/", 1)[-1]
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if "json" in (self.headers.get("Content-Type") or ""):
                    args = json.loads(raw or b"{}")
                else:
                    args = {k: v[0] for k, v in parse_qs(raw.decode() or parsed.query).items()}
                    args.update({k: v[0] for k, v in parse_qs(parsed.query).items()})
                fake.calls.append({"method": method, "args": args, "auth": self.headers.get("Authorization")})
                if fake.before_answer is not None:
                    fake.before_answer(method)
                body = fake.answer(method, args, self.headers.get("Authorization"))
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = _answer
            do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/api/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def add_user(self, user_id: str, email: str, *, confirmed: bool = True, deleted: bool = False) -> None:
        self.users[user_id] = {
            "id": user_id,
            "name": email.split("@")[0],
            "deleted": deleted,
            "is_bot": False,
            "is_email_confirmed": confirmed,
            "profile": {"email": email},
        }

    def answer(self, method: str, args: dict[str, Any], auth: str | None) -> dict[str, Any]:
        if auth != f"Bearer {BOT_TOKEN}":
            return {"ok": False, "error": "invalid_auth"}
        if self.fail_with:
            return {"ok": False, "error": self.fail_with}
        if method == "chat.postMessage":
            return {"ok": True, "channel": args.get("channel"), "ts": f"1700000000.{next(self._ts):06d}"}
        if method == "chat.update":
            return {"ok": True, "channel": args.get("channel"), "ts": args.get("ts")}
        if method == "auth.test":
            return {"ok": True, "url": "https://example.slack.com/", "team": "Example", "user": "gatehouse",
                    "team_id": "T0000TEST", "user_id": "U0000BOT", "bot_id": "B0000BOT"}  # fmt: skip
        if method == "chat.postEphemeral":
            return {"ok": True, "message_ts": f"1700000001.{next(self._ts):06d}"}
        if method == "users.info":
            user = self.users.get(args.get("user", ""))
            return {"ok": True, "user": user} if user else {"ok": False, "error": "user_not_found"}
        if method == "users.lookupByEmail":
            for user in self.users.values():
                if user["profile"]["email"].lower() == str(args.get("email", "")).lower():
                    return {"ok": True, "user": user}
            return {"ok": False, "error": "users_not_found"}
        return {"ok": False, "error": "unknown_method"}

    def made(self, method: str) -> list[dict[str, Any]]:
        return [call["args"] for call in self.calls if call["method"] == method]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


_trigger_ids = itertools.count(1)


def block_action(
    action_id: str,
    request_id: int,
    *,
    slack_user: str,
    channel: str = "C0GATEHOUSE",
    trigger_id: str | None = None,
) -> dict[str, Any]:
    """A block_actions payload as Slack sends it when someone clicks a button of the message."""
    return {
        "type": "block_actions",
        "user": {"id": slack_user, "username": slack_user.lower(), "team_id": "T0TEAM"},
        "api_app_id": "A0GATEHOUSE",
        "team": {"id": "T0TEAM", "domain": "example"},
        "channel": {"id": channel, "name": "aws-access"},
        "trigger_id": trigger_id or f"{next(_trigger_ids)}.1234567890.abcdef0123456789",
        "response_url": "https://hooks.slack.com/actions/T0TEAM/1/unused",
        "container": {"type": "message", "message_ts": "1700000000.000001", "channel_id": channel},
        "actions": [
            {
                "type": "button",
                "action_id": action_id,
                "block_id": "b1",
                "value": str(request_id),
                "action_ts": f"{time.time():.6f}",
            }
        ],
    }


def slash_command(
    text: str, *, slack_user: str, command: str = "/gatehouse", trigger_id: str | None = None
) -> dict[str, str]:
    """The form fields Slack posts when someone runs a slash command."""
    return {
        "token": "deprecated-verification-token",
        "team_id": "T0TEAM",
        "team_domain": "example",
        "channel_id": "C0INCIDENTS",
        "channel_name": "incidents",
        "user_id": slack_user,
        "user_name": slack_user.lower(),
        "command": command,
        "text": text,
        "api_app_id": "A0GATEHOUSE",
        "response_url": "https://hooks.slack.com/commands/T0TEAM/1/unused",
        "trigger_id": trigger_id or f"{next(_trigger_ids)}.1234567890.fedcba9876543210",
    }


def signed(
    payload: dict[str, Any], *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, Any]:
    """The body and headers of an interactive callback, signed as Slack signs it."""
    return signed_form({"payload": json.dumps(payload)}, secret=secret, timestamp=timestamp)


def signed_form(
    fields: dict[str, str], *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, Any]:
    """A form body (a callback's, a slash command's) and its headers, signed as Slack signs them."""
    body = urlencode(fields)
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {
        "data": body,
        "content_type": "application/x-www-form-urlencoded",
        "HTTP_X_SLACK_REQUEST_TIMESTAMP": ts,
        "HTTP_X_SLACK_SIGNATURE": f"v0={digest}",
    }
