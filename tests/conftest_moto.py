"""pytest fixtures for tests that talk HTTP to a moto server.

Not a conftest itself: ``tests/conftest.py`` pulls the fixtures in with
``from tests.conftest_moto import aws, demo_world, moto_server  # noqa: F401`` (or ``import *``), or a run
registers the module as a plugin with ``-p tests.conftest_moto``.

- ``moto_server`` (session): one moto server process on a free 127.0.0.1 port, stopped at the end.
- ``aws`` (function): a clean moto (all state reset, IAM authorization off), ``AWS_ENDPOINT_URL`` pointing at
  it in Django settings and in the environment, dummy credentials, no cached STS credentials.
- ``demo_world`` (function): ``aws`` plus the seeded demo world; yields the seeding summary.

Works with and without pytest-django: Django settings are changed only when Django is configured.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from accessrequests.aws.client import clear_credentials_cache
from accessrequests.aws.motoserver import (
    DEFAULT_REGION,
    DUMMY_CREDENTIALS,
    reset,
    start_moto_server,
    stop_moto_server,
)

__all__ = ["aws", "demo_world", "moto_server"]


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    process, url = start_moto_server()
    try:
        yield url
    finally:
        stop_moto_server(process)


def _point_django_at(url: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Set the AWS settings through pytest-django's ``settings`` fixture (which restores them afterwards).

    Without pytest-django but with Django configured by hand, monkeypatch Django's settings instead; without
    Django at all, the environment set by ``aws`` is what the client factory reads.
    """
    try:
        from django.conf import settings
    except ImportError:
        return
    if not settings.configured:
        return
    try:
        fixture_settings = request.getfixturevalue("settings")
    except pytest.FixtureLookupError:
        monkeypatch.setattr(settings, "AWS_ENDPOINT_URL", url, raising=False)
        monkeypatch.setattr(settings, "AWS_DEFAULT_REGION", DEFAULT_REGION, raising=False)
        return
    fixture_settings.AWS_ENDPOINT_URL = url
    fixture_settings.AWS_DEFAULT_REGION = DEFAULT_REGION


@pytest.fixture
def aws(moto_server: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    reset(moto_server)
    clear_credentials_cache()
    # The environment always points at moto too: botocore itself honours AWS_ENDPOINT_URL, so even a client
    # made outside the factory cannot reach real AWS from a test.
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server)
    monkeypatch.setenv("AWS_DEFAULT_REGION", DEFAULT_REGION)
    for key, value in DUMMY_CREDENTIALS.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    _point_django_at(moto_server, request, monkeypatch)
    try:
        yield moto_server
    finally:
        # A test may have switched IAM authorization on; the next test must start with it off.
        reset(moto_server)
        clear_credentials_cache()


@pytest.fixture
def demo_world(aws: str) -> dict[str, Any]:
    from accessrequests.devworld.demo_world import seed_demo_world

    return seed_demo_world()
