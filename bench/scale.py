"""Gatehouse at the size of a real organization: the catalog sync of thousands of accounts and the busy pages at
a million requests.

Needs the scale world (``manage.py seed_scale``) on a moto server and in PostgreSQL:

    DATABASE_URL=postgres://root@127.0.0.1:5432/gh_scale_bench AWS_ENDPOINT_URL=http://127.0.0.1:5918 \\
        .venv/bin/python manage.py seed_scale --accounts 3000 --pipelines-per-account 20 --requests 0 --no-sync
    ... .venv/bin/python bench/scale.py --sync      # full sync, then 1% of the accounts change, incremental sync
    ... .venv/bin/python manage.py seed_scale --skip-aws --no-sync --requests 1000000
    ... .venv/bin/python bench/scale.py --pages     # pages at 1,000,000 requests beside the admin's changelist

``--sync``: times a full sync as it was (every pipeline read in full: ``read_all``, one account per transaction)
and as it is (pipelines ``ListPipelines`` shows unchanged are not read again, writes batched), alternately for
``--rounds`` rounds, with the AWS calls each made (botocore's ``before-call`` event), and prints the ratios; then
changes 1% of the organization on moto (a third of it new accounts with their roles and pipelines, a third moved
to another unit, a third removed from the organization) and times the incremental sync, with how many accounts
each listed. ``--pages``: server time of the picker search, review
queue, my requests and a request page, in-process through Django's test client (middleware, database,
templates; no network), beside the Django admin's own changelist of the same table measured in the same run,
and each page's query count.
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

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402


def probe_moto_scan(calls: int = 40) -> None:
    """How long one ListPipelines takes in a member account with moto's ``x-moto-account-id`` header and without
    it (the portal's way: an assumed-role key, whose account moto finds by scanning every account it holds)."""
    from accessrequests.aws.client import client

    listed = client("organizations").list_accounts(MaxResults=5)["Accounts"]
    account_id = next(a["Id"] for a in listed if a["Id"] != "123456789012")
    codepipeline = client("codepipeline", account_id=account_id)
    for label, header in (
        ("assumed-role key (moto scans every account)", False),
        ("x-moto-account-id", True),
    ):
        if header:
            codepipeline.meta.events.register(
                "before-sign",
                lambda request, **_: request.headers.__setitem__("x-moto-account-id", account_id),
            )
        started = time.perf_counter()
        for _ in range(calls):
            codepipeline.list_pipelines()
        print(f"ListPipelines, {label}: {(time.perf_counter() - started) / calls * 1000:.1f} ms per call")


class CallCounter:
    """Every AWS call the sync makes, counted by botocore's ``before-call`` event on the client factory's session
    (retries of one call count once)."""

    def __init__(self) -> None:
        import threading
        from collections import Counter

        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def fresh_start(self) -> None:
        """Forget assumed-role credentials (each timed sync assumes its roles, as after a restart) and give the
        factory a new session with the counter on it, which every client made from now on inherits."""
        import boto3

        from accessrequests.aws import client as factory

        factory.clear_credentials_cache()
        factory._session = boto3.session.Session()
        factory._session.events.register("before-call", self._count)

    def _count(self, model, **_: object) -> None:
        with self._lock:
            self.calls[model.name] += 1

    def take(self) -> dict[str, int]:
        with self._lock:
            taken = dict(self.calls)
            self.calls.clear()
        return taken


def _timed_full_sync(counter: CallCounter, label: str, **kwargs: object) -> tuple[float, int]:
    from accessrequests.catalog.sync import FULL, catalog_sync

    counter.fresh_start()
    counter.take()
    started, cpu = time.perf_counter(), time.process_time()
    result = catalog_sync(mode=FULL, resume=True, **kwargs)  # type: ignore[arg-type]
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    calls = counter.take()
    total = sum(calls.values())
    pipelines = result.get("pipelines", {})
    listed = result["run"]["listed"]
    print(
        f"{label}: {seconds:.1f}s (sync process CPU {cpu:.1f}s), {listed} accounts listed, "
        f"{pipelines.get('seen', 0)} pipelines seen, {pipelines.get('read', 0)} read in full, "
        f"{total} AWS calls ({total / max(1, listed):.1f} per account), {len(result['errors'])} errors"
    )
    print(
        "    " + ", ".join(f"{name} {n}" for name, n in sorted(calls.items(), key=lambda item: -item[1])[:8])
    )
    return seconds, total


def full_sync_bench(rounds: int) -> tuple[float, float]:
    """The full sync as it was (every pipeline read in full, one account per transaction) beside the full sync as
    it is, alternately, ``rounds`` times each; returns the best time of each."""
    counter = CallCounter()
    before: list[tuple[float, int]] = []
    after: list[tuple[float, int]] = []
    for _ in range(rounds):
        with override_settings(GATEHOUSE_CATALOG_WRITE_BATCH=1):
            before.append(
                _timed_full_sync(
                    counter, "full sync, every pipeline read, one account a write", read_all=True
                )
            )
        after.append(_timed_full_sync(counter, "full sync, unchanged pipelines skipped, batched writes"))
    best_before, best_after = min(before), min(after)
    print(
        f"ratio (best of {rounds}): time {best_after[0] / best_before[0]:.2f}, "
        f"AWS calls {best_after[1] / best_before[1]:.2f} of the full re-read"
    )
    return best_before[0], best_after[0]


def sync_bench(change_percent: float, rounds: int) -> None:
    from accessrequests.aws.client import client
    from accessrequests.catalog.sync import INCREMENTAL, catalog_sync
    from accessrequests.devworld import scale_world
    from accessrequests.models import AwsAccount, CatalogSyncRun

    print(
        f"concurrency {settings.GATEHOUSE_CATALOG_CONCURRENCY}, regions {settings.GATEHOUSE_REGIONS}, "
        f"write batch {settings.GATEHOUSE_CATALOG_WRITE_BATCH}"
    )
    _, full_s = full_sync_bench(rounds)

    organizations = client("organizations")
    accounts = list(
        AwsAccount.objects.filter(present=True).exclude(ou=None).select_related("ou").order_by("pk")
    )
    changes = max(3, int(len(accounts) * change_percent / 100))
    third = changes // 3
    root = organizations.list_roots()["Roots"][0]["Id"]
    units = sorted({a.ou.ou_id for a in accounts if a.ou and a.ou.ou_id.startswith("ou-")})
    stamp = int(time.time())
    for i in range(third):
        name = f"joined-{stamp}-{i:03d}-dev"
        account_id = organizations.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        organizations.move_account(
            AccountId=account_id, SourceParentId=root, DestinationParentId=units[i % len(units)]
        )
        scale_world._fill_account(account_id, 20, "us-east-1")
    for account in accounts[:third]:
        destination = next(u for u in units if u != account.ou.ou_id)
        organizations.move_account(
            AccountId=account.account_id, SourceParentId=account.ou.ou_id, DestinationParentId=destination
        )
    for account in accounts[-third:]:
        organizations.remove_account_from_organization(AccountId=account.account_id)
    print(f"changed in the organization: {third} joined (20 pipelines each), {third} moved, {third} removed")

    started = time.perf_counter()
    incremental = catalog_sync(mode=INCREMENTAL)
    incremental_s = time.perf_counter() - started
    print(
        f"incremental sync: {incremental_s:.1f}s, {incremental['run']['listed']} accounts listed, "
        f"accounts {incremental['accounts']}, {len(incremental['errors'])} errors"
    )
    print(f"ratio incremental / full: {incremental_s / full_s:.3f}")
    run = CatalogSyncRun.objects.first()
    print(f"last run: {run} {run.progress if run else ''}")


def _measure(client: Client, url: str, samples: int) -> tuple[list[float], int]:
    client.get(url)  # warm caches and connections
    queries: list[str] = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code, response.content[:300])
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return sorted(times), len(queries)


def pages_bench(samples: int) -> None:
    from django.contrib.auth.models import User

    from accessrequests.models import AccessRequest, AwsAccount, OrganizationalUnit, Pipeline, RequestStatus
    from tests.conftest import enable_totp

    requests_total = AccessRequest.objects.order_by().count()
    accounts_total = AwsAccount.objects.count()
    requester = User.objects.get(username="engineer0001")
    approver = User.objects.get(username="scale-approver")
    admin, _ = User.objects.get_or_create(
        username="scale-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    for user in (approver, admin):
        if not user.authenticator_set.exists():
            enable_totp(user)
    detail = AccessRequest.objects.filter(requester=requester).order_by("-pk").first()
    assert detail is not None
    pending = AccessRequest.objects.filter(status=RequestStatus.PENDING).count()
    # The middle one of the accounts that have pipelines (scale-01500 in the full world), so the pipeline picker
    # and the queue's account filter have something to find whatever part of the organization was synced.
    with_pipelines = (
        AwsAccount.objects.filter(present=True, pipelines__present=True).distinct().order_by("name")
    )
    account = with_pipelines[with_pipelines.count() // 2]
    unit = (
        OrganizationalUnit.objects.filter(ou_id__startswith="ou-", path__contains="team")
        .order_by("path")
        .first()
    )
    assert unit is not None
    pages = [
        ("picker: accounts 'scale-01'", requester, "/catalog/search/?kind=account&q=scale-01&format=json"),
        (
            "picker: accounts in a unit",
            requester,
            f"/catalog/search/?kind=account&ou={unit.ou_id}&format=json",
        ),
        ("picker: units 'team'", requester, "/catalog/search/?kind=ou&q=team&format=json"),
        (
            "picker: pipelines of an account",
            requester,
            f"/catalog/search/?kind=pipeline&account={account.account_id}&format=json",
        ),
        ("picker: plain search page", requester, "/catalog/search/?kind=account&q=prod"),
        ("my requests", requester, "/requests/"),
        ("my requests, page 50", requester, "/requests/?page=50"),
        ("request detail", requester, f"/requests/{detail.pk}/"),
        ("review queue", approver, "/review/"),
        ("review queue, one account", approver, f"/review/?account={account.account_id}"),
        ("admin changelist (same table)", admin, "/admin/accessrequests/accessrequest/"),
    ]
    print(
        f"database: {connection.vendor}, {requests_total:,} requests ({pending:,} pending), {accounts_total:,} "
        f"accounts ({with_pipelines.count():,} with pipelines), "
        f"{Pipeline.objects.filter(present=True).count():,} pipelines, {samples} samples per page"
    )
    print(
        f"the one account: {account.name} ({account.pipelines.count()} pipelines, "
        f"{AccessRequest.objects.filter(account=account, status=RequestStatus.PENDING).count()} pending requests)"
    )
    print(f"{'page':<34} {'median ms':>10} {'p95 ms':>8} {'queries':>8} {'x admin (median)':>17}")
    results = []
    with override_settings(ALLOWED_HOSTS=["testserver"], DEBUG=False):
        for name, user, url in pages:
            client = Client()
            client.force_login(user)
            if user.authenticator_set.exists():
                from tests.conftest import sign_in_with_mfa

                sign_in_with_mfa(client, user)
            times, queries = _measure(client, url, samples)
            results.append((name, statistics.median(times), times[int(len(times) * 0.95) - 1], queries))
    admin_median = results[-1][1]
    for name, median, p95, queries in results:
        print(f"{name:<34} {median:>10.2f} {p95:>8.2f} {queries:>8} {median / admin_median:>17.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sync", action="store_true", help="time a full and an incremental catalog sync")
    parser.add_argument("--change-percent", type=float, default=1.0)
    parser.add_argument(
        "--rounds", type=int, default=1, help="full syncs of each kind, alternately (the best of each counts)"
    )
    parser.add_argument("--pages", action="store_true", help="time the busy pages")
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--probe", action="store_true", help="time one moto call with and without the header")
    args = parser.parse_args()
    if connection.vendor != "postgresql":
        raise SystemExit("bench/scale.py needs the PostgreSQL scale database (DATABASE_URL)")
    setup_test_environment()
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    if args.sync or args.probe:
        probe_moto_scan()
    if args.sync:
        sync_bench(args.change_percent, args.rounds)
    if args.pages:
        pages_bench(args.samples)


if __name__ == "__main__":
    main()
