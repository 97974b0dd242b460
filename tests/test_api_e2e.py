"""Through the API alone: paste the mateojackson error, get it approved, see the grant active in AWS (moto)."""

from __future__ import annotations

import pytest

from accessrequests.models import Grant, GrantStatus
from tests.conftest import enable_totp, wait_for
from tests.provisioning_support import (
    MY_PIPELINE_ARN,
    PortalWorld,
    admin_credentials,
    aws_env,
    iam_client,
    permits,
    use_credentials,
    user_policies,
)
from tests.test_api import MATEO, Api

pytestmark = pytest.mark.moto


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_pasted_error_alone_files_a_request_that_ends_as_an_active_grant(
    demo_world, aws, worker_env, workers, monkeypatch
):
    world = PortalWorld(demo_world)
    enable_totp(world.approver)
    hub = admin_credentials(aws)
    env = aws_env(worker_env, aws)
    use_credentials(monkeypatch, env, hub)
    workers.start(env)

    filed = Api(world.requester).post(
        "requests/", {"message": MATEO, "justification": "release 42 is stuck", "duration_hours": 2}
    )
    assert filed.status_code == 201, filed.json()
    request_id = filed.json()["id"]
    assert filed.json()["pipelines"] == ["my-pipeline"] and filed.json()["level"] == "viewer"
    approved = Api(world.approver).decide(f"requests/{request_id}/approve/", {"comment": "fine"})
    assert approved.status_code == 200, approved.json()

    requester = Api(world.requester)

    def grant_status() -> str | None:
        grants = requester.get("grants/").json()
        return grants[0]["status"] if grants else None

    wait_for(lambda: grant_status() == GrantStatus.ACTIVE, timeout=90, what="the grant to be active")
    admin_iam = iam_client(
        aws, aws_access_key_id=hub["AWS_ACCESS_KEY_ID"], aws_secret_access_key=hub["AWS_SECRET_ACCESS_KEY"]
    )
    assert permits(user_policies(admin_iam, "mateojackson"), "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    assert Grant.objects.get(request_id=request_id).applied_at is not None
