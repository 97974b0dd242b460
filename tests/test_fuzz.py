"""No input gives a 500: every web page (found by walking the URL patterns) gets out-of-range integers and odd
unicode in its path, in every query parameter the pages read and in every form field, as each kind of user.
(The JSON API has its own property-based run against its OpenAPI schema: tests/test_api_schema.py.)"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from accessrequests.views import forms as portal_forms
from accessrequests.views.tokens import TokenForm
from tests.conftest import enable_totp, make_user, sign_in_with_mfa
from tests.factories import World, fresh_factor

pytestmark = pytest.mark.django_db

ODD_VALUES = [
    "99999999999999999999999999",  # far beyond a 64-bit integer
    "9223372036854775808",  # one beyond PostgreSQL's bigint
    "-1",
    "0",
    "1e308",
    "NaN",
    "\x00",  # NUL: PostgreSQL refuses it in text
    "ab\x00cd",
    "\u202egnp.exe",  # right-to-left override
    "\U0001d518\U0001d52b\U0001d526 \ufdfd \U0001f525",  # mathematical letters, a ligature, an emoji
    "x" * 5000,
    "2026-13-45T99:99",
    "' OR 1=1 --",
    "GH-" + "9" * 30,
]
# Every query parameter a page reads (grep request.GET in accessrequests/views), plus a few it does not.
QUERY_PARAMETERS = [
    "page", "status", "account", "kind", "level", "principal", "older_than_hours", "since", "until", "actor",
    "pipeline", "action", "request_ref", "extends", "region", "next", "format", "q", "ou",
]  # fmt: skip
FORMS = [portal_forms.RequestForm, portal_forms.PasteForm, portal_forms.DecisionForm, TokenForm]
FORM_FIELDS = sorted(
    {name for form in FORMS for name in form.base_fields}
    | {"intent", "comment", "decision", "confirm", "login", "password", "code"}
)


def _paths() -> list[str]:
    """Every web URL pattern (not the API, the admin or allauth's), with each odd value in each converter."""
    found: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for entry in patterns:
            route = str(entry.pattern)
            if isinstance(entry, URLResolver):
                if route.startswith(("api/", "admin/", "accounts/")):
                    continue
                walk(entry.url_patterns, prefix + route)
            elif isinstance(entry, URLPattern):
                found.append(prefix + route)

    walk(get_resolver().url_patterns, "")
    # /healthz reads no input, and answers 503 by design while no worker heartbeat is fresh (none runs here).
    found.remove("healthz")
    paths = []
    for route in found:
        if "<" not in route:
            paths.append("/" + route)
            continue
        for value in ("9" * 30, "9223372036854775808", "0"):
            paths.append("/" + re.sub(r"<(?:\w+:)?\w+>", value, route))
        paths.append("/" + re.sub(r"<str:\w+>", "%F0%9F%94%A5", re.sub(r"<int:\w+>", "1", route)))
    return sorted(set(paths))


@pytest.fixture
def people():
    world = World()
    # Something to see on every page: a pending request, a decided one with a grant.
    world.submit()
    from accessrequests.workflow.requests import request_approve

    approved = world.submit()
    request_approve(
        request_id=approved.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    enable_totp(world.approver)
    admin = make_user("boss", "admins", "approvers", is_staff=True, is_superuser=True)
    auditor = make_user("reader", "auditors")
    return {"requester": world.requester, "approver": world.approver, "admin": admin, "auditor": auditor}


def _client(user) -> Client:
    client = Client()
    if user.authenticator_set.exists():
        sign_in_with_mfa(client, user)
    else:
        client.force_login(user)
    return client


def test_the_walk_finds_the_pages():
    paths = _paths()
    assert "/requests/new/" in paths and "/review/" in paths and any(p.startswith("/grants/") for p in paths)


@pytest.mark.parametrize("role", ["requester", "approver", "admin", "auditor"])
def test_no_page_answers_odd_input_with_a_server_error(people, role):
    client = _client(people[role])
    failures = []
    for path in _paths():
        for value in ODD_VALUES:
            query = dict.fromkeys(QUERY_PARAMETERS, value)
            answers = [("GET", client.get(path, query))]
            answers.append(("POST", client.post(path, dict.fromkeys(FORM_FIELDS, value))))
            failures += [
                (method, path, value[:20], r.status_code) for method, r in answers if r.status_code >= 500
            ]
    assert failures == []
