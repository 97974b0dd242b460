"""Reuse boto3 clients between calls of the provisioning engine.

Building a botocore client costs about 10 ms (loading the service model, resolving endpoints and retry
config), more than an IAM call against a nearby endpoint; a reconcile makes several calls per principal, and a
worker makes thousands of reconciles. So clients from the factory are kept for a few minutes — shorter than the
factory's refresh margin for assumed-role credentials, so a kept client never outlives its credentials — and
keyed by everything that decides what the factory would build (endpoint and hub credentials included, which
tests change between runs).
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from . import client as factory
from .client import (
    CREDENTIALS_REFRESH_MARGIN,
    client,
    endpoint_url,
    in_quick_reads,
    role_to_assume,
)

KEEP_SECONDS = CREDENTIALS_REFRESH_MARGIN - 60

_lock = threading.Lock()
_kept: dict[tuple[Any, ...], tuple[float, Any]] = {}


def kept_client(
    service: str, *, region: str | None = None, role_arn: str | None = None, account_id: str | None = None
) -> Any:
    """Like ``client.client``, but the same object for a few minutes (boto3 clients are thread-safe)."""
    role_arn = role_to_assume(service, role_arn=role_arn, account_id=account_id)  # what the factory assumes
    # The assumed-role credentials object itself is part of the key: when the factory drops or refreshes it
    # (``clear_credentials_cache``, expiry), a kept client made with the old one is not handed out again.
    assumed = factory._credentials_cache.get((endpoint_url(), role_arn)) if role_arn else None
    key = (
        service,
        region,
        role_arn,
        account_id,
        endpoint_url(),
        os.environ.get("AWS_ACCESS_KEY_ID"),
        in_quick_reads(),
        assumed,
    )
    now = time.monotonic()
    with _lock:
        found = _kept.get(key)
        if found is not None and now - found[0] < KEEP_SECONDS:
            return found[1]
    made = client(service, region=region, role_arn=role_arn, account_id=account_id)
    if role_arn:  # keyed by the credentials the factory has just cached for it
        key = (*key[:-1], factory._credentials_cache.get((endpoint_url(), role_arn)))
    with _lock:
        _kept[key] = (now, made)
    return made


def forget_clients() -> None:
    with _lock:
        _kept.clear()
