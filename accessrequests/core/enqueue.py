"""One way for a service to hand work to a worker: by task name, after the current transaction commits, never
raising.

A worker never sees a row that might still roll back, because nothing is sent before the commit. Tasks are named
(``accessrequests.tasks.…``, the names the workers and beat already know), so services never import the modules
that define them and those modules are free to import services. One failure policy: the broker gets a short second
chance and, if it is still down, the caller's committed change stands and a warning says what the loss means
(``if_lost``): provisioning and evidence are re-driven by their sweepers, a notification is dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence

from django.db import transaction

logger = logging.getLogger(__name__)

# Give up on the broker quickly: nothing queued is worth holding someone's page for Celery's default publish
# retries (which, against a broker that drops packets, add up to tens of seconds).
PUBLISH_RETRY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.2}


def after_commit(
    task_name: str,
    *args: object,
    reference: str = "",
    if_lost: str,
    unless: Callable[[tuple[object, ...]], bool] | None = None,
    not_sent: Callable[[tuple[object, ...]], None] | None = None,
) -> None:
    """Send ``task_name(*args)`` once the current transaction commits (at once outside one)."""
    after_commit_each(
        task_name, [args], reference=reference, if_lost=if_lost, unless=unless, not_sent=not_sent
    )


def after_commit_each(
    task_name: str,
    calls: Iterable[Sequence[object]],
    *,
    reference: str = "",
    if_lost: str,
    unless: Callable[[tuple[object, ...]], bool] | None = None,
    not_sent: Callable[[tuple[object, ...]], None] | None = None,
) -> None:
    """Send ``task_name`` once for each argument tuple after commit; the first broker failure stops the rest
    (one warning, not one slow retry per call). ``unless(args)``, asked after the commit, skips a call that a
    message already on its way covers (it must then see what this transaction committed); ``not_sent(args)``
    is told of each call the broker failure left unsent."""
    batch = [tuple(args) for args in calls]
    if not batch:
        return
    task = _task(task_name)  # an unknown name is a programming error: fail in the caller, before the commit

    def send() -> None:
        for position, args in enumerate(batch):
            if unless is not None and unless(args):
                continue
            try:
                task.apply_async(args=args, retry=True, retry_policy=PUBLISH_RETRY)
            except Exception as exc:  # any broker failure; the commit already happened
                if not_sent is not None:
                    for unsent in batch[position:]:
                        not_sent(unsent)
                logger.warning(
                    "%s%s not enqueued (%s: %s); %s",
                    task_name,
                    f" for {reference}" if reference else f" {args}",
                    exc.__class__.__name__,
                    str(exc)[:200],
                    if_lost,
                    extra={"request_ref": reference} if reference else None,
                )
                return

    transaction.on_commit(send)


# One thread at a time imports the task modules: while one thread imports them, the registry is half filled, and
# another thread that looked then found its task missing (a 500 under load, in the first second of a web process).
_IMPORTING = threading.Lock()


def _task(task_name: str):  # type: ignore[no-untyped-def]
    """The registered task of that name. A web process has not imported the task modules yet (``portal/wsgi.py``
    does at start; a test or a shell may not have): the app's own discovery (what a worker does at start) imports
    them once, one thread at a time."""
    from celery import current_app

    if task_name not in current_app.tasks:
        with _IMPORTING:
            if task_name not in current_app.tasks:
                current_app.loader.import_default_modules()
    return current_app.tasks[task_name]
