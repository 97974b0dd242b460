"""The Identity Center rate governor: one pace for every worker on every machine.

Identity Center allows about 20 calls a second per account (status polls included) and a handful of account
assignment creations and deletions outstanding at a time; beyond either it answers ``ThrottlingException``.
botocore's adaptive retries only see what one client in one process does, so with several workers each of
them learns the limit by being refused. The governor is the shared control in front of them:

- **A token bucket** (``GATEHOUSE_IC_TPS``, default 20) that every sso-admin and identitystore HTTP attempt
  passes through — retries included — registered on each client the factory makes. Callers reserve their turn
  (a GCRA: the bucket stores the next free time), so waiting is one sleep, not a busy loop.
- **AIMD**: a throttling answer halves the rate (multiplicative decrease, at most once per decrease "epoch":
  calls already sent at the old rate do not halve it again), and the rate climbs back linearly to the
  setting (additive increase, a twentieth of the setting per second). It never goes above the setting.
- **Outstanding operations** (``GATEHOUSE_IC_OUTSTANDING``, default 10, for creations and deletions each):
  a slot is taken before ``Create``/``DeleteAccountAssignment`` and given back when the status poll reports
  SUCCEEDED or FAILED. Slots are leases (``GATEHOUSE_IC_LEASE_SECONDS``) renewed by every poll, so the slot
  of a worker killed mid-operation frees itself and nothing deadlocks.
- **The first status poll's delay**, learned from what the polls find (shared, per operation), so that under
  load most operations are polled once, when they are done, and with an idle Identity Center at once.

State lives in Redis when Redis is the Celery broker (every machine shares it; Redis's clock is the clock),
else in files under ``var/governor/`` with an ``fcntl`` lock (the embedded profile is one machine). Both run the
same Python rules on a small JSON state: Redis under ``WATCH``/``MULTI`` (optimistic, retried on a conflict),
files under an exclusive lock. Keys are prefixed with the cache prefix (``GATEHOUSE_CACHE_PREFIX``), so portals
and test runs sharing a Redis keep their governors apart. When the store cannot be reached, calls go on without
the governor (botocore's adaptive retries still pace them) and the log says so: pacing must not stop provisioning.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import in_quick_reads, setting
from .governor_stores import FileStore, RedisStore, Store

THROTTLING_CODES = frozenset(
    {"Throttling", "ThrottlingException", "TooManyRequestsException", "RequestLimitExceeded"}
)
DEFAULT_TPS = 20.0
DEFAULT_OUTSTANDING = 10
DEFAULT_LEASE_SECONDS = 60
# A throttled call is tried again until this long has passed since its first throttle (below Celery's soft
# time limit of 540 s): the bucket has slowed everyone down meanwhile, so a storm delays a grant, never fails it.
THROTTLED_FOR_AT_MOST = 300.0
# A quarter of a second's worth of calls may go out at once; AWS's own buckets allow more, so the arrival
# jitter between the governor and AWS does not turn into throttling.
BURST_SECONDS = 0.25
DECREASE = 0.5
RECOVERY_PER_SECOND = 1 / 20  # of the setting: from half back to full in ten seconds
MIN_RATE = 0.5
# Waiting for an outstanding slot: look again this often (a release by another machine is not signalled).
SLOT_RECHECK = (0.03, 0.08)
FIRST_POLL_MAX = 3.0
FIRST_POLL_FLOOR = 0.1
# Quantile tracking of the first poll's delay: shorter after a first poll that found the work done, longer
# after one that found it still running. These factors settle where ~90% of first polls find it done.
POLL_SHORTER = 0.96
POLL_LONGER = 1.5


# --- the rules, on plain state ---------------------------------------------------------------------------


def _bucket(state: dict[str, Any], now: float, max_rate: float) -> float:
    """The current rate after the additive increase since it was last looked at (never above the setting)."""
    rate = float(state.get("rate", max_rate))
    rate_at = float(state.get("rate_at", now))
    rate = min(max_rate, rate + max_rate * RECOVERY_PER_SECOND * max(0.0, now - rate_at))
    state["rate"], state["rate_at"] = rate, now
    return rate


def reserve_rule(state: dict[str, Any], now: float, max_rate: float) -> tuple[float, int]:
    """Reserve the next call's turn: (seconds to wait before sending it, the decrease epoch it belongs to)."""
    rate = _bucket(state, now, max_rate)
    start = max(float(state.get("tat", now)), now)
    state["tat"] = start + 1.0 / rate
    return max(0.0, start - now - BURST_SECONDS), int(state.get("epoch", 0))


def throttled_rule(state: dict[str, Any], now: float, max_rate: float, epoch: int) -> bool:
    """A throttling answer to a call of ``epoch``: halve the rate once per epoch. True when it did."""
    rate = _bucket(state, now, max_rate)
    if epoch != int(state.get("epoch", 0)):
        return False  # sent before the last decrease: that one already answered for it
    rate = max(MIN_RATE, rate * DECREASE)
    state["rate"], state["epoch"] = rate, epoch + 1
    state["throttles"] = int(state.get("throttles", 0)) + 1
    # A short pause: everything already reserved goes out at the old spacing, the next one waits a slot.
    state["tat"] = max(float(state.get("tat", now)), now) + 1.0 / rate
    return True


def take_slot_rule(state: dict[str, Any], now: float, token: str, limit: int, lease: float) -> float:
    """Take a slot for ``token`` (0.0) or say how long to wait before looking again."""
    held = {t: e for t, e in state.get("held", {}).items() if float(e) > now}
    if token in held or len(held) < limit:
        held[token] = now + lease
        state["held"] = held
        state["peak"] = max(int(state.get("peak", 0)), len(held))
        return 0.0
    state["held"] = held
    return max(0.0, min(min(held.values()) - now, random.uniform(*SLOT_RECHECK)))  # noqa: S311 - jitter


def renew_slot_rule(state: dict[str, Any], now: float, token: str, lease: float) -> None:
    held = state.setdefault("held", {})
    if token in held:
        held[token] = now + lease


def release_slot_rule(state: dict[str, Any], token: str) -> None:
    state.setdefault("held", {}).pop(token, None)


def learn_poll_rule(state: dict[str, Any], done_at_first_look: bool) -> None:
    delay = float(state.get("delay", 0.0))
    if done_at_first_look:
        delay *= POLL_SHORTER
        delay = 0.0 if delay < FIRST_POLL_FLOOR / 2 else delay
    else:
        delay = min(FIRST_POLL_MAX, max(FIRST_POLL_FLOOR, delay * POLL_LONGER))
    state["delay"] = delay


logger = logging.getLogger(__name__)
_warned_at = 0.0


def _safely(what: str, action: Callable[[], Any], fallback: Any) -> Any:
    """Run a store operation; when the store itself fails (Redis unreachable, a broken file), go on without the
    governor — botocore's adaptive retries still pace the call — rather than stop provisioning. Said once a
    minute in the log."""
    global _warned_at
    try:
        return action()
    except Exception as exc:
        if time.monotonic() - _warned_at > 60:
            _warned_at = time.monotonic()
            logger.warning(
                "Identity Center rate governor unavailable (%s: %s); going on without it", what, exc
            )
        return fallback


# --- the governor ----------------------------------------------------------------------------------------


@dataclass
class Slot:
    """An outstanding assignment operation's lease. ``started``: AWS accepted the operation; ``finished``: a
    status poll reported SUCCEEDED or FAILED."""

    governor: Governor
    kind: str
    token: str
    started: bool = False
    finished: bool = False

    def renew(self) -> None:
        _safely(
            "renew",
            lambda: self.governor.store.update(
                f"slots-{self.kind}", lambda s, now: renew_slot_rule(s, now, self.token, self.governor.lease)
            ),
            None,
        )


@dataclass
class Governor:
    store: Store
    tps: float
    outstanding: int
    lease: float

    def before_call(self) -> int:
        """Wait for this call's turn; returns its decrease epoch (see ``throttled``)."""
        global _recent_wait
        wait, epoch = _safely(
            "turn",
            lambda: self.store.update("bucket", lambda s, now: reserve_rule(s, now, self.tps)),
            (0.0, 0),
        )
        _recent_wait += (float(wait) - _recent_wait) * 0.2
        if wait > 0:
            time.sleep(wait)
        return int(epoch)

    def throttled(self, epoch: int) -> bool:
        return bool(
            _safely(
                "throttle",
                lambda: self.store.update("bucket", lambda s, now: throttled_rule(s, now, self.tps, epoch)),
                False,
            )
        )

    @contextlib.contextmanager
    def slot(self, kind: str) -> Iterator[Slot]:
        """Hold one of the ``outstanding`` slots of ``kind`` ("create" or "delete") for an operation.

        Given back when the block ends, unless AWS accepted the operation and no poll saw it finish (a
        timeout, a lost connection): AWS may still count it, so its lease runs out instead.
        """
        held = Slot(governor=self, kind=kind, token=uuid.uuid4().hex)
        key = f"slots-{kind}"
        while True:
            wait = _safely(
                "slot",
                lambda: self.store.update(
                    key, lambda s, now: take_slot_rule(s, now, held.token, self.outstanding, self.lease)
                ),
                0.0,
            )
            if not wait:
                break
            time.sleep(wait)
        try:
            yield held
        finally:
            if held.finished or not held.started:
                _safely(
                    "release",
                    lambda: self.store.update(key, lambda s, now: release_slot_rule(s, held.token)),
                    None,
                )

    def first_poll_delay(self, kind: str) -> float:
        """How long after starting an operation to send its first status poll.

        The learned delay is what the operation lately took as seen by first polls, which themselves wait their
        turn in the bucket; the wait this process's calls lately had is taken off, so a busy bucket does not
        push the poll later than the operation needs (nor a quiet one make it early).
        """
        learned = float(_safely("poll", lambda: self.store.read(f"poll-{kind}").get("delay", 0.0), 0.0))
        return max(0.0, learned - _recent_wait) if learned else 0.0

    def learn_poll(self, kind: str, *, done_at_first_look: bool) -> None:
        _safely(
            "poll",
            lambda: self.store.update(f"poll-{kind}", lambda s, now: learn_poll_rule(s, done_at_first_look)),
            None,
        )

    def state(self) -> dict[str, Any]:
        """What the governor holds now (for the bench, the tests and an admin's curiosity)."""
        bucket = self.store.read("bucket")
        return {
            "tps": self.tps,
            "rate": float(bucket.get("rate", self.tps)),
            "epoch": int(bucket.get("epoch", 0)),
            "throttles": int(bucket.get("throttles", 0)),
            "outstanding": {kind: self.store.read(f"slots-{kind}") for kind in ("create", "delete")},
            "first_poll_delay": {kind: self.first_poll_delay(kind) for kind in ("create", "delete")},
        }


def _number(name: str, default: float, minimum: float) -> float:
    raw = setting(name)
    if raw is None or raw == "":
        return default
    value = float(raw)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}")
    return value


def _prefix() -> str:
    try:
        from django.conf import settings

        return str(settings.CACHES["default"].get("KEY_PREFIX") or "gatehouse")
    except Exception:  # Django not configured: the environment decides, as in the settings
        return os.environ.get("GATEHOUSE_CACHE_PREFIX", "gatehouse")


def _store() -> Store:
    broker = setting("CELERY_BROKER_URL") or ""
    if broker.startswith(("redis://", "rediss://")):
        return RedisStore(broker, _prefix())
    var_dir = (
        setting("VAR_DIR") or setting("GATEHOUSE_VAR_DIR") or str(Path(__file__).resolve().parents[2] / "var")
    )
    return FileStore(Path(str(var_dir)) / "governor", _prefix())


def current() -> Governor:
    """The governor as the settings describe it now (cheap: the Redis client is kept per URL)."""
    return Governor(
        store=_store(),
        tps=_number("GATEHOUSE_IC_TPS", DEFAULT_TPS, 0.1),
        outstanding=int(_number("GATEHOUSE_IC_OUTSTANDING", DEFAULT_OUTSTANDING, 1)),
        lease=_number("GATEHOUSE_IC_LEASE_SECONDS", DEFAULT_LEASE_SECONDS, 5),
    )


# A moving average of how long this process's calls waited for their turn lately (see first_poll_delay).
_recent_wait = 0.0


# --- on every Identity Center client ---------------------------------------------------------------------

_attempt = threading.local()


def _before_send(**kwargs: Any) -> None:
    _attempt.epoch = current().before_call()


def _after_attempt(response: Any = None, request_dict: Any = None, **kwargs: Any) -> float | None:
    """Every answer: a throttle slows the shared bucket down. When botocore would give up on a throttled call
    (its attempts or its retry quota spent), ask it to try again — through the bucket, at the slower pace —
    until THROTTLED_FOR_AT_MOST has passed: throttling delays work, it does not fail it. Web pages' quick
    reads (``config.quick_reads``) are left to fail fast, as they want."""
    if response is None:
        return None  # a network error: no answer from AWS, nothing learned about its rate
    http, parsed = response
    code = str((parsed or {}).get("Error", {}).get("Code", ""))
    if code not in THROTTLING_CODES and getattr(http, "status_code", 0) != 429:
        return None
    current().throttled(getattr(_attempt, "epoch", 0))
    if in_quick_reads() or not isinstance(request_dict, dict):
        return None
    context = request_dict.setdefault("context", {})
    since = context.setdefault("gatehouse_throttled_since", time.monotonic())
    if time.monotonic() - since > THROTTLED_FOR_AT_MOST:
        return None
    # Returned after botocore's own handler: used only when botocore would not retry by itself.
    return random.uniform(0.05, 0.25)  # noqa: S311 - jitter, not crypto


def govern(client: Any) -> Any:
    """Put a boto3 sso-admin or identitystore client under the governor: every HTTP attempt waits for its turn,
    and every throttling answer slows everyone down."""
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(
        f"before-send.{service}", _before_send, unique_id="gatehouse-ic-governor-send"
    )
    client.meta.events.register(
        f"needs-retry.{service}", _after_attempt, unique_id="gatehouse-ic-governor-retry"
    )
    return client
