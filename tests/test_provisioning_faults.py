"""Faults at the real boundaries: a worker killed mid-apply, Redis stopped at approval time, an AWS endpoint
that throttles and fails. The assertion is always: nothing lost, nothing applied twice."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta

import boto3
import pytest

from accessrequests.aws.motoserver import free_port
from accessrequests.models import AuditEvent, Grant, GrantStatus, WorkerHeartbeat
from accessrequests.provisioning import engine as provisioning
from tests.conftest import ARTIFACTS, service_missing, wait_for
from tests.provisioning_support import (
    MY_PIPELINE_ARN,
    REGION,
    AwsProxy,
    PortalWorld,
    aws_env,
    iam_client,
    permits,
    user_policies,
)

pytestmark = [pytest.mark.moto, pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def world(demo_world):
    return PortalWorld(demo_world)


@pytest.fixture
def proxies():
    made: list[AwsProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def status_of(grant: Grant) -> str:
    grant.refresh_from_db()
    return grant.status


def redrive_now() -> int:
    return provisioning.grants_redrive_stuck(stuck_after=timedelta(0))


def test_a_worker_killed_in_the_middle_of_applying_leaves_the_grant_applied_exactly_once_after_restart(
    world, aws, worker_env, workers, proxies
):
    proxy = AwsProxy(aws, hold=True)
    proxies.append(proxy)
    env = aws_env(worker_env, proxy.url)
    first = workers.start(env, "w1")
    grant = world.approve("mateojackson")

    # The worker has claimed the grant and its PutUserPolicy is on the wire: kill it there, with SIGKILL.
    assert proxy.held.wait(60), "the worker never tried to write"
    assert status_of(grant) == GrantStatus.APPLYING
    first.kill()
    proxy.hold = False
    proxy.release.set()  # the write the dead worker sent still reaches AWS, as it could in real life
    wait_for(lambda: proxy.writes()["PutUserPolicy"] == 1, timeout=10, what="the held write to arrive")

    workers.start(env, "w2")
    assert redrive_now() == 1  # the sweeper finds it stuck in "applying"
    wait_for(lambda: status_of(grant) == GrantStatus.ACTIVE, timeout=60, what="the grant to be applied")

    assert proxy.writes() == {"PutUserPolicy": 1}  # the restart found it in AWS and wrote nothing again
    assert grant.attempts == 2
    [applied] = AuditEvent.objects.filter(action="grant.applied", object_id=str(grant.pk))
    assert applied.aws_request_ids == [] and applied.after["aws_already_matched"] is True
    inline = iam_client(aws).get_user_policy(UserName="mateojackson", PolicyName="gatehouse")[
        "PolicyDocument"
    ]
    assert [s["Resource"] for s in inline["Statement"]] == [[MY_PIPELINE_ARN]]


def _permission_set_grant(world) -> Grant:
    from accessrequests.models import PermissionSet, RequestKind

    permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
    return world.approve(
        "paulo.santos", kind=RequestKind.PERMISSION_SET, permission_set=permission_set, pipelines=[], level=""
    )


def _cross_account_grant(world) -> Grant:
    return world.approve_cross_account()


@pytest.mark.parametrize(
    ("make_grant", "first_write"),
    [(_permission_set_grant, "CreateAccountAssignment"), (_cross_account_grant, "CreateRole")],
    ids=["identity-center-assignment", "cross-account-role"],
)
def test_a_worker_killed_in_its_first_write_of_an_assignment_or_a_role_leaves_it_made_once(
    world, aws, worker_env, workers, proxies, make_grant, first_write
):
    proxy = AwsProxy(aws, hold=True)
    proxies.append(proxy)
    env = aws_env(worker_env, proxy.url)
    first = workers.start(env, "w1")
    grant = make_grant(world)

    assert proxy.held.wait(60), "the worker never tried to write"
    first.kill()
    proxy.hold = False
    proxy.release.set()
    wait_for(lambda: proxy.writes()[first_write] == 1, timeout=10, what=f"the held {first_write} to arrive")

    workers.start(env, "w2")
    assert redrive_now() == 1
    wait_for(lambda: status_of(grant) == GrantStatus.ACTIVE, timeout=60, what="the grant to be applied")

    assert proxy.writes()[first_write] == 1, proxy.writes()  # found in AWS after the restart, not made again
    assert AuditEvent.objects.filter(action="grant.applied", object_id=str(grant.pk)).count() == 1
    if first_write == "CreateRole":
        name = grant.details["role_arn"].rsplit("/", 1)[-1]
        document = iam_client(aws).get_role_policy(RoleName=name, PolicyName="gatehouse")["PolicyDocument"]
        assert permits([document], "codepipeline:GetPipeline", MY_PIPELINE_ARN)
        assert len(iam_client(aws).list_roles(PathPrefix="/gatehouse/")["Roles"]) == 1
    else:
        sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=aws)
        center = world.seeded["identity_center"]
        found = sso.list_account_assignments(
            InstanceArn=center["instance_arn"],
            AccountId=grant.account.account_id,
            PermissionSetArn=grant.request.permission_set.arn,
        )["AccountAssignments"]
        assert [a["PrincipalId"] for a in found] == [grant.principal.external_id]


def test_an_endpoint_that_throttles_and_fails_for_a_while_ends_with_the_grant_applied(
    world, aws, worker_env, workers, proxies
):
    failures = [(400, "Throttling")] * 3 + [(500, "InternalFailure")] * 3
    proxy = AwsProxy(aws, fail_writes=list(failures))
    proxies.append(proxy)
    env = aws_env(worker_env, proxy.url)
    env["AWS_MAX_ATTEMPTS"] = "2"  # botocore gives up quickly, so the task's own backoff is what rides it out
    workers.start(env)
    grant = world.approve("mateojackson")

    wait_for(lambda: status_of(grant) == GrantStatus.ACTIVE, timeout=90, what="the grant to be applied")
    assert sum(proxy.failed.values()) == len(failures)
    assert proxy.writes() == {"PutUserPolicy": 1}
    assert grant.attempts > 1 and grant.last_error == "" and grant.next_attempt_at is None
    failed = AuditEvent.objects.filter(action="grant.failed", object_id=str(grant.pk))
    assert failed.exists()
    assert any("Throttling" in e.after["reason"] or "InternalFailure" in e.after["reason"] for e in failed)
    assert AuditEvent.objects.filter(action="grant.applied", object_id=str(grant.pk)).count() == 1
    assert permits(
        user_policies(iam_client(aws), "mateojackson"), "codepipeline:GetPipeline", MY_PIPELINE_ARN
    )


# --- Redis stopped at approval time ----------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of this test's own on a free port; stopping it never touches the shared one."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            service_missing("redis-server")
        self.binary = str(binary)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        log = open(ARTIFACTS / "private-redis.log", "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        import redis

        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=1)
        wait_for(lambda: _pings(client), timeout=10, what="the private redis-server to answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


def _pings(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:
        return False


@contextlib.contextmanager
def producer_on(broker_url: str) -> Iterator[None]:
    """Point this process's Celery producer at another broker for a while (the app caches its pools)."""
    from portal.celery import app

    # The Django-namespaced conf ignores a new broker_url; the write URL is what producers connect to.
    saved = (app.conf.broker_write_url, app._pool, app.amqp._producer_pool)
    app.conf.broker_write_url = broker_url
    app._pool = None
    app.amqp._producer_pool = None
    try:
        assert app.connection_for_write().as_uri().startswith(broker_url.rsplit("/", 1)[0])
        yield
    finally:
        if app._pool is not None:
            app._pool.force_close_all()
        app.conf.broker_write_url, app._pool, app.amqp._producer_pool = saved


@pytest.fixture
def private_redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def test_redis_stopped_at_approval_time_delays_the_grant_and_the_redrive_applies_it_after_redis_returns(
    world, aws, worker_env, workers, private_redis, caplog
):
    env = aws_env(worker_env, aws)
    env["CELERY_BROKER_URL"] = private_redis.url
    env["CELERY_RESULT_BACKEND"] = private_redis.url
    with producer_on(private_redis.url):
        workers.start(env, "w1")
        wait_for(
            lambda: WorkerHeartbeat.objects.filter(hostname__startswith=f"w1-{os.getpid()}@").exists(),
            timeout=30,
            what="the worker to start",
        )
        private_redis.stop()

        grant = world.approve("mateojackson")  # the approval stands; only the message is lost
        assert "the sweeper will re-drive it" in caplog.text
        assert status_of(grant) == GrantStatus.QUEUED
        time.sleep(1)
        assert status_of(grant) == GrantStatus.QUEUED

        private_redis.start()
        assert redrive_now() == 1
        wait_for(lambda: status_of(grant) == GrantStatus.ACTIVE, timeout=90, what="the grant to be applied")
    assert grant.attempts == 1
    assert AuditEvent.objects.filter(action="grant.applied", object_id=str(grant.pk)).count() == 1
    assert permits(
        user_policies(iam_client(aws), "mateojackson"), "codepipeline:GetPipeline", MY_PIPELINE_ARN
    )


def test_redis_restarted_while_a_worker_applies_a_grant_leaves_the_worker_running(
    world, aws, worker_env, workers, private_redis, proxies
):
    """The broker goes away while a task runs: the worker keeps running, finishes it, reconnects when Redis is
    back and takes the next task. (With the result backend on the same Redis, Celery's cancelling of running tasks
    on a lost connection tried to record the cancellation there and the worker exited: both workers of the load
    test died at one Redis restart.)"""
    proxy = AwsProxy(aws, hold=True)
    proxies.append(proxy)
    env = aws_env(worker_env, proxy.url)
    env["CELERY_BROKER_URL"] = private_redis.url
    env["CELERY_RESULT_BACKEND"] = private_redis.url
    with producer_on(private_redis.url):
        worker = workers.start(env, "w1")
        first = world.approve("mateojackson")
        assert proxy.held.wait(60), "the worker never tried to write"

        private_redis.stop()  # while the worker is in the middle of the reconcile
        proxy.release.set()
        wait_for(
            lambda: status_of(first) == GrantStatus.ACTIVE or worker.proc.poll() is not None,
            timeout=60,
            what="the running task to finish or the worker to exit",
        )
        assert worker.proc.poll() is None, "the worker exited when Redis went away"
        assert status_of(first) == GrantStatus.ACTIVE

        private_redis.start()
        second = world.approve("marymajor")
        wait_for(
            lambda: status_of(second) == GrantStatus.ACTIVE or worker.proc.poll() is not None,
            timeout=90,
            what="the worker to take the next task after Redis returned",
        )
        assert worker.proc.poll() is None
        assert status_of(second) == GrantStatus.ACTIVE
    assert AuditEvent.objects.filter(action="grant.applied", object_id=str(first.pk)).count() == 1


def test_a_request_filed_while_redis_is_stopped_is_announced_by_the_sweeper_once_redis_is_back(
    world, worker_env, workers, private_redis, caplog
):
    """The announcement's message is dropped while the broker is down (the request itself stands); the sweeper
    finds the request nobody was told of once its grace has passed and a worker announces it, once."""
    from django.utils import timezone

    from accessrequests.models import AccessRequest, Notification, NotificationStatus
    from accessrequests.notify.send import (
        ANNOUNCE_GRACE,
        approvers_to_notify,
        redrive_announcements,
        unannounced_requests,
    )
    from accessrequests.workflow.requests import request_submit
    from tests.factories import force_update

    env = dict(worker_env)
    env["CELERY_BROKER_URL"] = env["CELERY_RESULT_BACKEND"] = private_redis.url
    with producer_on(private_redis.url):
        private_redis.stop()
        req = request_submit(requester=world.requester, draft=world.draft("mateojackson"))
        assert "the notification is dropped" in caplog.text
        assert not unannounced_requests().exists()  # within its grace: its message may still be on its way
        force_update(
            AccessRequest.objects.filter(pk=req.pk),
            created_at=timezone.now() - ANNOUNCE_GRACE - timedelta(seconds=1),
        )
        assert list(unannounced_requests().values_list("pk", flat=True)) == [req.pk]

        private_redis.start()
        workers.start(env, "w1")
        assert redrive_announcements() == 1
        expected = len(approvers_to_notify(req))
        assert expected > 0
        rows = Notification.objects.filter(event_key=f"request.created:{req.pk}")
        wait_for(
            lambda: rows.filter(status=NotificationStatus.SENT).count() == expected,
            timeout=90,
            what="the late announcement to be sent",
        )
    assert redrive_announcements() == 0  # announced now: not asked again
    assert set(rows.values_list("attempts", flat=True)) == {1}
