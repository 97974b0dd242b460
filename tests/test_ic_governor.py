"""The Identity Center rate governor's rules and its two stores: a real redis-server of the test's own, and the
fcntl-locked files of the embedded profile. The rules are checked with an explicit clock; the stores with
threads and processes racing for turns and slots, and a process killed while it holds a slot."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator

import pytest

from accessrequests.aws import governor
from accessrequests.aws.governor import (
    BURST_SECONDS,
    FIRST_POLL_MAX,
    MIN_RATE,
    FileStore,
    Governor,
    RedisStore,
    learn_poll_rule,
    reserve_rule,
    take_slot_rule,
    throttled_rule,
)
from tests.conftest import ROOT, wait_for
from tests.test_provisioning_faults import PrivateRedis


@pytest.fixture(scope="module")
def redis_server() -> Iterator[PrivateRedis]:
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["redis", "file"])
def store(request, tmp_path) -> governor.Store:
    prefix = f"governor-test-{uuid.uuid4().hex[:8]}"
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        return RedisStore(server.url, prefix)
    return FileStore(tmp_path / "governor", prefix)


def pace(store: governor.Store, *, tps: float = 20.0, outstanding: int = 10, lease: float = 60) -> Governor:
    return Governor(store=store, tps=tps, outstanding=outstanding, lease=lease)


# --- the rules, with an explicit clock --------------------------------------------------------------------


def test_the_bucket_lets_a_short_burst_through_then_spaces_calls_at_the_rate():
    state: dict = {}
    waits = [reserve_rule(state, 100.0, 10.0)[0] for _ in range(8)]
    burst = int(BURST_SECONDS * 10) + 1
    assert waits[:burst] == [0.0] * burst
    later = waits[burst:]
    assert all(b - a == pytest.approx(0.1) for a, b in itertools.pairwise(later))
    # Coming back after the backlog has drained, the caller goes at once again.
    assert reserve_rule(state, 200.0, 10.0)[0] == 0.0


def test_a_throttle_halves_the_rate_once_per_epoch_and_the_rate_climbs_back_to_the_setting_only():
    state: dict = {}
    _, epoch = reserve_rule(state, 0.0, 20.0)
    _, same_epoch = reserve_rule(state, 0.0, 20.0)
    assert throttled_rule(state, 0.0, 20.0, epoch) is True
    assert state["rate"] == 10.0
    # The second call was sent at the old rate too: its throttle is the same news, not a reason to halve again.
    assert throttled_rule(state, 0.0, 20.0, same_epoch) is False
    assert state["rate"] == 10.0
    _, newer = reserve_rule(state, 0.0, 20.0)
    assert throttled_rule(state, 0.0, 20.0, newer) is True and state["rate"] == 5.0
    # Additive increase: a twentieth of the setting per second, never above the setting.
    reserve_rule(state, 4.0, 20.0)
    assert state["rate"] == pytest.approx(9.0)
    reserve_rule(state, 60.0, 20.0)
    assert state["rate"] == 20.0
    for _ in range(20):
        throttled_rule(state, 60.0, 20.0, reserve_rule(state, 60.0, 20.0)[1])
    assert state["rate"] == MIN_RATE  # a storm slows it down to a floor, never to a stop


def test_a_lowered_setting_takes_effect_at_once():
    state: dict = {}
    reserve_rule(state, 0.0, 20.0)
    reserve_rule(state, 0.0, 5.0)
    assert state["rate"] == 5.0


def test_slots_are_limited_and_a_lease_that_ran_out_frees_its_slot():
    state: dict = {}
    assert [take_slot_rule(state, 0.0, f"t{n}", 2, 30.0) for n in range(2)] == [0.0, 0.0]
    assert take_slot_rule(state, 1.0, "t2", 2, 30.0) > 0
    assert take_slot_rule(state, 30.5, "t2", 2, 30.0) == 0.0  # t0 and t1 were never renewed nor released
    assert set(state["held"]) == {"t2"}


def test_the_first_poll_waits_longer_after_finding_work_running_and_shorter_after_finding_it_done():
    state: dict = {}
    learn_poll_rule(state, done_at_first_look=False)
    assert state["delay"] > 0
    for _ in range(50):
        learn_poll_rule(state, done_at_first_look=False)
    assert state["delay"] == FIRST_POLL_MAX
    for _ in range(200):
        learn_poll_rule(state, done_at_first_look=True)
    assert state["delay"] == 0.0  # an idle, quick Identity Center is polled at once again


# --- the stores -------------------------------------------------------------------------------------------


def test_racing_callers_never_share_a_turn(store):
    """Twelve threads reserve 10 turns each at 1 call per second: every turn is its own, one second apart."""
    gov = pace(store, tps=1.0)
    scheduled: list[float] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(10):
            at = store.update("bucket", lambda s, now: now + reserve_rule(s, now, gov.tps)[0])
            with lock:
                scheduled.append(at)

    threads = [threading.Thread(target=caller) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    scheduled.sort()
    gaps = [b - a for a, b in itertools.pairwise(scheduled)]
    assert len(scheduled) == 120
    # Past the burst every turn is exactly one interval after the one before (to the clock's microsecond).
    assert all(gap >= 1.0 - 1e-3 for gap in gaps[int(BURST_SECONDS) + 1 :]), gaps[:5]


def test_a_throttle_seen_by_one_worker_slows_every_worker(store):
    first, second = pace(store), pace(store)
    epoch = first.before_call()
    assert first.throttled(epoch) is True
    assert second.state()["rate"] == pytest.approx(10.0, abs=0.1)
    assert second.throttled(epoch) is False  # the same epoch: already answered for
    assert second.state()["throttles"] == 1


def test_never_more_operations_outstanding_than_the_limit(store):
    gov = pace(store, outstanding=3)
    inside = peak = 0
    lock = threading.Lock()
    start = threading.Barrier(8)

    def operation() -> None:
        nonlocal inside, peak
        start.wait()
        for _ in range(5):
            with gov.slot("create") as slot:
                slot.started = True
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                slot.renew()  # a status poll
                with lock:
                    inside -= 1
                slot.finished = True

    threads = [threading.Thread(target=operation) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak <= 3
    assert gov.state()["outstanding"]["create"]["held"] == {}
    assert gov.state()["outstanding"]["create"]["peak"] == 3


def test_an_operation_accepted_but_never_seen_finished_keeps_its_slot_until_its_lease_ends(store):
    gov = pace(store, outstanding=1, lease=60)
    with pytest.raises(TimeoutError), gov.slot("create") as slot:
        slot.started = True  # AWS took it; then the polls timed out
        raise TimeoutError
    assert len(gov.state()["outstanding"]["create"]["held"]) == 1
    with pytest.raises(RuntimeError), gov.slot("delete") as slot:
        raise RuntimeError  # refused before AWS started anything: the slot comes back at once
    assert gov.state()["outstanding"]["delete"]["held"] == {}


_HOLDER = """
import sys, time
from pathlib import Path
from accessrequests.aws.governor import FileStore, Governor, RedisStore
kind, where, prefix = sys.argv[1:4]
store = RedisStore(where, prefix) if kind == "redis" else FileStore(Path(where), prefix)
gov = Governor(store=store, tps=20, outstanding=1, lease=2)
with gov.slot("create") as slot:
    slot.started = True
    print("holding", flush=True)
    time.sleep(3600)
"""


def test_the_slot_of_a_worker_killed_mid_operation_frees_itself(store, tmp_path):
    if isinstance(store, RedisStore):
        kind, where, prefix = "redis", store.url, store.prefix
    else:
        assert isinstance(store, FileStore)
        kind, where, prefix = "file", str(store.directory), store.prefix
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, kind, where, prefix],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == b"holding"
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait(10)
        gov = pace(store, outstanding=1, lease=60)
        taken = threading.Event()

        def take() -> None:
            with gov.slot("create"):
                taken.set()

        thread = threading.Thread(target=take, daemon=True)
        thread.start()
        wait_for(taken.is_set, timeout=30, what="the dead holder's lease to run out")
        thread.join(10)
    finally:
        if holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)


def test_the_embedded_profile_keeps_its_state_in_files_under_var(settings, tmp_path):
    settings.CELERY_BROKER_URL = "filesystem://"
    settings.VAR_DIR = tmp_path
    gov = governor.current()
    assert isinstance(gov.store, FileStore)
    gov.throttled(gov.before_call())
    assert list((tmp_path / "governor").glob("*-bucket.json"))
    assert (gov.tps, gov.outstanding) == (settings.GATEHOUSE_IC_TPS, settings.GATEHOUSE_IC_OUTSTANDING)


def test_redis_as_the_broker_means_the_governor_lives_in_redis(settings, redis_server):
    settings.CELERY_BROKER_URL = redis_server.url
    settings.GATEHOUSE_IC_TPS, settings.GATEHOUSE_IC_OUTSTANDING = 7.5, 4
    gov = governor.current()
    assert isinstance(gov.store, RedisStore)
    assert (gov.tps, gov.outstanding) == (7.5, 4)


@pytest.mark.parametrize(
    ("name", "value"),
    [("GATEHOUSE_IC_TPS", "0"), ("GATEHOUSE_IC_TPS", "fast"), ("GATEHOUSE_IC_OUTSTANDING", "-1")],
)
def test_a_bad_governor_setting_stops_the_process_with_one_clear_line(name, value):
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={**os.environ, "DEBUG": "1", name: value},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"gatehouse: configuration error: {name} must be a number of at least "
        f"{'0.1' if name == 'GATEHOUSE_IC_TPS' else '1'} (got {value!r})."
    ]


def test_with_its_redis_unreachable_the_governor_lets_work_through_and_says_so(caplog, monkeypatch):
    from accessrequests.aws.motoserver import free_port

    monkeypatch.setattr(governor, "_warned_at", 0.0)  # said once a minute: this test's minute starts now

    gov = pace(RedisStore(f"redis://127.0.0.1:{free_port()}/0", "nobody-listens"), outstanding=1)
    assert gov.before_call() == 0
    assert gov.throttled(0) is False
    with gov.slot("create") as first, gov.slot("create") as second:  # no store: no limit to wait for
        first.started = second.started = True
        first.renew()
        first.finished = second.finished = True
    assert gov.first_poll_delay("create") == 0.0
    assert "rate governor unavailable" in caplog.text
