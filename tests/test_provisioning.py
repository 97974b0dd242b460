"""The provisioning engine against a moto server over HTTP: apply, verify, revoke, expire, spill, drift.

Grants are made through the real request workflow; AWS is read back with boto3 and judged with moto's own
IAM policy evaluator. Tests marked ``worker`` let a real Celery worker process do the applying.
"""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accessrequests.authz.permissions import NotAllowed
from accessrequests.aws.client import is_access_denied
from accessrequests.aws.motoserver import enable_iam_auth
from accessrequests.models import AccessLevel, AuditEvent, Grant, GrantStatus, PrincipalKind, RequestKind
from accessrequests.provisioning import engine as provisioning
from accessrequests.tasks import expire_grants
from accessrequests.workflow.requests import request_approve, request_submit
from tests.conftest import wait_for
from tests.factories import force_update, fresh_factor, make_pipeline, make_principal
from tests.provisioning_support import (
    MANAGEMENT,
    MY_PIPELINE_ARN,
    REGION,
    AwsProxy,
    PortalWorld,
    admin_credentials,
    aws_env,
    iam_client,
    permits,
    reconcile,
    status_of,
    use_credentials,
    user_policies,
)

pytestmark = pytest.mark.moto


@pytest.fixture
def world(demo_world):
    return PortalWorld(demo_world)


def as_user(endpoint: str, keys: dict, service: str = "codepipeline"):
    return boto3.client(
        service,
        region_name=REGION,
        endpoint_url=endpoint,
        aws_access_key_id=keys["access_key_id"],
        aws_secret_access_key=keys["secret_access_key"],
        aws_session_token=None,
    )


def refused(call) -> bool:
    try:
        call()
    except ClientError as exc:
        return is_access_denied(exc)
    return False


@pytest.fixture
def aws_proxy():
    made: list[AwsProxy] = []

    def make(upstream: str, **options) -> AwsProxy:
        made.append(AwsProxy(upstream, **options))
        return made[-1]

    yield make
    for proxy in made:
        proxy.close()


# --- end to end, as the AWS troubleshooting guide tells it ------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_mateojackson_is_refused_then_may_get_my_pipeline_and_nothing_else_then_is_refused_after_revoke(
    world, aws, worker_env, workers, monkeypatch
):
    hub = admin_credentials(aws)
    env = aws_env(worker_env, aws)
    use_credentials(monkeypatch, env, hub)
    keys = world.seeded["access_keys"]["mateojackson"]
    mateo = as_user(aws, keys)
    admin_iam = iam_client(
        aws, aws_access_key_id=hub["AWS_ACCESS_KEY_ID"], aws_secret_access_key=hub["AWS_SECRET_ACCESS_KEY"]
    )
    enable_iam_auth(aws)
    assert refused(lambda: mateo.get_pipeline(name="my-pipeline"))

    workers.start(env)
    grant = world.approve("mateojackson")
    wait_for(lambda: status_of(grant) == GrantStatus.ACTIVE, timeout=60, what="the grant to be applied")

    documents = user_policies(admin_iam, "mateojackson")
    assert permits(documents, "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    other_pipeline = MY_PIPELINE_ARN.replace("my-pipeline", "web-frontend")
    for action, resource in [
        ("codepipeline:GetPipeline", other_pipeline),
        ("codepipeline:StartPipelineExecution", MY_PIPELINE_ARN),
        ("codepipeline:UpdatePipeline", MY_PIPELINE_ARN),
        ("codepipeline:ListPipelines", "*"),
        ("iam:PassRole", f"arn:aws:iam::{MANAGEMENT}:role/service-role/CodePipelineServiceRole"),
        ("s3:GetObject", "*"),
    ]:
        assert not permits(documents, action, resource), (action, resource)
    inline = admin_iam.get_user_policy(UserName="mateojackson", PolicyName="gatehouse")["PolicyDocument"]
    assert [(s["Action"], s["Resource"]) for s in inline["Statement"]] == [
        (["codepipeline:GetPipeline"], [MY_PIPELINE_ARN])
    ]
    applied = AuditEvent.objects.get(action="grant.applied", object_id=str(grant.pk))
    grant.refresh_from_db()
    assert applied.aws_request_ids and set(applied.aws_request_ids) == set(grant.aws_request_ids)
    assert "aws_already_matched" not in applied.after
    assert AuditEvent.objects.filter(action="grant.verified", object_id=str(grant.pk)).count() == 1
    # moto judges CodePipeline calls against Resource "*" only, so it cannot tell that this policy allows
    # GetPipeline on my-pipeline; the evaluation above is the proof, and the ListPipelines test below
    # shows a real call going from refused to allowed.

    provisioning.grant_revoke(grant_id=grant.pk, actor=world.requester)
    wait_for(lambda: status_of(grant) == GrantStatus.REVOKED, timeout=60, what="the grant to be revoked")
    assert not permits(user_policies(admin_iam, "mateojackson"), "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    assert refused(lambda: mateo.get_pipeline(name="my-pipeline"))
    assert AuditEvent.objects.filter(action="grant.revoked", object_id=str(grant.pk)).exists()


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_an_expired_grant_is_revoked_although_the_worker_was_down_at_its_expiry_time(
    world, aws, worker_env, workers, monkeypatch
):
    hub = admin_credentials(aws)
    env = aws_env(worker_env, aws)
    use_credentials(monkeypatch, env, hub)
    mateo = as_user(aws, world.seeded["access_keys"]["mateojackson"])
    enable_iam_auth(aws)
    assert refused(mateo.list_pipelines)

    worker = workers.start(env)
    grant = world.approve("mateojackson", actions=["codepipeline:ListPipelines"])
    wait_for(lambda: status_of(grant) == GrantStatus.ACTIVE, timeout=60, what="the grant to be applied")
    assert {p["name"] for p in mateo.list_pipelines()["pipelines"]} >= {"my-pipeline"}
    worker.stop()

    # Its time comes while no worker runs; the next expiry sweep (a database query) still takes it away.
    Grant.objects.filter(pk=grant.pk).update(  # four hours later
        starts_at=timezone.now() - timedelta(hours=4), expires_at=timezone.now() - timedelta(minutes=5)
    )
    workers.start(env, "w2")
    expire_grants.delay()
    wait_for(lambda: status_of(grant) == GrantStatus.EXPIRED, timeout=60, what="the grant to expire")
    assert refused(mateo.list_pipelines)
    assert grant.revoked_at is not None
    assert AuditEvent.objects.filter(action="grant.expired", object_id=str(grant.pk)).count() == 1


@pytest.mark.django_db
def test_marymajor_may_pass_the_service_role_to_codepipeline_and_to_no_other_service(world, aws):
    role = world.role("CodePipelineServiceRole")
    grant = world.approve(
        "marymajor", kind=RequestKind.PASS_ROLE, pass_role=role, pipelines=[], level="", actions=[]
    )
    assert reconcile(grant)["applied"] == [grant.pk]

    documents = user_policies(iam_client(aws), "marymajor")
    to_pipeline = {"iam:PassedToService": "codepipeline.amazonaws.com"}
    assert permits(documents, "iam:PassRole", role.arn, to_pipeline)
    assert not permits(documents, "iam:PassRole", role.arn, {"iam:PassedToService": "lambda.amazonaws.com"})
    assert not permits(documents, "iam:PassRole", role.arn, {"iam:PassedToService": "ec2.amazonaws.com"})
    other_role = world.role("CodePipelineDeployRole").arn
    assert not permits(documents, "iam:PassRole", other_role, to_pipeline)

    provisioning.grant_revoke(grant_id=grant.pk, actor=world.admin)
    reconcile(grant)
    assert status_of(grant) == GrantStatus.REVOKED
    assert not permits(user_policies(iam_client(aws), "marymajor"), "iam:PassRole", role.arn, to_pipeline)


@pytest.mark.django_db
def test_an_identity_center_user_holds_the_assignment_while_active_and_not_after(world, aws):
    from accessrequests.models import PermissionSet

    permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
    instance = world.seeded["identity_center"]["instance_arn"]
    paulo = world.principal("paulo.santos")
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=aws)

    def holders() -> set[str]:
        found = sso.list_account_assignments(
            InstanceArn=instance, AccountId=MANAGEMENT, PermissionSetArn=permission_set.arn
        )["AccountAssignments"]
        return {a["PrincipalId"] for a in found}

    grant = world.approve(
        "paulo.santos", kind=RequestKind.PERMISSION_SET, permission_set=permission_set, pipelines=[], level=""
    )
    assert paulo.external_id not in holders()
    result = reconcile(grant)
    assert result["applied"] == [grant.pk] and result["request_ids"]
    assert holders() == {paulo.external_id}
    assert status_of(grant) == GrantStatus.ACTIVE

    provisioning.grant_revoke(grant_id=grant.pk, actor=world.requester)
    reconcile(grant)
    assert holders() == set()
    assert status_of(grant) == GrantStatus.REVOKED


@pytest.mark.django_db
def test_identity_center_is_polled_until_done_and_a_failed_assignment_shows_its_reason(
    world, aws, aws_proxy, settings, monkeypatch
):
    from accessrequests.models import PermissionSet

    still_running = {"left": 2}

    def in_progress_twice(answer: dict) -> dict:
        if still_running["left"]:
            still_running["left"] -= 1
            answer["AccountAssignmentCreationStatus"]["Status"] = "IN_PROGRESS"
        return answer

    def started(
        answer: dict,
    ) -> dict:  # AWS answers the creation itself IN_PROGRESS (moto: SUCCEEDED at once)
        answer["AccountAssignmentCreationStatus"]["Status"] = "IN_PROGRESS"
        return answer

    proxy = aws_proxy(
        aws,
        rewrite={
            "CreateAccountAssignment": started,
            "DescribeAccountAssignmentCreationStatus": in_progress_twice,
        },
    )
    settings.AWS_ENDPOINT_URL = proxy.url
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
    fields = {
        "kind": RequestKind.PERMISSION_SET,
        "permission_set": permission_set,
        "pipelines": [],
        "level": "",
    }

    grant = world.approve("paulo.santos", **fields)
    reconcile(grant)
    assert status_of(grant) == GrantStatus.ACTIVE, grant.last_error
    assert proxy.calls["DescribeAccountAssignmentCreationStatus"] == 3  # IN_PROGRESS, IN_PROGRESS, SUCCEEDED

    def failed(answer: dict) -> dict:
        status = answer["AccountAssignmentCreationStatus"]
        status.update(Status="FAILED", FailureReason="The permission set is not provisioned to the account")
        return answer

    proxy.rewrite["DescribeAccountAssignmentCreationStatus"] = failed
    refused = world.approve("pipeline-operators", **fields)
    reconcile(refused)
    refused.refresh_from_db()
    assert refused.status == GrantStatus.FAILED
    assert "The permission set is not provisioned to the account" in refused.last_error
    assert AuditEvent.objects.filter(action="grant.failed", object_id=str(refused.pk)).exists()
    assert status_of(grant) == GrantStatus.ACTIVE  # the other principal's grant is untouched


@pytest.mark.django_db
def test_an_identity_center_group_gets_a_portal_owned_permission_set_with_the_approved_statements(world, aws):
    group = world.principal("pipeline-operators")
    grant = world.approve("pipeline-operators", level=AccessLevel.VIEWER, actions=[])
    reconcile(grant)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE, grant.last_error
    arn = grant.details["permission_set_arn"]
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=aws)
    instance = world.seeded["identity_center"]["instance_arn"]
    inline = json.loads(
        sso.get_inline_policy_for_permission_set(InstanceArn=instance, PermissionSetArn=arn)["InlinePolicy"]
    )
    assert permits([inline], "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    assert not permits([inline], "codepipeline:StartPipelineExecution", MY_PIPELINE_ARN)
    held = sso.list_account_assignments(InstanceArn=instance, AccountId=MANAGEMENT, PermissionSetArn=arn)
    assert [a["PrincipalId"] for a in held["AccountAssignments"]] == [group.external_id]

    provisioning.grant_revoke(grant_id=grant.pk, actor=world.admin)
    reconcile(grant)
    held = sso.list_account_assignments(InstanceArn=instance, AccountId=MANAGEMENT, PermissionSetArn=arn)
    assert held["AccountAssignments"] == []


# --- idempotence and races -------------------------------------------------------------------------------


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_the_same_reconcile_run_twice_makes_no_second_write(world, aws, worker_env, workers, aws_proxy):
    from accessrequests.tasks import reconcile_principal

    proxy = aws_proxy(aws)
    workers.start(aws_env(worker_env, proxy.url))
    grant = world.approve("mateojackson")
    wait_for(lambda: status_of(grant) == GrantStatus.ACTIVE, timeout=60, what="the grant to be applied")
    assert proxy.writes() == {"PutUserPolicy": 1}

    reconcile_principal.delay(grant.principal_id, grant.account_id).get(timeout=60)
    assert proxy.writes() == {"PutUserPolicy": 1}

    # As a crash after writing would leave it: the grant says "applying". The rerun reads AWS, finds the
    # policy already there, writes nothing and marks the grant active again.
    force_update(Grant.objects.filter(pk=grant.pk), status=GrantStatus.APPLYING)
    reads_before = proxy.calls["GetUserPolicy"]
    result = reconcile_principal.delay(grant.principal_id, grant.account_id).get(timeout=60)
    assert result["applied"] == [grant.pk] and result["request_ids"] == []
    assert proxy.calls["GetUserPolicy"] > reads_before
    assert proxy.writes() == {"PutUserPolicy": 1}
    assert status_of(grant) == GrantStatus.ACTIVE


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_fifty_approvals_for_one_principal_approved_concurrently_end_with_all_fifty_statements_live(
    world, aws, worker_env, workers
):
    role = make_principal(
        world.account, "CodePipelineDeployRole", kind=PrincipalKind.IAM_ROLE, users=[world.requester]
    )
    pipelines = [make_pipeline(world.account, f"service-{n:02d}") for n in range(50)]
    requests = [
        request_submit(requester=world.requester, draft=world.draft(role, pipelines=[p])) for p in pipelines
    ]
    env = aws_env(worker_env, aws)
    workers.start(env, "w1")
    workers.start(env, "w2")
    errors: list[Exception] = []

    def approve(chunk) -> None:
        try:
            for req in chunk:
                request_approve(
                    request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
                )
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=approve, args=(requests[i::5],)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    wait_for(
        lambda: Grant.objects.filter(principal=role, status=GrantStatus.ACTIVE).count() == 50,
        timeout=120,
        what="all fifty grants to be active",
    )
    inline = iam_client(aws).get_role_policy(RoleName=role.name, PolicyName="gatehouse")["PolicyDocument"]
    for pipeline in pipelines:
        assert permits([inline], "codepipeline:GetPipeline", pipeline.arn), pipeline.name
    # Coalescing: later reconciles found their grant already written by an earlier one.
    writes = AuditEvent.objects.filter(action="grant.applied", principal_id=role.pk).values_list(
        "aws_request_ids", flat=True
    )
    assert len({i for ids in writes for i in ids}) < 50


@pytest.mark.django_db(transaction=True)
def test_approvals_waiting_for_the_same_reconcile_send_one_message_and_the_sweeper_sends_regardless(
    world, aws, workers
):
    from portal.celery import app

    def waiting() -> int:
        with app.connection_for_write() as conn:
            queue = workers.prefix + "provisioning"
            return conn.default_channel.queue_declare(
                queue=queue, durable=True, auto_delete=False
            ).message_count

    first = world.approve("mateojackson")
    second = world.approve("mateojackson", pipelines=[make_pipeline(world.account, "second-pipeline")])
    assert waiting() == 1  # the second approval's grant is read by the reconcile already on its way
    world.approve("marymajor")
    assert waiting() == 2

    # The reconcile removes the mark before it reads the grants: both are applied, and what comes after is sent.
    assert sorted(reconcile(first)["applied"]) == [first.pk, second.pk]
    world.approve("mateojackson", pipelines=[make_pipeline(world.account, "third-pipeline")])
    assert waiting() == 3
    # The sweeper re-drives because a message may have been lost: it sends although one is marked as waiting.
    assert provisioning.grants_redrive_stuck(stuck_after=timedelta(0)) == 2
    assert waiting() == 5


@pytest.mark.django_db
def test_a_reconcile_records_each_grant_in_statements_and_tasks_that_do_not_grow_with_the_grants(
    world, aws, django_capture_on_commit_callbacks, capsys
):
    def queued(principal: str, count: int) -> list[Grant]:
        pipelines = [make_pipeline(world.account, f"{principal}-{n:02d}") for n in range(count)]
        return [world.approve(principal, pipelines=[p]) for p in pipelines]

    def applied(grants: list[Grant]) -> tuple[int, int]:
        with CaptureQueriesContext(connection) as sql, django_capture_on_commit_callbacks() as sent:
            outcome = reconcile(grants[0])
        assert sorted(outcome["applied"]) == sorted(g.pk for g in grants)
        return len(sql.captured_queries), len(sent)

    few, many = queued("mateojackson", 2), queued("marymajor", 6)
    assert applied(few) == applied(many)  # one conditional update per status, one audit append, one task
    for grant in [*few, *many]:
        assert status_of(grant) == GrantStatus.ACTIVE
        events = AuditEvent.objects.filter(object_type="grant", object_id=str(grant.pk))
        assert {"grant.applied", "grant.verified"} <= set(events.values_list("action", flat=True))
    call_command("verify_audit")
    assert "events verified" in capsys.readouterr().out


# --- limits, extensions, drift, admin actions ------------------------------------------------------------


def _many_pipelines(world, count: int):
    return [make_pipeline(world.account, f"team-service-pipeline-{n:02d}") for n in range(count)]


@pytest.mark.django_db
def test_a_user_policy_over_2048_characters_spills_into_portal_owned_managed_policies(world, aws):
    pipelines = _many_pipelines(world, 40)
    grant = world.approve("mateojackson", pipelines=pipelines, level=AccessLevel.VIEWER, actions=[])
    reconcile(grant)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE, grant.last_error
    iam = iam_client(aws)
    assert iam.list_user_policies(UserName="mateojackson")["PolicyNames"] == []
    attached = iam.list_attached_user_policies(UserName="mateojackson")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["gatehouse-spill-user-mateojackson-1"]
    documents = user_policies(iam, "mateojackson")
    assert all(permits(documents, "codepipeline:GetPipeline", p.arn) for p in pipelines)

    provisioning.grant_revoke(grant_id=grant.pk, actor=world.requester)
    reconcile(grant)
    assert iam.list_attached_user_policies(UserName="mateojackson")["AttachedPolicies"] == []
    assert not iam.list_policies(Scope="Local", PathPrefix="/gatehouse/")["Policies"]


@pytest.mark.django_db
def test_inline_policies_written_by_others_count_against_the_2048_limit_and_are_left_alone(world, aws):
    iam = iam_client(aws)
    theirs = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": f"Theirs{n}",
                "Effect": "Allow",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{n:060d}/*",
            }
            for n in range(13)
        ],
    }
    iam.put_user_policy(UserName="mateojackson", PolicyName="team-policy", PolicyDocument=json.dumps(theirs))
    grant = world.approve("mateojackson")  # alone, far below 2,048 characters
    reconcile(grant)
    grant.refresh_from_db()

    assert grant.status == GrantStatus.ACTIVE, grant.last_error
    # Beside the 1,965 characters already there, the portal's policy would break the user's inline quota
    # (IAM would refuse it; moto does not), so it goes into a managed spill policy instead.
    assert iam.list_user_policies(UserName="mateojackson")["PolicyNames"] == ["team-policy"]
    attached = iam.list_attached_user_policies(UserName="mateojackson")["AttachedPolicies"]
    assert [p["PolicyName"] for p in attached] == ["gatehouse-spill-user-mateojackson-1"]
    kept = iam.get_user_policy(UserName="mateojackson", PolicyName="team-policy")["PolicyDocument"]
    assert kept == theirs
    assert permits(user_policies(iam, "mateojackson"), "codepipeline:GetPipeline", MY_PIPELINE_ARN)


@pytest.mark.django_db
def test_a_user_policy_over_2048_characters_fails_naming_the_limit_when_no_managed_slot_is_free(world, aws):
    iam = iam_client(aws)
    for n in range(10):  # the user's ten managed policy slots, taken by someone else
        arn = iam.create_policy(
            PolicyName=f"other-{n}",
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::b{n}"}
                    ],
                }
            ),
        )["Policy"]["Arn"]
        iam.attach_user_policy(UserName="mateojackson", PolicyArn=arn)
    small = world.approve("mateojackson")
    big = world.approve(
        "mateojackson", pipelines=_many_pipelines(world, 40), level=AccessLevel.VIEWER, actions=[]
    )
    result = reconcile(big)
    small.refresh_from_db()
    big.refresh_from_db()
    assert small.status == GrantStatus.ACTIVE
    assert big.status == GrantStatus.FAILED
    assert "2,048" in big.last_error and "no managed policy slot is free" in big.last_error
    assert result["failed"] == {big.pk: big.last_error}
    assert big.next_attempt_at is not None and big.next_attempt_at > timezone.now()
    assert AuditEvent.objects.filter(action="grant.failed", object_id=str(big.pk)).exists()
    # What was already live stays live: the newcomer is the one refused.
    assert permits(user_policies(iam, "mateojackson"), "codepipeline:GetPipeline", MY_PIPELINE_ARN)


@pytest.mark.django_db
def test_an_extension_keeps_the_statements_live_without_a_gap_when_the_old_grant_expires(world, aws):
    old = world.approve("mateojackson")
    reconcile(old)
    old.refresh_from_db()
    new = world.approve("mateojackson", extends=old)
    assert new.starts_at <= timezone.now()
    reconcile(new)
    assert status_of(new) == GrantStatus.ACTIVE
    iam = iam_client(aws)
    before = iam.get_user_policy(UserName="mateojackson", PolicyName="gatehouse")["PolicyDocument"]

    Grant.objects.filter(pk=old.pk).update(  # its four hours have passed
        starts_at=timezone.now() - timedelta(hours=4), expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert provisioning.grants_expire_due() == 1
    result = reconcile(old)
    assert status_of(old) == GrantStatus.EXPIRED
    assert result["removed"] == [old.pk] and result["request_ids"] == []  # nothing to write: still desired
    assert iam.get_user_policy(UserName="mateojackson", PolicyName="gatehouse")["PolicyDocument"] == before
    assert status_of(new) == GrantStatus.ACTIVE


@pytest.mark.django_db
def test_drift_is_recorded_and_repaired_unless_the_account_says_not_to(world, aws):
    grant = world.approve("mateojackson")
    reconcile(grant)
    iam = iam_client(aws)
    assert provisioning.drift_check()["drifted"] == 0

    iam.delete_user_policy(UserName="mateojackson", PolicyName="gatehouse")  # someone "cleans up" by hand
    world.account.repair_drift = False
    world.account.save()
    assert provisioning.drift_check()["drifted"] == 1
    assert iam.list_user_policies(UserName="mateojackson")["PolicyNames"] == []
    assert AuditEvent.objects.filter(action="drift.found").count() == 1

    world.account.repair_drift = True
    world.account.save()
    counts = provisioning.drift_check()
    assert counts["repaired"] == 1
    assert iam.list_user_policies(UserName="mateojackson")["PolicyNames"] == ["gatehouse"]
    repaired = AuditEvent.objects.get(action="drift.repaired")
    assert repaired.aws_request_ids
    assert provisioning.drift_check()["drifted"] == 0


@pytest.mark.django_db
def test_an_admin_abandons_a_failing_grant_and_what_was_partly_applied_is_removed(world, aws):
    grant = world.approve("mateojackson")
    reconcile(grant)
    force_update(Grant.objects.filter(pk=grant.pk), status=GrantStatus.FAILED, last_error="Rate exceeded")
    with pytest.raises(NotAllowed):
        provisioning.grant_abandon(grant_id=grant.pk, actor=world.requester)
    provisioning.grant_abandon(grant_id=grant.pk, actor=world.admin)
    reconcile(grant)
    assert status_of(grant) == GrantStatus.ABANDONED
    assert iam_client(aws).list_user_policies(UserName="mateojackson")["PolicyNames"] == []
    assert AuditEvent.objects.filter(action="grant.abandoned", object_id=str(grant.pk)).count() == 1


@pytest.mark.django_db
def test_only_the_requester_or_an_admin_may_revoke_and_only_an_admin_may_retry(world, aws):
    from tests.conftest import make_user

    grant = world.approve("mateojackson")
    for outsider in (world.approver, make_user("auditor", "auditors")):
        with pytest.raises(NotAllowed):
            provisioning.grant_revoke(grant_id=grant.pk, actor=outsider)
    with pytest.raises(NotAllowed):
        provisioning.grant_retry_now(grant_id=grant.pk, actor=world.requester)
    force_update(Grant.objects.filter(pk=grant.pk), status=GrantStatus.FAILED)
    assert provisioning.grant_retry_now(grant_id=grant.pk, actor=world.admin).status == GrantStatus.QUEUED
    reconcile(grant)
    assert status_of(grant) == GrantStatus.ACTIVE
    provisioning.grant_revoke(grant_id=grant.pk, actor=world.requester)
    with pytest.raises(NotAllowed, match="already"):
        provisioning.grant_revoke(grant_id=grant.pk, actor=world.admin)


@pytest.mark.django_db
def test_a_cross_account_grant_creates_a_portal_owned_role_trusting_the_outside_account_and_removes_it(
    world, aws
):
    grant = world.approve_cross_account()
    reconcile(grant)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE, grant.last_error
    arn = grant.details["role_arn"]
    name = arn.rsplit("/", 1)[-1]
    iam = iam_client(aws)
    role = iam.get_role(RoleName=name)["Role"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": "arn:aws:iam::210987654321:root"}
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": "partner-42"}}
    permissions = iam.get_role_policy(RoleName=name, PolicyName="gatehouse")["PolicyDocument"]
    assert permits([permissions], "codepipeline:GetPipeline", MY_PIPELINE_ARN)
    assert "--role-arn " + arn in grant.details["assume_role_command"]

    provisioning.grant_revoke(grant_id=grant.pk, actor=world.requester)
    reconcile(grant)
    with pytest.raises(ClientError):
        iam.get_role(RoleName=name)


@pytest.mark.django_db
def test_a_grant_in_another_account_is_written_through_that_accounts_provisioning_role(world, aws):
    from accessrequests.models import AwsAccount, Pipeline
    from tests.factories import make_rule

    production = AwsAccount.objects.exclude(account_id=MANAGEMENT).get()
    seeding_role = f"arn:aws:iam::{production.account_id}:role/OrganizationAccountAccessRole"
    creds = boto3.client("sts", region_name=REGION, endpoint_url=aws).assume_role(
        RoleArn=seeding_role, RoleSessionName="test"
    )["Credentials"]
    prod_iam = iam_client(
        aws,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    prod_iam.create_user(UserName="release-bot")
    bot = make_principal(production, "release-bot", users=[world.requester])
    make_rule("Production", accounts=[production])
    pipeline = Pipeline.objects.get(account=production, name="payments-release")
    grant = world.approve(bot, account=production, pipelines=[pipeline])

    reconcile(grant)
    assert status_of(grant) == GrantStatus.ACTIVE, grant.last_error
    document = prod_iam.get_user_policy(UserName="release-bot", PolicyName="gatehouse")["PolicyDocument"]
    assert permits([document], "codepipeline:GetPipeline", pipeline.arn)
    # Nothing landed in the hub's own account.
    with pytest.raises(ClientError):
        iam_client(aws).get_user(UserName="release-bot")


@pytest.mark.django_db
def test_a_cross_account_role_carries_the_permissions_boundary_and_the_configured_name_prefix(
    world, aws, settings
):
    settings.GATEHOUSE_ROLE_PREFIX = "acme-gh-"
    settings.GATEHOUSE_PERMISSIONS_BOUNDARY = "AcmeGatehouseBoundary"
    grant = world.approve_cross_account()
    reconcile(grant)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE, grant.last_error
    name = f"acme-gh-{grant.request.reference}"
    assert grant.details["role_arn"].endswith(f"/{name}")
    role = iam_client(aws).get_role(RoleName=name)["Role"]
    boundary = role["PermissionsBoundary"]["PermissionsBoundaryArn"]
    assert boundary == f"arn:aws:iam::{MANAGEMENT}:policy/AcmeGatehouseBoundary"
