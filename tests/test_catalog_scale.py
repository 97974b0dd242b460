"""The catalog sync at the scale of an organization, against a moto server, counted on the wire.

Accounts that join, leave or move between units appear, disappear or move without a restart; the incremental
sync lists only what changed (counted at the HTTP boundary by a proxy in front of moto); a sync that crashed
half-way resumes with the accounts it had not written; progress shows in /healthz and the admin.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.utils import timezone

from accessrequests.aws.client import clear_credentials_cache, client
from accessrequests.catalog.sync import FULL, INCREMENTAL, catalog_sync
from accessrequests.models import (
    AwsAccount,
    CatalogSyncRun,
    CatalogSyncStatus,
    Grant,
    OrganizationalUnit,
)
from tests.aws_counter import CountingProxy
from tests.conftest import make_user, sign_in_with_mfa

pytestmark = [pytest.mark.moto, pytest.mark.django_db]


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so nothing on the way catches it."""


@pytest.fixture
def wire(aws, settings, monkeypatch) -> Iterator[CountingProxy]:
    proxy = CountingProxy(aws)
    settings.AWS_ENDPOINT_URL = proxy.url
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    settings.GATEHOUSE_REGIONS = ["us-east-1"]
    clear_credentials_cache()
    try:
        yield proxy
    finally:
        proxy.close()
        clear_credentials_cache()


class Org:
    """An organization with Workloads/Prod and Workloads/Dev and member accounts in them."""

    def __init__(self) -> None:
        self.org = client("organizations")
        self.org.create_organization(FeatureSet="ALL")
        self.root = self.org.list_roots()["Roots"][0]["Id"]
        workloads = self.ou("Workloads", self.root)
        self.prod, self.dev = self.ou("Prod", workloads), self.ou("Dev", workloads)

    def ou(self, name: str, parent: str) -> str:
        return self.org.create_organizational_unit(ParentId=parent, Name=name)["OrganizationalUnit"]["Id"]

    def account(self, name: str, ou: str) -> str:
        account_id = self.org.create_account(AccountName=name, Email=f"{name}@example.com")[
            "CreateAccountStatus"
        ]["AccountId"]
        self.org.move_account(AccountId=account_id, SourceParentId=self.root, DestinationParentId=ou)
        return account_id

    def move(self, account_id: str, source: str, destination: str) -> None:
        self.org.move_account(AccountId=account_id, SourceParentId=source, DestinationParentId=destination)


@pytest.fixture
def org(wire) -> Org:
    return Org()


def _listed(wire: CountingProxy) -> set[str]:
    """The accounts whose pipelines the sync listed (ListPipelines made with that account's credentials)."""
    return set(wire.accounts_calling("ListPipelines"))


def test_a_full_sync_reads_units_and_places_each_account_in_its_unit(org, wire):
    payments = org.account("payments-prod", org.prod)
    sandbox = org.account("sandbox-dev", org.dev)

    result = catalog_sync(mode=FULL)

    assert AwsAccount.objects.get(account_id=payments).ou.path == "Root / Workloads / Prod"
    assert AwsAccount.objects.get(account_id=sandbox).ou.path == "Root / Workloads / Dev"
    assert OrganizationalUnit.objects.get(ou_id=org.prod).parent.name == "Workloads"
    assert {payments, sandbox} <= _listed(wire)
    assert result["run"]["listed"] == AwsAccount.objects.count()
    # One walk of the tree: no ListParents per account.
    assert wire.count("ListParents") == 0


def test_an_incremental_sync_lists_only_the_account_that_joined(org, wire):
    org.account("payments-prod", org.prod)
    org.account("sandbox-dev", org.dev)
    catalog_sync(mode=FULL)
    wire.clear()

    joined = org.account("ledger-prod", org.prod)
    result = catalog_sync(mode=INCREMENTAL)

    assert _listed(wire) == {joined}
    account = AwsAccount.objects.get(account_id=joined)
    assert (account.present, account.ou.ou_id, account.name) == (True, org.prod, "ledger-prod")
    assert result["accounts"]["created"] == 1 and result["run"]["listed"] == 1


def test_nothing_changed_lists_no_account(org, wire):
    org.account("payments-prod", org.prod)
    catalog_sync(mode=FULL)
    wire.clear()

    result = catalog_sync(mode=INCREMENTAL)

    assert _listed(wire) == set() and wire.count("ListRoles") == 0
    assert result["run"]["listed"] == 0


def test_an_account_moved_between_units_moves_without_being_listed_again(org, wire):
    moving = org.account("payments", org.dev)
    catalog_sync(mode=FULL)
    wire.clear()

    org.move(moving, org.dev, org.prod)
    result = catalog_sync(mode=INCREMENTAL)

    assert AwsAccount.objects.get(account_id=moving).ou.ou_id == org.prod
    assert result["accounts"]["moved"] == 1
    assert _listed(wire) == set()


def test_an_account_that_left_is_kept_not_present_and_its_grants_stay_for_revocation(org, wire):
    from accessrequests.workflow.requests import request_approve
    from tests.factories import World, fresh_factor

    leaving = org.account("legacy", org.dev)
    catalog_sync(mode=FULL)
    world = World()
    account = AwsAccount.objects.get(account_id=leaving)
    from tests.factories import make_pipeline, make_principal

    principal = make_principal(account, users=[world.requester])
    world.rule.accounts.add(account)
    req = world.submit(principal=principal, account=account, pipelines=[make_pipeline(account)])
    request_approve(request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    grant = Grant.objects.get(request=req)

    org.org.remove_account_from_organization(AccountId=leaving)
    result = catalog_sync(mode=INCREMENTAL)

    account.refresh_from_db()
    assert (account.present, account.removed_at is not None) == (False, True)
    assert result["accounts"]["removed"] == 1
    assert Grant.objects.filter(pk=grant.pk, account=account).exists()


def test_a_crashed_sync_resumes_with_the_accounts_it_had_not_written(org, wire, settings):
    settings.GATEHOUSE_CATALOG_WRITE_BATCH = (
        1  # one account per transaction: the crash falls after the second
    )
    accounts = [org.account(f"team-{i}", org.dev) for i in range(5)]
    wire.clear()
    written: list[int] = []

    def crash_after_two(run: CatalogSyncRun) -> None:
        written.append(run.accounts_done)
        if run.accounts_done == 2:
            raise Crash

    with pytest.raises(Crash):
        catalog_sync(mode=FULL, progress=crash_after_two)
    run = CatalogSyncRun.objects.get()
    assert (run.status, run.accounts_done, run.accounts_total) == (CatalogSyncStatus.RUNNING, 2, 6)
    first = _listed(wire)
    synced_before = set(
        AwsAccount.objects.filter(last_synced_at__isnull=False).values_list("account_id", flat=True)
    )
    assert len(synced_before) == 2
    wire.clear()

    # Its process is gone, but its heartbeat is recent: another sync leaves it alone ...
    assert catalog_sync(mode=INCREMENTAL)["skipped"]
    # ... until the heartbeat is old enough to call it crashed; then the next sync carries on where it stopped.
    CatalogSyncRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    result = catalog_sync(mode=INCREMENTAL)

    resumed_listing = _listed(wire)
    assert resumed_listing.isdisjoint(synced_before)
    assert resumed_listing | synced_before == {*accounts, "123456789012"}
    assert len(first) >= 2  # the crashed run's threads may have listed one more it never wrote
    run.refresh_from_db()
    assert (run.status, run.resumed, run.accounts_done) == (CatalogSyncStatus.FINISHED, 1, 6)
    assert result["run"]["resumed"] == 1
    assert AwsAccount.objects.filter(last_synced_at__isnull=True).count() == 0
    assert wire.count("ListRoots") == 0  # the organization phase was done before the crash


def test_resume_takes_over_a_sync_whose_process_is_known_to_be_gone(org, wire, settings):
    settings.GATEHOUSE_CATALOG_WRITE_BATCH = 1
    org.account("team", org.dev)

    def crash(run: CatalogSyncRun) -> None:
        if run.accounts_done == 1:
            raise Crash

    with pytest.raises(Crash):
        catalog_sync(mode=FULL, progress=crash)
    result = catalog_sync(mode=FULL, resume=True)
    assert result["run"]["resumed"] == 1 and not result["errors"]
    assert CatalogSyncRun.objects.get().status == CatalogSyncStatus.FINISHED


def test_progress_shows_in_healthz_and_the_admin(org, wire, client, settings):
    settings.GATEHOUSE_CATALOG_WRITE_BATCH = 1
    org.account("team", org.dev)

    def crash(run: CatalogSyncRun) -> None:
        if run.accounts_done == 1:
            raise Crash

    with pytest.raises(Crash):
        catalog_sync(mode=FULL, progress=crash)
    body = client.get("/healthz").json()["catalog"]
    assert (body["status"], body["phase"], body["accounts_done"], body["accounts_total"]) == (
        "running",
        "accounts",
        1,
        2,
    )
    admin = make_user("root", "admins", is_staff=True, is_superuser=True)
    sign_in_with_mfa(client, admin)
    page = client.get("/admin/accessrequests/catalogsyncrun/")
    assert page.status_code == 200 and "1 of 2 accounts" in page.content.decode()


def test_listings_run_with_bounded_concurrency(org, wire, settings):
    for i in range(6):
        org.account(f"team-{i}", org.dev)
    settings.GATEHOUSE_CATALOG_CONCURRENCY = 1
    one = catalog_sync(mode=FULL)
    settings.GATEHOUSE_CATALOG_CONCURRENCY = 4
    four = catalog_sync(mode=FULL)
    assert one["run"]["listed"] == four["run"]["listed"] == 7
    assert not one["errors"] and not four["errors"]


def test_an_incremental_sync_reads_tags_only_of_the_accounts_it_lists(org, wire):
    org.account("payments-prod", org.prod)
    catalog_sync(mode=FULL)
    wire.clear()

    assert catalog_sync(mode=INCREMENTAL)["run"]["listed"] == 0
    assert wire.count("ListTagsForResource") == 0  # no extra call for accounts it does not list

    joined = org.account("ledger-prod", org.prod)
    org.org.tag_resource(ResourceId=joined, Tags=[{"Key": "environment", "Value": "prod"}])
    catalog_sync(mode=INCREMENTAL)

    assert wire.count("ListTagsForResource") == 1
    account = AwsAccount.objects.get(account_id=joined)
    assert (account.tags, account.environment) == ({"environment": "prod"}, "production")


def test_rules_written_first_route_accounts_that_join_later_by_what_they_are_and_fail_closed(org, wire):
    """Rules by environment and by unit, written before the accounts exist; the accounts then join the
    organization, and after the next sync each request routes by what its account is. The untagged newcomer is
    refused with the reason and the fix, never routed by the one-approval catch-all."""
    from django.contrib.auth.models import Group

    from accessrequests.models import ApprovalRule, RequestKind
    from accessrequests.workflow.requests import RequestError
    from tests.factories import World, make_pipeline, make_principal

    catalog_sync(mode=FULL)  # the organization before: its units, no member account yet
    world = World()
    world.rule.delete()
    approvers = Group.objects.get(name="approvers")
    written = {}
    for name, priority, approvals, scope in (
        ("Production", 10, 2, {"environments": ["production"]}),
        ("Prod unit", 20, 2, {}),
        ("Everything else", 900, 1, {}),
    ):
        written[name] = ApprovalRule.objects.create(
            name=name, priority=priority, approvals_required=approvals, **scope
        )
        written[name].approver_groups.add(approvers)
    written["Prod unit"].units.add(OrganizationalUnit.objects.get(ou_id=org.prod))

    tagged = org.org.create_account(
        AccountName="ledger", Email="ledger@example.com", Tags=[{"Key": "environment", "Value": "production"}]
    )["CreateAccountStatus"]["AccountId"]
    in_unit = org.account("payments", org.prod)  # untagged, in the unit the rule names
    untagged = org.account("newcomer", org.dev)  # untagged, in a unit no rule names
    tooling = org.account("tooling", org.dev)
    org.org.tag_resource(ResourceId=tooling, Tags=[{"Key": "environment", "Value": "development"}])

    catalog_sync(mode=INCREMENTAL)

    def submit(account_id: str):
        account = AwsAccount.objects.get(account_id=account_id)
        return world.submit(
            principal=make_principal(account, users=[world.requester]),
            account=account,
            pipelines=[make_pipeline(account)],
            kind=RequestKind.PIPELINE,
        )

    production = submit(tagged)
    assert (production.rule.name, production.approvals_required) == ("Production", 2)
    unit = submit(in_unit)
    assert (unit.rule.name, unit.approvals_required) == ("Prod unit", 2)
    assert (
        submit(tooling).rule.name == "Everything else"
    )  # the catch-all covers accounts of known environment
    with pytest.raises(RequestError) as refused:
        submit(untagged)
    assert str(refused.value).startswith(
        f"Account newcomer ({untagged}) has no environment: tag it `environment=…` in Organizations"
    )
    assert "or ask a Gatehouse admin to set it" in str(refused.value)
    assert not written["Everything else"].requests.filter(account__account_id=untagged).exists()


# --- pipelines read again only when ListPipelines shows them changed ---


class Pipelines:
    """Three pipelines (svc-00..02, tagged team-0..2) in one member account, changed on moto as a person would."""

    def __init__(self, org: Org) -> None:
        from accessrequests.devworld import scale_world

        self.account_id = org.account("builds", org.dev)
        scale_world._fill_account(self.account_id, 3, "us-east-1")
        self.codepipeline = scale_world._in_account("codepipeline", self.account_id, "us-east-1")
        self.iam = scale_world._in_account("iam", self.account_id)

    def arn(self, name: str) -> str:
        return f"arn:aws:codepipeline:us-east-1:{self.account_id}:{name}"

    def row(self, name: str):
        from accessrequests.models import Pipeline

        return Pipeline.objects.get(account__account_id=self.account_id, name=name)

    def tag(self, name: str, **tags: str) -> None:
        self.codepipeline.tag_resource(
            resourceArn=self.arn(name), tags=[{"key": k, "value": v} for k, v in tags.items()]
        )


@pytest.fixture
def pipelines(org) -> Pipelines:
    return Pipelines(org)


def _read_in_full(wire: CountingProxy) -> tuple[set[str], set[str]]:
    """The pipelines the last sync read in full: GetPipeline by name, their tags by ARN (the organization's
    ListTagsForResource names an account id instead)."""
    tags = {name for name in wire.names("ListTagsForResource") if name.startswith("arn:")}
    return set(wire.names("GetPipeline")), tags


def test_a_full_sync_reads_again_only_the_pipeline_whose_listing_changed(org, wire, pipelines):
    first = catalog_sync(mode=FULL)
    assert _read_in_full(wire) == (
        {"svc-00-deploy", "svc-01-deploy", "svc-02-deploy"},
        {pipelines.arn(f"svc-0{i}-deploy") for i in range(3)},
    )
    assert first["pipelines"] | {"gone": 0} == {"seen": 3, "created": 3, "updated": 0, "gone": 0, "read": 3}
    assert pipelines.row("svc-01-deploy").listed_as

    # svc-01 gets another service role, a third stage and a new tag: UpdatePipeline moves its version and time.
    pipelines.iam.create_role(
        RoleName="ReleaseRole",
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "codepipeline.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )
    declaration = pipelines.codepipeline.get_pipeline(name="svc-01-deploy")["pipeline"]
    declaration["roleArn"] = f"arn:aws:iam::{pipelines.account_id}:role/ReleaseRole"
    declaration["stages"].append(
        {
            "name": "Deploy",
            "actions": [
                {
                    "name": "Ship",
                    "actionTypeId": {"category": "Deploy", "owner": "AWS", "provider": "S3", "version": "1"},
                    "configuration": {"BucketName": "b", "Extract": "true"},
                    "inputArtifacts": [{"name": "src"}],
                }
            ],
        }
    )
    pipelines.codepipeline.update_pipeline(pipeline=declaration)
    pipelines.tag("svc-01-deploy", owner="release")
    wire.clear()

    second = catalog_sync(mode=FULL)

    assert _read_in_full(wire) == ({"svc-01-deploy"}, {pipelines.arn("svc-01-deploy")})
    assert wire.count("ListPipelines") == 2  # the member account and the hub: each still listed
    assert second["pipelines"] == {"seen": 3, "created": 0, "updated": 1, "gone": 0, "read": 1}
    changed = pipelines.row("svc-01-deploy")
    assert changed.role_arn.endswith(":role/ReleaseRole")
    assert [stage["name"] for stage in changed.stages] == ["Source", "Approve", "Deploy"]
    assert changed.stages[-1]["actions"] == [{"name": "Ship", "category": "Deploy"}]
    assert changed.tags == {"team": "team-1", "owner": "release"}
    kept = pipelines.row("svc-00-deploy")
    assert (kept.present, kept.tags, kept.role_arn.endswith(":role/CodePipelineServiceRole")) == (
        True,
        {"team": "team-0"},
        True,
    )
    assert kept.last_seen_at >= changed.read_at  # seen by this sync, though not read again

    # Nothing changed: the account is listed, no pipeline is read.
    wire.clear()
    third = catalog_sync(mode=FULL)
    assert _read_in_full(wire) == (set(), set())
    assert third["pipelines"] == {"seen": 3, "created": 0, "updated": 0, "gone": 0, "read": 0}


def test_a_deleted_pipeline_is_marked_gone_without_reading_the_others(org, wire, pipelines):
    catalog_sync(mode=FULL)
    pipelines.codepipeline.delete_pipeline(name="svc-02-deploy")
    wire.clear()

    result = catalog_sync(mode=FULL)

    assert _read_in_full(wire) == (set(), set())
    assert result["pipelines"] == {"seen": 2, "created": 0, "updated": 0, "gone": 1, "read": 0}
    assert not pipelines.row("svc-02-deploy").present
    assert pipelines.row("svc-00-deploy").present and pipelines.row("svc-01-deploy").present


def test_a_pipeline_created_again_under_its_name_is_read_again(org, wire, pipelines):
    catalog_sync(mode=FULL)
    declaration = pipelines.codepipeline.get_pipeline(name="svc-00-deploy")["pipeline"]
    pipelines.codepipeline.delete_pipeline(name="svc-00-deploy")
    declaration["stages"][1]["name"] = "Review"
    pipelines.codepipeline.create_pipeline(pipeline=declaration, tags=[{"key": "team", "value": "web"}])
    wire.clear()

    catalog_sync(mode=FULL)

    assert _read_in_full(wire) == ({"svc-00-deploy"}, {pipelines.arn("svc-00-deploy")})
    again = pipelines.row("svc-00-deploy")
    assert ([s["name"] for s in again.stages], again.tags) == (["Source", "Review"], {"team": "web"})


def test_a_tag_change_alone_shows_once_the_reading_is_older_than_the_refresh_period(
    org, wire, pipelines, settings
):
    from accessrequests.models import Pipeline

    catalog_sync(mode=FULL)
    pipelines.tag(
        "svc-02-deploy", owner="data"
    )  # tagging leaves ListPipelines' version and time as they were
    wire.clear()
    catalog_sync(mode=FULL)
    assert _read_in_full(wire) == (set(), set())
    assert pipelines.row("svc-02-deploy").tags == {"team": "team-2"}

    Pipeline.objects.filter(pk=pipelines.row("svc-02-deploy").pk).update(
        read_at=timezone.now() - timedelta(hours=settings.GATEHOUSE_CATALOG_PIPELINE_REFRESH_HOURS, minutes=1)
    )
    wire.clear()
    catalog_sync(mode=FULL)

    assert _read_in_full(wire) == ({"svc-02-deploy"}, {pipelines.arn("svc-02-deploy")})
    assert pipelines.row("svc-02-deploy").tags == {"team": "team-2", "owner": "data"}


def test_read_all_reads_every_pipeline_in_full(org, wire, pipelines):
    from django.core.management import call_command

    catalog_sync(mode=FULL)
    pipelines.tag("svc-00-deploy", owner="platform")
    wire.clear()

    call_command("sync_catalog", "--read-all", stdout=io.StringIO())

    names, tags = _read_in_full(wire)
    assert names >= {"svc-00-deploy", "svc-01-deploy", "svc-02-deploy"}
    assert tags >= {pipelines.arn(f"svc-0{i}-deploy") for i in range(3)}
    assert pipelines.row("svc-00-deploy").tags == {"team": "team-0", "owner": "platform"}


def test_an_incremental_sync_of_an_overdue_account_reads_only_what_changed(org, wire, pipelines, settings):
    from accessrequests.models import Pipeline

    catalog_sync(mode=FULL)
    # A day later the account is overdue for its relisting; its pipelines were read in full as long ago.
    day_ago = timezone.now() - timedelta(hours=settings.GATEHOUSE_CATALOG_RELIST_HOURS + 1)
    AwsAccount.objects.filter(account_id=pipelines.account_id).update(last_synced_at=day_ago)
    Pipeline.objects.filter(account__account_id=pipelines.account_id).update(read_at=day_ago)
    pipelines.codepipeline.update_pipeline(
        pipeline=pipelines.codepipeline.get_pipeline(name="svc-02-deploy")["pipeline"]
    )
    wire.clear()

    result = catalog_sync(mode=INCREMENTAL)

    assert _listed(wire) == {pipelines.account_id}
    assert _read_in_full(wire) == ({"svc-02-deploy"}, {pipelines.arn("svc-02-deploy")})
    assert result["pipelines"]["read"] == 1


def test_a_batch_of_accounts_is_written_in_as_many_queries_as_one(org, wire, settings):
    """The write of listed accounts takes the same queries for one account as for six (one transaction)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accessrequests.catalog.listings import read_account
    from accessrequests.catalog.sync import _write_batch
    from accessrequests.devworld import scale_world

    ids = [org.account(f"team-{i}", org.dev) for i in range(6)]
    for account_id in ids:
        scale_world._fill_account(account_id, 2, "us-east-1")
    catalog_sync(mode=FULL)  # the rows exist; what follows is the steady state of a full sync
    run = CatalogSyncRun.objects.get()
    accounts = list(AwsAccount.objects.filter(account_id__in=ids).order_by("account_id"))
    reads = [(account, read_account(account, ["us-east-1"])) for account in accounts]
    assert all(not read.errors and read.tags is not None for _, read in reads)

    queries = []
    for listed in (reads[:1], reads):
        with CaptureQueriesContext(connection) as captured:
            _write_batch(run, listed, ["us-east-1"], {})
        queries.append(len(captured))
    assert queries[0] == queries[1]
    assert AwsAccount.objects.filter(account_id__in=ids, sync_error="").count() == 6
