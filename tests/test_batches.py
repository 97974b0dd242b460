"""Multi-account requests: one request for the same access in several accounts, each account routed by its own
rule, decided together, applied as one grant per account, each revocable on its own."""

from __future__ import annotations

import boto3
import pytest

from accessrequests.authz.permissions import NotAllowed
from accessrequests.models import (
    AccessRequest,
    ApprovalRule,
    AwsAccount,
    Environment,
    Grant,
    GrantStatus,
    PermissionSet,
    RequestKind,
    RequestStatus,
)
from accessrequests.provisioning import engine as provisioning
from accessrequests.workflow.batches import batch_approve, batch_submit
from accessrequests.workflow.requests import RequestError
from tests.conftest import make_user
from tests.factories import fresh_factor
from tests.provisioning_support import REGION, PortalWorld, reconcile, status_of

pytestmark = [pytest.mark.moto, pytest.mark.django_db]


@pytest.fixture
def world(demo_world):
    world = PortalWorld(demo_world)
    world.production = AwsAccount.objects.get(environment=Environment.PRODUCTION)
    world.production_rule = ApprovalRule.objects.create(
        name="Production", priority=1, approvals_required=2, max_duration_hours=4
    )
    world.production_rule.accounts.add(world.production)
    world.production_rule.approver_users.add(world.approver)
    world.approver2 = make_user("approver2", "approvers")
    world.production_rule.approver_users.add(world.approver2)
    return world


def _ask_read_only(world):
    return world.draft(
        "paulo.santos",
        kind=RequestKind.PERMISSION_SET,
        permission_set=PermissionSet.objects.get(name="CodePipelineReadOnly"),
        pipelines=[],
        level="",
        duration_hours=4,
    )


def _holders(world, aws, account_id: str) -> set[str]:
    sso = boto3.client("sso-admin", region_name=REGION, endpoint_url=aws)
    found = sso.list_account_assignments(
        InstanceArn=world.seeded["identity_center"]["instance_arn"],
        AccountId=account_id,
        PermissionSetArn=PermissionSet.objects.get(name="CodePipelineReadOnly").arn,
    )["AccountAssignments"]
    return {a["PrincipalId"] for a in found}


def test_a_production_account_in_the_batch_needs_the_production_rules_approvals(world, aws):
    batch = batch_submit(
        requester=world.requester, draft=_ask_read_only(world), accounts=[world.account, world.production]
    )
    sandbox, production = batch.members.order_by("pk")
    assert (sandbox.rule, production.rule) == (world.rule, world.production_rule)
    assert production.approvals_required == 2
    first = batch_approve(
        batch_id=batch.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    assert {r.reference for r in first.decided} == {sandbox.reference, production.reference}
    sandbox.refresh_from_db(), production.refresh_from_db()
    assert sandbox.status == RequestStatus.APPROVED and production.status == RequestStatus.PENDING
    assert production.approval_progress().startswith(
        "1 of 2 approvals (approver) · waiting for one more from Production"
    )
    second = batch_approve(
        batch_id=batch.pk, reviewer=world.approver2, second_factor=fresh_factor(world.approver2)
    )
    assert [r.reference for r in second.decided] == [production.reference]
    production.refresh_from_db()
    assert production.status == RequestStatus.APPROVED


def test_each_account_gets_its_own_grant_and_revoking_one_leaves_the_others(world, aws):
    world.production_rule.approvals_required = 1
    world.production_rule.save()
    batch = batch_submit(
        requester=world.requester, draft=_ask_read_only(world), accounts=[world.account, world.production]
    )
    batch_approve(batch_id=batch.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    grants = list(Grant.objects.filter(request__batch=batch).order_by("pk"))
    assert len(grants) == 2 and {g.account for g in grants} == {world.account, world.production}
    for grant in grants:
        reconcile(grant)
        assert status_of(grant) == GrantStatus.ACTIVE, grant.last_error
    paulo = world.principal("paulo.santos").external_id
    assert paulo in _holders(world, aws, world.account.account_id)
    assert paulo in _holders(world, aws, world.production.account_id)
    provisioning.grant_revoke(grant_id=grants[1].pk, actor=world.requester)
    reconcile(grants[1])
    assert status_of(grants[1]) == GrantStatus.REVOKED and status_of(grants[0]) == GrantStatus.ACTIVE
    assert paulo not in _holders(world, aws, world.production.account_id)
    assert paulo in _holders(world, aws, world.account.account_id)


def test_a_batch_is_filed_whole_or_not_at_all_and_says_which_account_refused(world, aws):
    lonely = AwsAccount.objects.create(
        account_id="333333333333", name="no-rules", environment=Environment.SANDBOX
    )
    with pytest.raises(RequestError, match=r"In account no-rules .*No approval rule covers"):
        batch_submit(requester=world.requester, draft=_ask_read_only(world), accounts=[world.account, lonely])
    assert not AccessRequest.objects.exists()


def test_an_iam_principal_cannot_be_asked_for_in_several_accounts(world, aws):
    with pytest.raises(RequestError, match="Identity Center user or group"):
        batch_submit(
            requester=world.requester,
            draft=world.draft("mateojackson"),
            accounts=[world.account, world.production],
        )


def test_a_reviewer_who_may_decide_none_of_it_is_told_why(world, aws):
    batch = batch_submit(
        requester=world.requester, draft=_ask_read_only(world), accounts=[world.account, world.production]
    )
    outsider = make_user("outsider", "release-managers")
    with pytest.raises(NotAllowed, match="You can decide none of this request's accounts"):
        batch_approve(batch_id=batch.pk, reviewer=outsider, second_factor=fresh_factor(outsider))
    assert all(m.status == RequestStatus.PENDING for m in batch.members.all())


def test_the_form_files_a_batch_and_its_page_decides_it(world, aws, client):
    from django.urls import reverse

    from accessrequests.models import Source
    from tests.conftest import enable_totp, sign_in_with_mfa

    paulo = world.principal("paulo.santos")
    read_only = PermissionSet.objects.get(name="CodePipelineReadOnly")
    client.force_login(world.requester)
    data = {
        "kind": "permission_set", "account": world.account.pk, "shown_account": world.account.pk,
        "principal": paulo.pk, "permission_set": read_only.pk, "duration_hours": 2, "source": Source.FORM,
        "also_accounts": world.production.account_id, "justification": "migration in both accounts",
    }  # fmt: skip
    preview = client.post(reverse("new_request"), {**data, "intent": "preview"}).content.decode()
    assert (
        'data-testid="preview-members"' in preview
        and "rule <strong>Production</strong>, 2 approvals" in preview
    )
    filed = client.post(reverse("new_request"), {**data, "intent": "submit"})
    assert filed.status_code == 302
    batch_url = filed["Location"]
    page = client.get(batch_url).content.decode()
    assert page.count('data-testid="row-action"') == 2
    enable_totp(world.approver)
    sign_in_with_mfa(client, world.approver)
    decided = client.post(batch_url, {"decision": "approve", "comment": "ok"}, follow=True).content.decode()
    assert "Decided GH-" in decided
    assert sorted(AccessRequest.objects.values_list("status", flat=True)) == ["approved", "pending"]
