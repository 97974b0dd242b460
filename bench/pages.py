"""Server time of the queue, my-requests and detail pages with 100,000 requests in the database.

Each page is requested in-process through Django's test client (the whole middleware stack, the database,
template rendering; no network) and compared with a bare Django view measured in the same run, so the ratio
says what Gatehouse's pages cost beyond Django itself on this machine.

    DATABASE_URL=postgres://root@127.0.0.1:5432/gatehouse_bench .venv/bin/python bench/pages.py
    .venv/bin/python bench/pages.py --rows 100000 --samples 200      # SQLite under var/ by default
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
os.environ.setdefault("DATABASE_URL", f"sqlite:///{ROOT / 'var' / 'bench.sqlite3'}")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings, setup_test_environment  # noqa: E402
from django.urls import include, path  # noqa: E402


def bare(request):
    return HttpResponse("ok")


urlpatterns = [path("__bare__", bare), path("", include("portal.urls"))]


def seed(rows: int) -> None:
    """Clone one real request (filed through the services) until the table holds `rows` requests."""
    from django.contrib.auth.models import User

    from accessrequests.models import AccessRequest, RequestStatus
    from tests.conftest import enable_totp
    from tests.factories import World

    if not User.objects.filter(username="requester").exists():
        world = World()
        enable_totp(world.approver)
        world.submit()
    need = rows - AccessRequest.objects.count()
    if need <= 0:
        return
    print(f"seeding {need:,} requests ...", flush=True)
    template = AccessRequest.objects.order_by("pk").first()
    assert template is not None
    fields = {
        f.attname: getattr(template, f.attname)
        for f in AccessRequest._meta.concrete_fields
        if f.attname != "id"
    }
    statuses = [RequestStatus.PENDING, RequestStatus.APPROVED, RequestStatus.DENIED, RequestStatus.CANCELLED]
    requesters = list(User.objects.filter(username__in=["requester", "other"]).values_list("pk", flat=True))
    batch: list[AccessRequest] = []
    for i in range(need):
        status = statuses[i % len(statuses)]
        batch.append(
            AccessRequest(
                **{
                    **fields,
                    "status": status,
                    "requester_id": requesters[i % len(requesters)],
                    "decided_at": None if status == RequestStatus.PENDING else template.created_at,
                }
            )
        )
        if len(batch) == 5000:
            AccessRequest.objects.bulk_create(batch)
            batch = []
    AccessRequest.objects.bulk_create(batch)
    if django.db.connection.vendor == "postgresql":
        with django.db.connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would give a real installation


def measure(client: Client, url: str, samples: int) -> list[float]:
    client.get(url)  # warm caches and connections
    times = []
    for _ in range(samples):
        start = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (url, response.status_code)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    setup_test_environment()
    call_command("migrate", verbosity=0)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    seed(args.rows)

    from django.contrib.auth.models import User

    from accessrequests.models import AccessRequest

    total = AccessRequest.objects.count()
    requester = User.objects.get(username="requester")
    approver = User.objects.get(username="approver")
    detail = AccessRequest.objects.filter(requester=requester).order_by("-pk").first()
    assert detail is not None
    pages = [
        ("bare Django view", None, "/__bare__"),
        ("my requests", requester, "/requests/"),
        ("request detail", requester, f"/requests/{detail.pk}/"),
        ("review queue", approver, "/review/"),
    ]
    print(f"database: {django.db.connection.vendor}, {total:,} requests, {args.samples} samples per page")
    print(f"{'page':<18} {'median ms':>10} {'p95 ms':>8} {'x bare (median)':>16}")
    base = None
    with override_settings(ROOT_URLCONF=__name__, ALLOWED_HOSTS=["testserver"], DEBUG=False):
        for name, user, url in pages:
            client = Client()
            if user is not None:
                client.force_login(user)
            times = sorted(measure(client, url, args.samples))
            median = statistics.median(times)
            p95 = times[int(len(times) * 0.95) - 1]
            base = base or median
            print(f"{name:<18} {median:>10.2f} {p95:>8.2f} {median / base:>16.1f}")


if __name__ == "__main__":
    main()
