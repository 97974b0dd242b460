"""What every AWS module reads before it makes a call: Gatehouse's AWS settings and whether the caller is a page
someone waits for (quick reads). Below both the client factory and the Identity Center governor, so neither
imports the other to learn them."""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator


def setting(name: str, default: str | None = None) -> str | None:
    """Read an AWS-related setting: Django settings first, then the environment.

    Django settings may not be configured (management scripts, ``make demo`` before Django starts, tests run
    without pytest-django); then the environment variable of the same name is used.
    """
    try:
        from django.conf import settings

        value = getattr(settings, name, None)
    except (
        Exception
    ):  # ImproperlyConfigured, or DJANGO_SETTINGS_MODULE names a module that cannot be imported
        value = None
    if value is None:
        value = os.environ.get(name)
    return default if value is None else value


# Reads a web page makes while someone waits (the review's "what AWS holds now", group members before a
# decision): one attempt with short timeouts, so an AWS outage costs the page seconds, not minutes of retries;
# the caller falls back to what Gatehouse knows and says so.
_quick = contextvars.ContextVar("gatehouse_quick_reads", default=False)


@contextlib.contextmanager
def quick_reads() -> Iterator[None]:
    token = _quick.set(True)
    try:
        yield
    finally:
        _quick.reset(token)


def in_quick_reads() -> bool:
    return _quick.get()
