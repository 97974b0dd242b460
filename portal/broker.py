"""kombu's filesystem transport (the embedded profile's broker), made to hand finished work back at once.

Celery drives a transport without an event loop, such as this one, with its blocking loop (``synloop``): each turn
first performs the pending operations (the acknowledgements of finished tasks among them) and then calls
``drain_events`` with a 2-second timeout. With ``acks_late`` and a prefetch of one, a worker process holds one
unacknowledged message while its task runs, so ``drain_events`` can fetch nothing and kept polling until those
2 seconds were over before the finished task was acknowledged and the next message fetched: about one task per
process every 2 seconds, however short the task or the polling interval. Here ``drain_events`` gives the turn
back after a short wait whenever the task channel may take no message, so the acknowledgement happens within
milliseconds.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import filesystem  # type: ignore[attr-defined]  # kombu's stubs miss it

# How long a worker whose prefetch is used up naps before its loop turns again (acks, shutdown checks): short
# against a task, long enough that a worker waiting on a long task costs nothing measurable.
BUSY_NAP_SECONDS = 0.01


class FilesystemTransport(filesystem.Transport):
    def drain_events(self, connection: Any, timeout: float | None = None) -> Any:
        # The task channel has a prefetch limit and holds that many unacknowledged messages: look once more (the
        # control channel, which has no limit, may have a message) and give the turn back.
        if timeout is not None and any(
            c.qos.prefetch_count and not c.qos.can_consume() for c in self.channels
        ):
            timeout = min(timeout, BUSY_NAP_SECONDS)
        return super().drain_events(connection, timeout=timeout)
