"""``manage.py doctor``: is this deployment sound? The database, Gatehouse's AWS settings, what it
talks to besides AWS when configured (SMTP, Slack, the OpenID Provider, the SCIM token), the broker and a worker
on every queue, beat, AWS as the hub sees it (its identity, the provisioning role and the boundary in the managed
accounts, Identity Center), the audit bucket and the audit chain's head, the rules file. Each check says ok, warn
or fail, what it found, and how to fix it; nothing is changed.

The checks register themselves (``registry.check``) as their modules are imported, in the order below, which is
the order they run and are shown in: what everything else rests on first.
"""

from __future__ import annotations

import importlib

from .registry import CHECKS, Context, Report, Result, UnknownCheck, run, select

for _module in ("database", "configuration", "integrations", "processes", "aws", "audit", "rules"):
    importlib.import_module(f"{__name__}.{_module}")

__all__ = ["CHECKS", "Context", "Report", "Result", "UnknownCheck", "run", "select"]
