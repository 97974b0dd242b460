"""The catalog sync against the demo world on a real moto server: what it creates, keeps, and marks gone."""

from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from accessrequests import tasks
from accessrequests.aws.client import client
from accessrequests.catalog.listings import environment_for
from accessrequests.catalog.sync import catalog_sync
from accessrequests.models import (
    AuditEvent,
    AwsAccount,
    Environment,
    IdentityCenter,
    PassableRole,
    PermissionSet,
    Pipeline,
    Principal,
    PrincipalKind,
)

pytestmark = [pytest.mark.moto, pytest.mark.django_db]

MANAGEMENT = "123456789012"
BOTH_REGIONS = ["us-east-1", "eu-west-1"]


@pytest.fixture
def both_regions(settings):
    settings.GATEHOUSE_REGIONS = BOTH_REGIONS


def _production_id(world: dict[str, Any]) -> str:
    return next(a["id"] for a in world["accounts"] if a["name"] == "production")


def _snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every synced row's content, without the timestamps a sync is expected to move."""
    return {
        "accounts": list(
            AwsAccount.objects.order_by("account_id").values_list(
                "account_id", "name", "environment", "enabled", "provisioning_role_arn"
            )
        ),
        "pipelines": list(
            Pipeline.objects.order_by("arn").values_list(
                "id", "account_id", "region", "name", "arn", "role_arn", "stages", "tags", "present"
            )
        ),
        "roles": list(
            PassableRole.objects.order_by("arn").values_list(
                "id", "arn", "name", "trusts_codepipeline", "sensitive", "present"
            )
        ),
        "principals": list(
            Principal.objects.order_by("kind", "external_id").values_list(
                "id", "kind", "name", "external_id", "account_id", "identity_center_id", "present"
            )
        ),
        "permission_sets": list(
            PermissionSet.objects.order_by("arn").values_list("id", "arn", "name", "description", "present")
        ),
        "identity_centers": list(
            IdentityCenter.objects.values_list("id", "instance_arn", "identity_store_id")
        ),
    }


def test_it_creates_accounts_with_the_environments_their_tags_in_organizations_say(demo_world):
    catalog_sync()

    management = AwsAccount.objects.get(account_id=MANAGEMENT)
    production = AwsAccount.objects.get(account_id=_production_id(demo_world))
    assert (management.environment, production.environment) == (
        Environment.DEVELOPMENT,
        Environment.PRODUCTION,
    )
    assert (management.tags, production.tags) == (
        {"environment": "development"},
        {"environment": "production"},
    )
    assert production.name == "production"
    assert management.enabled and production.enabled
    assert management.last_synced_at is not None and production.last_synced_at is not None


def test_an_account_without_an_environment_tag_is_unknown_whatever_its_name(demo_world):
    client("organizations").untag_resource(ResourceId=_production_id(demo_world), TagKeys=["environment"])

    catalog_sync()

    production = AwsAccount.objects.get(account_id=_production_id(demo_world))
    assert (production.name, production.environment) == ("production", Environment.UNKNOWN)


def test_the_gatehouse_environment_tag_beats_the_plain_one(demo_world):
    client("organizations").tag_resource(
        ResourceId=_production_id(demo_world), Tags=[{"Key": "gatehouse:environment", "Value": "staging"}]
    )

    catalog_sync()

    assert AwsAccount.objects.get(account_id=_production_id(demo_world)).environment == Environment.STAGING


@pytest.mark.parametrize(
    ("tags", "before_tags", "current", "expected"),
    [
        (
            {},
            {},
            Environment.UNKNOWN,
            Environment.UNKNOWN,
        ),  # new and untagged: nothing is guessed from a name
        ({"environment": "Prod"}, {}, Environment.UNKNOWN, Environment.PRODUCTION),
        ({"environment": "stg"}, {}, Environment.UNKNOWN, Environment.STAGING),
        ({"gatehouse:environment": "sandbox", "environment": "prod"}, {}, "unknown", Environment.SANDBOX),
        ({"environment": "something-else"}, {}, Environment.DEVELOPMENT, Environment.UNKNOWN),
        ({"team": "a"}, {}, Environment.SANDBOX, Environment.SANDBOX),  # untagged: an admin's setting stays
        ({}, {"environment": "production"}, Environment.PRODUCTION, Environment.UNKNOWN),  # the tag went away
        (
            {"environment": "production"},
            {},
            Environment.DEVELOPMENT,
            Environment.PRODUCTION,
        ),  # the tag decides
    ],
)
def test_an_accounts_environment_after_its_tags_are_read(tags, before_tags, current, expected):
    assert environment_for(tags, before_tags=before_tags, current=current) == expected


def test_it_reads_pipelines_in_every_configured_region(demo_world, both_regions):
    catalog_sync()

    pipelines = {(p.account.account_id, p.region, p.name) for p in Pipeline.objects.select_related("account")}
    production = _production_id(demo_world)
    assert pipelines == {
        (MANAGEMENT, "us-east-1", "my-pipeline"),
        (MANAGEMENT, "us-east-1", "web-frontend"),
        (MANAGEMENT, "us-east-1", "data-etl"),
        (MANAGEMENT, "eu-west-1", "web-frontend-eu"),
        (production, "us-east-1", "payments-release"),
    }
    my_pipeline = Pipeline.objects.get(name="my-pipeline")
    assert my_pipeline.arn == f"arn:aws:codepipeline:us-east-1:{MANAGEMENT}:my-pipeline"
    assert my_pipeline.role_arn == f"arn:aws:iam::{MANAGEMENT}:role/service-role/CodePipelineServiceRole"
    assert [stage["name"] for stage in my_pipeline.stages] == ["Source", "Build", "Approve", "Deploy"]
    assert my_pipeline.stages[2]["actions"] == [{"name": "ManualApproval", "category": "Approval"}]
    assert my_pipeline.tags == {"team": "platform", "environment": "staging"}
    assert my_pipeline.present and my_pipeline.last_seen_at is not None


def test_only_the_configured_regions_are_read(demo_world, settings):
    settings.GATEHOUSE_REGIONS = ["us-east-1"]

    result = catalog_sync()

    assert result["regions"] == ["us-east-1"]
    assert not Pipeline.objects.filter(region="eu-west-1").exists()


def test_roles_carry_their_trust_and_sensitive_flags(demo_world):
    catalog_sync()

    flags = {
        role.name: (role.trusts_codepipeline, role.sensitive)
        for role in PassableRole.objects.filter(account__account_id=MANAGEMENT)
    }
    assert flags["CodePipelineServiceRole"] == (True, False)
    assert flags["CodePipelineDeployRole"] == (True, False)  # list of services + confused-deputy condition
    assert flags["LambdaExecutionRole"] == (False, False)
    assert flags["LegacyPipelineRole"] == (False, False)  # an unconditional Deny beats the Allow
    assert flags["CodePipelineBreakGlassRole"] == (True, True)
    requestable = {role.name for role in PassableRole.objects.all() if role.requestable}
    assert "CodePipelineBreakGlassRole" not in requestable
    assert "CodePipelineServiceRole" in requestable
    assert PassableRole.objects.filter(
        account__account_id=_production_id(demo_world), name="GatehouseProvisioner"
    ).exists()


def test_iam_users_roles_and_groups_become_principals_named_by_arn(demo_world):
    catalog_sync()

    iam = {
        (p.kind, p.name): p.external_id
        for p in Principal.objects.filter(account__account_id=MANAGEMENT, present=True)
    }
    assert iam[(PrincipalKind.IAM_USER, "mateojackson")] == f"arn:aws:iam::{MANAGEMENT}:user/mateojackson"
    assert iam[(PrincipalKind.IAM_USER, "marymajor")] == f"arn:aws:iam::{MANAGEMENT}:user/marymajor"
    assert iam[(PrincipalKind.IAM_GROUP, "developers")] == f"arn:aws:iam::{MANAGEMENT}:group/developers"
    assert (
        iam[(PrincipalKind.IAM_ROLE, "CodePipelineDeployRole")]
        == f"arn:aws:iam::{MANAGEMENT}:role/CodePipelineDeployRole"
    )


def test_identity_center_permission_sets_users_and_groups(demo_world):
    catalog_sync()

    seeded = demo_world["identity_center"]
    instance = IdentityCenter.objects.get()
    assert (instance.instance_arn, instance.identity_store_id, instance.region) == (
        seeded["instance_arn"],
        seeded["identity_store_id"],
        "us-east-1",
    )
    assert {(s.name, s.arn) for s in PermissionSet.objects.filter(present=True)} == set(
        seeded["permission_sets"].items()
    )
    people = {(p.kind, p.name): p.external_id for p in Principal.objects.filter(identity_center=instance)}
    assert people == {
        **{(PrincipalKind.IC_USER, name): user_id for name, user_id in seeded["users"].items()},
        **{(PrincipalKind.IC_GROUP, name): group_id for name, group_id in seeded["groups"].items()},
    }
    # Users also by the name people know them by (the access report lists them so).
    assert (
        Principal.objects.get(kind=PrincipalKind.IC_USER, name="paulo.santos").display_name == "Paulo Santos"
    )


def test_a_second_sync_changes_nothing(demo_world, both_regions):
    first = catalog_sync()
    before = _snapshot()

    second = catalog_sync()

    assert _snapshot() == before
    for kind in ("pipelines", "roles", "principals", "permission_sets"):
        assert first[kind]["created"] > 0
        assert second[kind] == {**second[kind], "created": 0, "updated": 0, "gone": 0}
    assert second["accounts"]["created"] == 0
    assert second["errors"] == []
    events = AuditEvent.objects.filter(action="catalog.synced").order_by("id")
    assert [event.after["pipelines"]["seen"] for event in events] == [5, 5]


def test_a_deleted_pipeline_stays_in_the_catalog_as_not_present(demo_world):
    catalog_sync()
    client("codepipeline", region="us-east-1").delete_pipeline(name="data-etl")

    result = catalog_sync()

    data_etl = Pipeline.objects.get(name="data-etl")
    assert data_etl.present is False
    assert result["pipelines"]["gone"] == 1
    assert Pipeline.objects.get(name="my-pipeline").present is True


def test_a_pipeline_seen_again_is_present_again(demo_world):
    catalog_sync()
    Pipeline.objects.filter(name="my-pipeline").update(present=False)

    catalog_sync()

    assert Pipeline.objects.get(name="my-pipeline").present is True


def test_pipelines_of_a_region_no_longer_configured_are_not_present(demo_world, settings):
    settings.GATEHOUSE_REGIONS = BOTH_REGIONS
    catalog_sync()
    settings.GATEHOUSE_REGIONS = ["us-east-1"]

    catalog_sync()

    assert Pipeline.objects.get(name="web-frontend-eu").present is False


def test_admin_edits_of_an_account_survive_a_sync(demo_world):
    # The environment of an account with no environment tag is the admin's to set (a tagged one's is the tag's).
    client("organizations").untag_resource(ResourceId=MANAGEMENT, TagKeys=["environment"])
    catalog_sync()
    AwsAccount.objects.filter(account_id=MANAGEMENT).update(
        environment=Environment.PRODUCTION, name="Platform tooling"
    )
    production = AwsAccount.objects.get(account_id=_production_id(demo_world))
    production.enabled = False
    production.save()
    client("codepipeline", region="us-east-1", account_id=production.account_id).delete_pipeline(
        name="payments-release"
    )

    catalog_sync()

    management = AwsAccount.objects.get(account_id=MANAGEMENT)
    assert (management.environment, management.name) == (Environment.PRODUCTION, "Platform tooling")
    production.refresh_from_db()
    assert production.enabled is False
    # A disabled account is not read, so nothing is said about its pipelines.
    assert Pipeline.objects.get(name="payments-release").present is True


def test_people_and_permission_sets_of_a_replaced_identity_center_are_gone(demo_world):
    catalog_sync()
    # The demo's moto world started afresh, or Identity Center re-created: the old instance is never seen.
    old = IdentityCenter.objects.create(instance_arn="arn:aws:sso:::instance/ssoins-old", region="us-east-1")
    old_user = Principal.objects.create(
        kind=PrincipalKind.IC_USER, name="paulo.santos", external_id="old-user-id", identity_center=old
    )
    old_set = PermissionSet.objects.create(
        identity_center=old, arn="arn:aws:sso:::permissionSet/ssoins-old/ps-old", name="CodePipelineReadOnly"
    )

    result = catalog_sync()

    old_user.refresh_from_db()
    old_set.refresh_from_db()
    assert (old_user.present, old_set.present) == (False, False)
    assert (
        Principal.objects.filter(kind=PrincipalKind.IC_USER, name="paulo.santos", present=True).count() == 1
    )
    assert result["permission_sets"]["gone"] == 1


def test_a_role_an_admin_marked_sensitive_stays_sensitive(demo_world):
    catalog_sync()
    PassableRole.objects.filter(name="CodePipelineDeployRole").update(sensitive=True)

    catalog_sync()

    assert PassableRole.objects.get(name="CodePipelineDeployRole").sensitive is True


def test_linked_portal_users_survive_a_sync(demo_world, django_user_model):
    catalog_sync()
    user = django_user_model.objects.create_user("requester")
    Principal.objects.get(name="mateojackson").users.add(user)

    catalog_sync()

    assert list(Principal.objects.get(name="mateojackson").users.all()) == [user]


def test_an_unreadable_account_is_reported_and_left_untouched(demo_world):
    catalog_sync()
    production = AwsAccount.objects.get(account_id=_production_id(demo_world))
    synced_at = production.last_synced_at
    # An admin typo: a provisioning role in another account. The client factory refuses it.
    production.provisioning_role_arn = "arn:aws:iam::111111111111:role/GatehouseProvisioner"
    production.save()

    result = catalog_sync()

    assert result["errors"]
    assert all(production.account_id in error for error in result["errors"])
    assert Pipeline.objects.get(name="payments-release").present is True
    assert Principal.objects.filter(account=production, present=False).count() == 0
    production.refresh_from_db()
    assert production.last_synced_at == synced_at
    assert AwsAccount.objects.get(account_id=MANAGEMENT).last_synced_at > synced_at


def test_the_sync_is_audited_with_its_counts(demo_world):
    result = catalog_sync()

    event = AuditEvent.objects.get(action="catalog.synced")
    assert event.actor_label == "system"
    assert event.after["pipelines"] == result["pipelines"]
    assert event.after["accounts"] == {
        "seen": 2,
        "created": 2,
        "changed": 0,
        "moved": 0,
        "returned": 0,
        "removed": 0,
    }


def test_the_command_prints_counts(demo_world):
    out = StringIO()

    call_command("sync_catalog", stdout=out)

    assert "pipelines: 4 seen, 4 created, 0 updated, 0 gone" in out.getvalue()
    assert "catalog synced" in out.getvalue()


def test_the_command_fails_when_part_of_aws_could_not_be_read(demo_world):
    catalog_sync()
    AwsAccount.objects.filter(account_id=_production_id(demo_world)).update(
        provisioning_role_arn="arn:aws:iam::111111111111:role/GatehouseProvisioner"
    )

    with pytest.raises(CommandError, match="partly synced"):
        call_command("sync_catalog", stdout=StringIO(), stderr=StringIO())


def test_the_task_runs_the_sync(demo_world):
    result = tasks.sync_catalog.apply().get()

    assert result["accounts"]["created"] == 2
    assert Pipeline.objects.filter(present=True).count() == 4


def test_an_account_named_unmanaged_is_recorded_disabled_and_never_listed(demo_world, settings):
    production = _production_id(demo_world)
    settings.GATEHOUSE_UNMANAGED_ACCOUNTS = [production]
    catalog_sync()
    account = AwsAccount.objects.get(account_id=production)
    assert not account.enabled
    assert account.last_synced_at is None
    assert not Pipeline.objects.filter(account=account).exists()
    assert AwsAccount.objects.get(account_id=MANAGEMENT).enabled


def test_a_changed_environment_tag_is_audited_and_told_to_the_admins(
    demo_world, settings, django_capture_on_commit_callbacks
):
    from django.core import mail

    from tests.conftest import make_user

    production = _production_id(demo_world)
    catalog_sync()
    make_user("boss", "admins")
    make_user("reader", "auditors")
    settings.CELERY_TASK_ALWAYS_EAGER = True
    client("organizations").tag_resource(
        ResourceId=production, Tags=[{"Key": "environment", "Value": "staging"}]
    )

    with django_capture_on_commit_callbacks(execute=True):
        result = catalog_sync()

    assert AwsAccount.objects.get(account_id=production).environment == Environment.STAGING
    event = AuditEvent.objects.filter(action="awsaccount.environment_changed", account_id=production).last()
    assert event.actor_label == "system"
    assert event.before == {"environment": "production", "tags": {"environment": "production"}}
    assert event.after == {
        "environment": "staging",
        "tags": {"environment": "staging"},
        "source": "organizations",
    }
    assert result["account_tags"] == {"read": 2, "changed": 1, "environments_changed": 1}
    [message] = mail.outbox
    assert message.to == ["boss@example.com"]  # admins; auditors read the trail
    assert (
        message.subject == "[Gatehouse] Organizations changed the tags of 1 account (1 environment changed)"
    )
    assert (
        f"{production} production: environment production → staging (tag environment=staging)" in message.body
    )

    # Nothing changed since: nothing recorded, nobody told.
    events = AuditEvent.objects.filter(object_type="awsaccount").count()
    with django_capture_on_commit_callbacks(execute=True):
        catalog_sync()
    assert AuditEvent.objects.filter(object_type="awsaccount").count() == events
    assert len(mail.outbox) == 1


def test_other_tags_changing_is_audited_without_moving_the_environment(demo_world):
    catalog_sync()
    client("organizations").tag_resource(ResourceId=MANAGEMENT, Tags=[{"Key": "team", "Value": "platform"}])

    catalog_sync()

    event = AuditEvent.objects.get(action="awsaccount.tags_changed")
    assert event.before["tags"] == {"environment": "development"}
    assert event.after["tags"] == {"environment": "development", "team": "platform"}
    assert event.after["environment"] == event.before["environment"] == "development"
    assert AwsAccount.objects.get(account_id=MANAGEMENT).tags["team"] == "platform"


def test_a_removed_environment_tag_leaves_the_environment_unknown_and_says_so(
    demo_world, settings, django_capture_on_commit_callbacks
):
    from django.core import mail

    from tests.conftest import make_user

    production = _production_id(demo_world)
    catalog_sync()
    make_user("boss", "admins")
    settings.CELERY_TASK_ALWAYS_EAGER = True
    client("organizations").untag_resource(ResourceId=production, TagKeys=["environment"])

    with django_capture_on_commit_callbacks(execute=True):
        catalog_sync()

    assert AwsAccount.objects.get(account_id=production).environment == Environment.UNKNOWN
    [message] = mail.outbox
    assert f"{production} production: environment production → unknown (no environment tag)" in message.body
    assert "1 of them has no environment now: Gatehouse refuses requests there" in message.body
