"""Checks of what Gatehouse talks to besides AWS, each only when it is configured: the SMTP server, Slack, the
OpenID Connect provider, and the SCIM token."""

from __future__ import annotations

import smtplib

import requests
from django.conf import settings

from accessrequests.core.wording import counted
from accessrequests.notify import slack_api

from .registry import Context, Result, check, fail, ok, warn

SCIM_TOKEN_MIN_LENGTH = 32  # what `python -c "import secrets; print(secrets.token_urlsafe(24))"` makes
DISCOVERY = "/.well-known/openid-configuration"
DISCOVERY_KEYS = ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")


@check("integrations.email", "the SMTP server in EMAIL_URL answers, when mail goes out by SMTP")
def email(ctx: Context) -> Result:
    if not settings.EMAIL_BACKEND.endswith("smtp.EmailBackend"):
        return ok(
            f"not configured: mail goes to {settings.EMAIL_BACKEND.rsplit('.', 2)[-2]}, not to an SMTP server"
        )
    host, port = settings.EMAIL_HOST, int(settings.EMAIL_PORT)
    fix = (
        f"check EMAIL_URL (now {host}:{port}): the host, the port (587 for STARTTLS, 465 for TLS) and that this "
        "machine may reach it; notifications by mail are not sent until it answers"
    )
    try:
        connection = smtplib.SMTP_SSL if settings.EMAIL_USE_SSL else smtplib.SMTP
        with connection(host, port, timeout=ctx.timeout) as server:
            code, _ = server.noop()
    except (OSError, smtplib.SMTPException) as exc:
        return fail(
            f"the SMTP server {host}:{port} does not answer: {exc.__class__.__name__}: {exc}", fix=fix
        )
    if code != 250:
        return fail(f"the SMTP server {host}:{port} answered NOOP with {code}", fix=fix)
    return ok(f"the SMTP server {host}:{port} answers")


@check("integrations.slack", "Slack accepts SLACK_BOT_TOKEN (auth.test), when it is set")
def slack(ctx: Context) -> Result:
    if not slack_api.enabled():
        return ok("not configured: SLACK_BOT_TOKEN is not set, so Gatehouse posts nothing to Slack")
    try:
        found = slack_api.auth_test(ctx.timeout)
    except slack_api.SlackError as exc:
        return fail(
            f"{exc} ({settings.SLACK_API_URL})",
            fix="set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-…, under OAuth & Permissions), "
            "reinstall the app if it was revoked, and check that this machine reaches SLACK_API_URL",
        )
    return ok(f"the bot token is {found.get('user', '?')} in {found.get('team', '?')}")


@check("integrations.oidc", "the OpenID Connect provider's discovery document, when OIDC is configured")
def oidc(ctx: Context) -> Result:
    server = settings.OIDC_SERVER_URL.rstrip("/")
    if not (settings.OIDC_CLIENT_ID and server):
        return ok("not configured: people sign in with a password and TOTP only")
    url = server if server.endswith(DISCOVERY) else server + DISCOVERY
    fix = (
        "set OIDC_SERVER_URL to the provider's issuer URL (the one whose /.well-known/openid-configuration "
        "answers), and check that this machine reaches it; until then single sign-on fails"
    )
    try:
        response = requests.get(url, timeout=ctx.timeout)
        document = response.json() if response.status_code == 200 else None
    except (requests.RequestException, ValueError) as exc:
        return fail(f"{url}: {exc.__class__.__name__}", fix=fix)
    if not isinstance(document, dict):
        return fail(f"{url} answered {response.status_code}, not a discovery document", fix=fix)
    missing = [key for key in DISCOVERY_KEYS if not document.get(key)]
    if missing:
        return fail(f"{url} lacks {', '.join(missing)}", fix=fix)
    issuer = str(document["issuer"]).rstrip("/")
    if issuer != server.removesuffix(DISCOVERY):
        return warn(
            f"the provider says its issuer is {issuer}, not OIDC_SERVER_URL {server}: ID tokens it signs name "
            "that issuer",
            fix=f"set OIDC_SERVER_URL to {issuer}",
        )
    return ok(f"{issuer} publishes its discovery document")


@check("integrations.scim", "GATEHOUSE_SCIM_TOKEN is long enough, when SCIM is on")
def scim(ctx: Context) -> Result:
    token = settings.GATEHOUSE_SCIM_TOKEN
    if not token:
        return ok("not configured: GATEHOUSE_SCIM_TOKEN is not set, so /scim/v2/ refuses every request")
    fix = (
        f"set GATEHOUSE_SCIM_TOKEN to a random token of at least {SCIM_TOKEN_MIN_LENGTH} characters "
        '(python -c "import secrets; print(secrets.token_urlsafe(32))"), and the same in the identity provider'
    )
    if token != token.strip():
        return fail(
            "GATEHOUSE_SCIM_TOKEN begins or ends with white space, which no bearer token carries", fix=fix
        )
    if len(token) < SCIM_TOKEN_MIN_LENGTH:
        return warn(
            f"GATEHOUSE_SCIM_TOKEN has {counted(len(token), 'character')}; a guessable token creates and "
            "removes people and their groups",
            fix=fix,
        )
    return ok(f"set ({counted(len(token), 'character')})")
