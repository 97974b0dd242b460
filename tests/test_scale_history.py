"""The scale world's database half is rebuilt on today's schema: ``seed_requests`` writes with ``COPY`` on a
scratch PostgreSQL database migrated for real (whatever the suite's own database is), a second run adds nothing, and
the pages the scale bench measures open on what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import ROOT, scratch_postgres

SCRIPT = r"""
import json
from django.contrib.auth.models import User
from django.test import Client
from accessrequests.devworld import scale_history
from accessrequests.models import (
    AccessRequest, AwsAccount, Environment, Grant, IdentityCenter, Pipeline, Principal, PrincipalKind,
)

store = IdentityCenter.objects.create(
    instance_arn="arn:aws:sso:::instance/ssoins-1111", identity_store_id="d-1111", region="us-east-1"
)

for n, environment in enumerate((Environment.PRODUCTION, Environment.DEVELOPMENT)):
    account = AwsAccount.objects.create(account_id=f"11112222333{n}", name=f"scale-{n}", environment=environment)
    for p in range(3):
        Pipeline.objects.create(
            account=account, region="us-east-1", name=f"pipe-{p}",
            arn=f"arn:aws:codepipeline:us-east-1:{account.account_id}:pipe-{p}",
        )
for n in range(5):
    Principal.objects.create(
        kind=PrincipalKind.IC_USER, name=f"engineer{n:04d}", external_id=f"id-{n}", email=f"e{n}@example.com",
        identity_center=store,
    )
scale_history.seed_people(requesters=5, log=lambda line: None)
first = scale_history.seed_requests(total=400, log=lambda line: None)
second = scale_history.seed_requests(total=400, log=lambda line: None)
requester = User.objects.get(username="engineer0001")
detail = AccessRequest.objects.filter(requester=requester).order_by("-pk").first()
client = Client()
client.force_login(requester)
page = client.get(f"/requests/{detail.pk}/", HTTP_HOST="localhost")
print(json.dumps({
    "first": first["created"], "second": second["created"], "requests": AccessRequest.objects.count(),
    "grants": Grant.objects.count(), "break_glass": AccessRequest.objects.filter(break_glass=True).count(),
    "with_pipeline": AccessRequest.objects.filter(pipelines__isnull=False).distinct().count(),
    "detail": page.status_code,
}))
"""


def test_seed_requests_copies_on_todays_schema_and_a_second_run_adds_nothing():
    with scratch_postgres("gatehouse_scale_history_test") as url:
        env = {**os.environ, "DATABASE_URL": url, "DEBUG": "1"}
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300
        )
        done = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SCRIPT],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["first"] == 400 and result["second"] == 0 and result["requests"] == 400
    assert result["grants"] > 0 and result["with_pipeline"] == 400
    assert result["break_glass"] == 0  # the column the old column list left out gets the model's default
    assert result["detail"] == 200
