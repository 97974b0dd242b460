"""The first enqueue of a web process imports the task modules; threads that enqueue at that moment all find their
task (a gthread worker's first requests, under load, answered 500 with ``NotRegistered`` before the import was made
one thread at a time)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

SCRIPT = r"""
import threading
import django

django.setup()
from accessrequests.core import enqueue

names = [
    "accessrequests.tasks.notify_request_created",
    "accessrequests.tasks.reconcile_principal",
    "accessrequests.tasks.notify_request_decided",
] * 4
barrier = threading.Barrier(len(names))
errors = []


def first_enqueue(name):
    barrier.wait()
    try:
        assert enqueue._task(name).name == name
    except Exception as exc:
        errors.append(f"{name}: {exc!r}")


threads = [threading.Thread(target=first_enqueue, args=(name,)) for name in names]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("errors:", errors)
assert not errors
"""


def test_threads_enqueueing_at_once_in_a_fresh_process_all_find_their_tasks():
    # A fresh interpreter: in this one the suite has long imported every task module.
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "DEBUG": "1"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "errors: []" in done.stdout
