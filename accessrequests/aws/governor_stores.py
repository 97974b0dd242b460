"""Where the Identity Center rate governor keeps its state: Redis (every machine) or fcntl-locked files (one).

Both run the governor's rules — plain Python on a small JSON state — atomically: Redis under ``WATCH``/``MULTI``
(optimistic, run again on a conflict) with Redis's clock as every machine's clock; files under an exclusive lock
with this machine's clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol


class Store(Protocol):
    def update(self, key: str, change: Callable[[dict[str, Any], float], Any]) -> Any:
        """Run ``change(state, now)`` atomically on the JSON state under ``key``; the state it leaves is kept."""

    def read(self, key: str) -> dict[str, Any]: ...


class RedisStore:
    """Every key a JSON string in Redis, changed under WATCH/MULTI; Redis's TIME is the clock of all machines."""

    def __init__(self, url: str, prefix: str) -> None:
        import redis

        self.url = url
        self.redis = _redis_client(url)
        self.prefix = prefix
        self._errors = (redis.WatchError,)

    def _key(self, key: str) -> str:
        return f"{self.prefix}:ic-governor:{key}"

    def _now(self, pipe: Any) -> float:
        seconds, micros = pipe.time()
        return float(seconds) + float(micros) / 1_000_000

    def update(self, key: str, change: Callable[[dict[str, Any], float], Any]) -> Any:
        name = self._key(key)
        while True:
            with self.redis.pipeline() as pipe:
                try:
                    pipe.watch(name)
                    raw = pipe.get(name)
                    state = json.loads(raw) if raw else {}
                    before = json.dumps(state, sort_keys=True)
                    result = change(state, self._now(pipe))
                    if json.dumps(state, sort_keys=True) != before:
                        pipe.multi()
                        # Idle state expires: a governor nobody used for a day starts afresh.
                        pipe.set(name, json.dumps(state), ex=86_400)
                        pipe.execute()
                    return result
                except self._errors:
                    continue  # someone changed it meanwhile: run the rule again on what they left

    def read(self, key: str) -> dict[str, Any]:
        raw = self.redis.get(self._key(key))
        return json.loads(raw) if raw else {}


_redis_clients: dict[str, Any] = {}
_redis_lock = threading.Lock()


def _redis_client(url: str) -> Any:
    import redis

    with _redis_lock:
        if url not in _redis_clients:
            # redis-py's pool notices a fork and opens new connections in the child (Celery's prefork pool).
            _redis_clients[url] = redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=10)
        return _redis_clients[url]


class FileStore:
    """Every key a JSON file under one folder, changed under an exclusive ``fcntl`` lock (one machine)."""

    def __init__(self, directory: Path, prefix: str) -> None:
        self.directory = directory
        self.prefix = prefix

    def _path(self, key: str) -> Path:
        # The prefix may hold anything a cache prefix may; file names get a digest of it.
        return self.directory / f"{hashlib.sha256(self.prefix.encode()).hexdigest()[:12]}-{key}.json"

    @contextlib.contextmanager
    def _locked(self, key: str) -> Iterator[Any]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self._path(key), "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield handle
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def update(self, key: str, change: Callable[[dict[str, Any], float], Any]) -> Any:
        with self._locked(key) as handle:
            handle.seek(0)
            raw = handle.read()
            state = json.loads(raw) if raw.strip() else {}
            before = json.dumps(state, sort_keys=True)
            result = change(state, time.time())
            after = json.dumps(state, sort_keys=True)
            if after != before:
                handle.seek(0)
                handle.truncate()
                handle.write(after)
                handle.flush()
            return result

    def read(self, key: str) -> dict[str, Any]:
        with self._locked(key) as handle:
            handle.seek(0)
            raw = handle.read()
        return json.loads(raw) if raw.strip() else {}
