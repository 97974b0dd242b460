"""The routing plan of a rules change at 3,000 accounts: how long `rules plan` takes to say which accounts move.

In memory, no database or AWS: ``--accounts`` accounts spread over 30 units, four environments (a quarter of them
unknown) and seven teams (a tag), with ``--named`` of them named by id in one rule and ``--pipelines`` pipelines
named in another; eight rules like an organization's (production by environment, a team by tag, a unit, the
named accounts, named pipelines, PassRole, privileged permission sets, a catch-all). The change narrows
production to one team, so a quarter of the accounts move.

Baseline, same run, same data: the same comparison account by account, without grouping the accounts no rule can
tell apart (what ``routing_plan.plan_routing`` does).

    .venv/bin/python bench/routing_plan.py --accounts 3000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DEBUG", "1")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--accounts", type=int, default=3000)
    parser.add_argument("--named", type=int, default=200)
    parser.add_argument("--pipelines", type=int, default=50)
    parser.add_argument("--runs", type=int, default=5)
    options = parser.parse_args()

    import django

    django.setup()
    from accessrequests.core.scope import AccountFacts, AccountScope, RouteRule, in_order
    from accessrequests.governance.routing_plan import (
        _compare,
        _pipelines_by_account,
        plan_routing,
        situations,
    )

    environments = ["production", "staging", "development", "unknown"]
    accounts = [
        AccountFacts(
            account_id=f"{100000000000 + i}",
            name=f"team-{i:05d}",
            environment=environments[i % 4],
            tags={"team": f"team-{i % 7}", "owner": f"owner-{i}"},
            units=frozenset({"r-root", "ou-workloads", f"ou-{i % 30:02d}"}),
        )
        for i in range(options.accounts)
    ]
    pipelines = frozenset(
        f"arn:aws:codepipeline:us-east-1:{accounts[i].account_id}:release" for i in range(options.pipelines)
    )
    before = [
        RouteRule("Release pipelines", 1, 3, pipelines=pipelines, kinds=frozenset({"pipeline"})),
        RouteRule("Named", 5, 3, AccountScope.of(accounts=[a.account_id for a in accounts[: options.named]])),
        RouteRule("Production", 10, 2, AccountScope.of(environments=["production"])),
        RouteRule("Payments", 20, 2, AccountScope.of(tags={"team": ["team-1", "team-2"]})),
        RouteRule("Unit 03", 30, 2, AccountScope.of(units=["ou-03"])),
        RouteRule("PassRole", 40, 1, kinds=frozenset({"pass_role"})),
        RouteRule("Privileged", 50, 3, kinds=frozenset({"permission_set"}), allow_privileged=True),
        RouteRule("Everything else", 900, 1),
    ]
    after = [
        RouteRule(
            r.name,
            r.priority,
            r.approvals,
            AccountScope.of(environments=["production"], tags={"team": ["team-0"]}),
        )
        if r.name == "Production"
        else r
        for r in before
    ]

    def grouped() -> int:
        return len(plan_routing(accounts, before, after).accounts)

    def one_by_one() -> int:
        old, new = in_order(before), in_order(after)
        named = _pipelines_by_account(old + new)
        return sum(
            bool(_compare(situations(named.get(a.account_id, ())), (old, a), (new, a))[0]) for a in accounts
        )

    for label, run in (("plan_routing (grouped)", grouped), ("baseline: account by account", one_by_one)):
        times, moved = [], 0
        for _ in range(options.runs):
            started = time.perf_counter()
            moved = run()
            times.append(time.perf_counter() - started)
        print(
            f"{label:30} {statistics.median(times) * 1000:8.1f} ms median of {options.runs} "
            f"(min {min(times) * 1000:.1f}) · {moved} of {len(accounts)} accounts move"
        )


if __name__ == "__main__":
    main()
