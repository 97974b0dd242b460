"""The Slack Web API, behind one thin module (the only code that imports slack_sdk).

The bot token (SLACK_BOT_TOKEN) and the signing secret (SLACK_SIGNING_SECRET) come from the environment only and
never appear in an error message, a log line or the audit trail. SLACK_API_URL points the client elsewhere (the
tests' fake Slack on 127.0.0.1).
"""

from __future__ import annotations

import time
from typing import Any

from django.conf import settings
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.signature import SignatureVerifier

TIMEOUT_SECONDS = 5
MAX_AGE_SECONDS = 5 * 60  # Slack's own advice: refuse requests signed more than five minutes ago


class SlackError(Exception):
    """A Slack call failed; the message names the method and Slack's error code, never a token."""


def enabled() -> bool:
    return bool(settings.SLACK_BOT_TOKEN)


def _client() -> WebClient:
    return WebClient(token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL, timeout=TIMEOUT_SECONDS)


def _call(method: str, **kwargs: Any) -> dict[str, Any]:
    try:
        response = getattr(_client(), method)(**kwargs)
    except SlackApiError as exc:
        raise SlackError(f"slack {method}: {exc.response.get('error', 'error')}") from None
    except (SlackClientError, OSError) as exc:
        raise SlackError(f"slack {method}: unreachable ({exc.__class__.__name__})") from None
    return dict(response.data) if isinstance(response.data, dict) else {}


def auth_test(timeout: float) -> dict[str, Any]:
    """Who the bot token is (Slack's auth.test): the doctor's check that the token works."""
    try:
        response = WebClient(
            token=settings.SLACK_BOT_TOKEN, base_url=settings.SLACK_API_URL, timeout=max(1, round(timeout))
        ).auth_test()
    except SlackApiError as exc:
        raise SlackError(f"slack auth.test: {exc.response.get('error', 'error')}") from None
    except (SlackClientError, OSError) as exc:
        raise SlackError(f"slack auth.test: unreachable ({exc.__class__.__name__})") from None
    return dict(response.data) if isinstance(response.data, dict) else {}


def post_message(*, channel: str, text: str, blocks: list | None = None, thread_ts: str = "") -> str:
    """Post to a channel (or to a user id: a direct message); returns the message's ts."""
    kwargs: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False}
    if blocks is not None:
        kwargs["blocks"] = blocks
    if thread_ts:
        kwargs["thread_ts"] = thread_ts
    return str(_call("chat_postMessage", **kwargs).get("ts", ""))


def update_message(*, channel: str, ts: str, text: str, blocks: list) -> None:
    _call("chat_update", channel=channel, ts=ts, text=text, blocks=blocks)


def post_ephemeral(*, channel: str, user: str, text: str) -> None:
    _call("chat_postEphemeral", channel=channel, user=user, text=text)


def user_info(user_id: str) -> dict[str, Any] | None:
    """Slack's user record, or None when Slack knows no such user."""
    try:
        return _call("users_info", user=user_id).get("user")
    except SlackError as exc:
        if str(exc).endswith(": user_not_found"):
            return None
        raise


def user_id_by_email(email: str) -> str | None:
    try:
        found = _call("users_lookupByEmail", email=email).get("user") or {}
    except SlackError as exc:
        if str(exc).endswith(": users_not_found"):
            return None
        raise
    return found.get("id") or None


def verification_problem(body: bytes, timestamp: str | None, signature: str | None) -> str | None:
    """Why a request did not come from Slack just now (signing secret, v0 HMAC, five minutes), or None."""
    secret = settings.SLACK_SIGNING_SECRET
    if not secret:
        return "Slack interactivity is not configured here."
    if not timestamp or not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        return "The request carries no Slack timestamp."
    if abs(time.time() - int(timestamp)) > MAX_AGE_SECONDS:
        return "The request was signed more than five minutes ago."
    if not signature or not SignatureVerifier(secret).is_valid(
        body=body, timestamp=timestamp, signature=signature
    ):
        return "The request's Slack signature is not valid."
    return None
