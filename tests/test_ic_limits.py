"""Identity Center's limits with real workers: two worker processes (several threads each) applying permission
set grants through a proxy in front of moto that plays Identity Center's asynchronous assignments and its
throttling. Together they never have more creations outstanding than the setting, and a throttling storm ends
with every grant applied and none ever failed."""

from __future__ import annotations

import boto3
import pytest

from accessrequests.aws import governor
from accessrequests.catalog.sync import catalog_sync
from accessrequests.models import AuditEvent, Grant, GrantStatus, PermissionSet, Principal, RequestKind
from tests.conftest import wait_for
from tests.provisioning_support import (
    MANAGEMENT,
    REGION,
    AwsProxy,
    IdentityCenterLimits,
    PortalWorld,
    aws_env,
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


def more_people(world: PortalWorld, aws: str, count: int) -> list[Principal]:
    """Identity Center users of the test's own, in AWS and (through the catalog sync) in Gatehouse."""
    store_id = world.seeded["identity_center"]["identity_store_id"]
    store = boto3.client("identitystore", region_name=REGION, endpoint_url=aws)
    names = [f"limits.user{n:02d}" for n in range(count)]
    for name in names:
        store.create_user(
            IdentityStoreId=store_id,
            UserName=name,
            DisplayName=name,
            Name={"GivenName": "Limits", "FamilyName": name},
            Emails=[{"Value": f"{name}@example.com", "Type": "work", "Primary": True}],
        )
    catalog_sync()
    people = list(Principal.objects.filter(name__in=names).order_by("name"))
    for person in people:
        person.users.add(world.requester)
    assert len(people) == count
    return people


def approve_read_only(world: PortalWorld, people: list[Principal]) -> list[Grant]:
    permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
    return [
        world.approve(
            person, kind=RequestKind.PERMISSION_SET, permission_set=permission_set, pipelines=[], level=""
        )
        for person in people
    ]


def all_active(grants: list[Grant]) -> bool:
    return Grant.objects.filter(pk__in=[g.pk for g in grants], status=GrantStatus.ACTIVE).count() == len(
        grants
    )


def holders(world: PortalWorld, aws: str) -> set[str]:
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=aws)
    return {
        item["PrincipalId"]
        for item in sso.list_account_assignments(
            InstanceArn=world.seeded["identity_center"]["instance_arn"],
            AccountId=MANAGEMENT,
            PermissionSetArn=PermissionSet.objects.get(name="CodePipelineReadOnly").arn,
        )["AccountAssignments"]
    }


def governed_env(worker_env: dict[str, str], proxy: AwsProxy, settings, **extra: str) -> dict[str, str]:
    env = aws_env(worker_env, proxy.url)
    # The workers' governor is this test's: the same namespace (the cache prefix), so the test can read it.
    env["GATEHOUSE_CACHE_PREFIX"] = settings.CACHES["default"]["KEY_PREFIX"]
    env.update(extra)
    return env


def test_two_workers_together_never_have_more_creations_outstanding_than_the_setting(
    world, aws, worker_env, workers, proxies, settings
):
    people = more_people(world, aws, 12)
    limits = IdentityCenterLimits(polls=2)  # every assignment: IN_PROGRESS twice, then SUCCEEDED
    proxy = limits.install(AwsProxy(aws))
    proxies.append(proxy)
    env = governed_env(worker_env, proxy, settings, GATEHOUSE_IC_OUTSTANDING="3")
    grants = approve_read_only(world, people)

    # Eight reconciles at a time (two processes, four threads each) for twelve grants, three slots between them.
    workers.start(env, "w1", concurrency=4, pool="threads")
    workers.start(env, "w2", concurrency=4, pool="threads")
    wait_for(lambda: all_active(grants), timeout=240, what="every grant to be applied")

    assert limits.done["create"] == 12
    assert limits.peak["create"] <= 3, limits.peak
    assert (
        limits.peak["create"] == 3
    )  # the workers did press against the limit: it was the governor that held
    assert limits.outstanding["create"] == 0
    assert holders(world, aws) >= {p.external_id for p in people}
    assert not AuditEvent.objects.filter(action="grant.failed").exists()
    settings.GATEHOUSE_IC_OUTSTANDING = 3
    state = governor.current().state()
    assert state["outstanding"]["create"]["held"] == {}  # every slot given back, none left to expire


def test_a_throttling_storm_ends_with_every_grant_applied_and_none_failed(
    world, aws, worker_env, workers, proxies, settings
):
    people = more_people(world, aws, 6)
    limits = IdentityCenterLimits(polls=1, storm=30)  # the next 30 Identity Center calls: ThrottlingException
    proxy = limits.install(AwsProxy(aws))
    proxies.append(proxy)
    # botocore gives up after two attempts, so riding out the storm is the governor's and Gatehouse's doing.
    env = governed_env(worker_env, proxy, settings, AWS_MAX_ATTEMPTS="2")
    grants = approve_read_only(world, people)

    workers.start(env, "w1", concurrency=3, pool="threads")
    workers.start(env, "w2", concurrency=3, pool="threads")
    wait_for(lambda: all_active(grants), timeout=240, what="every grant to be applied")

    assert limits.throttled["storm"] == 30
    assert limits.done["create"] == 6
    assert holders(world, aws) >= {p.external_id for p in people}
    # Not one grant failed on the way: no failure recorded, each applied at its first attempt.
    assert not AuditEvent.objects.filter(action="grant.failed").exists()
    assert [g.attempts for g in Grant.objects.filter(pk__in=[g.pk for g in grants])] == [1] * 6
    assert AuditEvent.objects.filter(action="grant.applied").count() == 6
    # The throttles slowed the shared bucket down (at least once) for every worker.
    state = governor.current().state()
    assert state["throttles"] >= 1 and state["epoch"] >= 1
