"""Services hand work to workers by task name after commit (``accessrequests.core.enqueue``): every name they use is a
registered task, and no service imports a module that defines tasks, so tasks and services never import each other."""

from __future__ import annotations

import ast
import re

import pytest
from celery import current_app

from accessrequests.core import enqueue
from tests.conftest import ROOT

PACKAGE = ROOT / "accessrequests"
TASK_MODULES = {"accessrequests.tasks", "accessrequests.notify.send", "accessrequests.slack.messages"}


def _names_in_code() -> set[str]:
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        names.update(re.findall(r'"(accessrequests\.tasks\.\w+)"', path.read_text()))
    return names


def test_every_task_name_the_code_sends_is_registered():
    current_app.loader.import_default_modules()
    names = _names_in_code()
    assert "accessrequests.tasks.reconcile_principal" in names
    assert names - set(current_app.tasks) == set()


def test_notify_and_review_tasks_named_by_the_services_exist():
    """Names built from a prefix (the notification hooks) are checked by their suffix, as the services write them."""
    current_app.loader.import_default_modules()
    text = (PACKAGE / "notify" / "hooks.py").read_text() + (PACKAGE / "reviews" / "campaigns.py").read_text()
    suffixes = set(re.findall(r'"(notify_\w+)"', text))
    assert {"notify_request_created", "notify_review_started"} <= suffixes
    assert {f"accessrequests.tasks.{s}" for s in suffixes} - set(current_app.tasks) == set()


def test_an_unknown_task_name_fails_in_the_caller_before_anything_commits():
    with pytest.raises(KeyError):
        enqueue.after_commit("accessrequests.tasks.no_such_task", 1, if_lost="nothing")


# What may import a task module: the tasks themselves and the faces above the domain packages.
FACES = ("tasks.py", "admin.py", "urls.py", "views/", "api/", "management/")


def test_no_domain_module_imports_a_module_that_defines_tasks():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        relative = str(path.relative_to(PACKAGE))
        if relative.startswith(FACES) or relative.replace("/", ".")[:-3] in {m[15:] for m in TASK_MODULES}:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
            elif isinstance(node, ast.Import):
                modules = {alias.name for alias in node.names}
            else:
                continue
            if modules & TASK_MODULES:
                offenders.append(f"{relative}:{node.lineno}")
    assert offenders == []


def test_only_the_export_service_writes_the_export_event():
    """Views, the API and commands record an export through ``audit.export_events``, never by writing the event."""
    writers = sorted(
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if '"audit.exported"' in path.read_text()
    )
    assert writers == ["audit/export_events.py"]
