"""Eligibility: who may ask for which access. Someone an eligibility rule leaves out cannot file it (the web form,
the API, a pasted error, a multi-account request) and is told which rule and whom it allows; the form offers only
what they may ask for. Without eligibility rules everyone may ask for everything, as before."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from accessrequests.authz import permissions
from accessrequests.authz.permissions import NotAllowed
from accessrequests.models import (
    AccessRequest,
    ApiToken,
    ApprovalRule,
    EligibilityRule,
    RequestBatch,
    RequestKind,
    Source,
)
from accessrequests.workflow.batches import batch_submit
from accessrequests.workflow.requests import request_approve, request_submit
from tests.conftest import make_user
from tests.factories import fresh_factor, make_token
from tests.rules_support import Org

pytestmark = pytest.mark.django_db

MATEO = (
    "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
    "codepipeline:GetPipeline on resource: my-pipeline"
)
ADMIN_REFUSAL = (
    "You are not eligible to request the permission set AdministratorAccess on sandbox (123456789012): the "
    "eligibility rule “Administrator access” allows only members of sre (Admin-equivalent access is for the site "
    "reliability team). Ask a Gatehouse admin if you need it."
)


def eligibility(
    name: str, *, groups=(), users=(), accounts=(), permission_sets=(), **fields
) -> EligibilityRule:
    rule = EligibilityRule.objects.create(name=name, **fields)
    rule.groups.set([Group.objects.get_or_create(name=g)[0] for g in groups])
    rule.users.set(users)
    rule.accounts.set(accounts)
    rule.permission_sets.set(permission_sets)
    return rule


@pytest.fixture
def org():
    org = Org()
    org.prod_rule = ApprovalRule.objects.create(name="Production", priority=1, approvals_required=2)
    org.prod_rule.accounts.add(org.production)
    org.prod_rule.approver_groups.add(Group.objects.get(name="approvers"))
    org.sre = make_user("sre-member", "requesters", "sre")
    org.ic_sre = org.ic_user.__class__.objects.create(
        kind=org.ic_user.kind,
        name="ic-sre",
        external_id="90000000-0000-0000-0000-000000000002",
        identity_center=org.identity_center,
    )
    org.ic_sre.users.add(org.sre)
    eligibility(
        "Administrator access",
        groups=["sre"],
        permission_sets=[org.admin_set],
        description="Admin-equivalent access is for the site reliability team.",
    )
    return org


def permission_set_draft(org, permission_set, principal=None, account=None):
    return org.draft(
        principal=principal or org.ic_user,
        kind=RequestKind.PERMISSION_SET,
        account=account or org.account,
        pipelines=[],
        level="",
        permission_set=permission_set,
    )


def test_without_eligibility_rules_everyone_may_request_everything(org):
    EligibilityRule.objects.all().delete()
    req = request_submit(requester=org.requester, draft=permission_set_draft(org, org.admin_set))
    assert req.permission_set == org.admin_set


def test_the_filing_service_refuses_someone_outside_the_rule_and_names_it(org):
    with pytest.raises(NotAllowed) as refused:
        request_submit(requester=org.requester, draft=permission_set_draft(org, org.admin_set))
    assert str(refused.value) == ADMIN_REFUSAL
    assert not AccessRequest.objects.exists()
    # Per permission set, not per account: another set on the same account is open to them.
    assert request_submit(requester=org.requester, draft=permission_set_draft(org, org.read_set))
    # A member of the group may ask for it.
    allowed = request_submit(requester=org.sre, draft=permission_set_draft(org, org.admin_set, org.ic_sre))
    assert allowed.permission_set == org.admin_set


def test_a_request_filed_before_a_rule_tightened_cannot_be_approved_after(org):
    req = request_submit(requester=org.requester, draft=permission_set_draft(org, org.read_set))
    eligibility("Read-only sets", groups=["sre"], permission_sets=[org.read_set])
    with pytest.raises(
        NotAllowed, match=r"requester is no longer eligible .* “Read-only sets” allows only members"
    ):
        request_approve(request_id=req.pk, reviewer=org.approver, second_factor=fresh_factor(org.approver))
    req.refresh_from_db()
    assert req.status == "pending" and not req.decisions.exists()


def test_an_admin_cannot_file_for_someone_a_rule_leaves_out(org):
    # Four-eyes guards eligibility rules; filing on someone's behalf must not be a way around them. The rule
    # binds whoever asks and whoever receives: this admin may ask (in sre), the requester may not receive.
    boss = make_user("boss", "admins", "sre")
    with pytest.raises(
        NotAllowed, match=r"would reach requester, who is not eligible .* “Administrator access”"
    ):
        request_submit(requester=boss, draft=permission_set_draft(org, org.admin_set))
    assert not AccessRequest.objects.exists()
    # For a member of the group the rule names, the admin may.
    filed = request_submit(requester=boss, draft=permission_set_draft(org, org.admin_set, org.ic_sre))
    assert filed.on_behalf


def test_eligibility_rules_add_up_as_restrictions(org):
    eligibility("Production", groups=["release-managers"], accounts=[org.production])
    # In sre, so the administrator rule lets them, but the production rule covers this too and does not.
    with pytest.raises(
        NotAllowed, match="the eligibility rule “Production” allows only members of release-managers"
    ):
        request_submit(
            requester=org.sre,
            draft=permission_set_draft(org, org.admin_set, org.ic_sre, account=org.production),
        )
    org.sre.groups.add(Group.objects.get(name="release-managers"))
    org.sre = type(org.sre).objects.get(pk=org.sre.pk)  # a fresh user: group memberships are read per request
    assert request_submit(
        requester=org.sre, draft=permission_set_draft(org, org.admin_set, org.ic_sre, account=org.production)
    )


def test_a_rule_may_name_people_as_well_as_groups_and_kinds_as_well_as_sets(org):
    eligibility("Pass roles", users=[org.other_requester], kinds=[RequestKind.PASS_ROLE])
    draft = org.draft(kind=RequestKind.PASS_ROLE, pipelines=[], level="", pass_role=org.role)
    with pytest.raises(NotAllowed, match="allows only other"):
        request_submit(requester=org.requester, draft=draft)
    assert permissions.can_request(org.other_requester, kind=RequestKind.PASS_ROLE, account=org.account)
    # Pipeline access is outside that rule's scope.
    assert request_submit(requester=org.requester, draft=org.draft())


def form(org, **overrides) -> dict:
    data = {
        "kind": "permission_set", "account": org.account.pk, "shown_account": org.account.pk,
        "principal": org.ic_user.pk, "permission_set": org.admin_set.pk, "duration_hours": 4,
        "justification": "Debugging a failed deploy", "source": Source.FORM, "intent": "submit",
    }  # fmt: skip
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_web_form_offers_only_eligible_choices_and_refuses_the_others_with_the_reason(client, org):
    eligibility("Production", groups=["release-managers"], accounts=[org.production])
    client.force_login(org.requester)
    page = client.get(reverse("new_request"), {"account": org.account.pk, "kind": "permission_set"})
    html = page.content.decode()
    assert f'value="{org.read_set.pk}"' in html and "ReadOnlyAccess" in html
    assert "AdministratorAccess" not in html
    accounts = html.split('name="account"', 1)[1].split("</select>", 1)[0]
    assert "production" not in accounts and "sandbox" in accounts
    refused = client.post(reverse("new_request"), form(org))
    assert refused.status_code == 400
    assert ADMIN_REFUSAL.replace("“", "&ldquo;").replace("”", "&rdquo;") in refused.content.decode() or (
        "the eligibility rule “Administrator access” allows only members of sre" in refused.content.decode()
    )
    assert not AccessRequest.objects.exists()
    filed = client.post(reverse("new_request"), form(org, permission_set=org.read_set.pk))
    assert filed.status_code == 302 and AccessRequest.objects.get().permission_set == org.read_set


def api_post(client, user, body):
    _, raw = make_token(user, f"tests-{ApiToken.objects.count()}")
    return client.post(
        "/api/v1/requests/", body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )


def test_the_api_refuses_with_the_reason(client, org):
    body = {
        "kind": "permission_set",
        "account": org.account.account_id,
        "principal": org.ic_user.pk,
        "permission_set": org.admin_set.arn,
        "justification": "Debugging a failed deploy",
        "duration_hours": 4,
    }
    response = api_post(client, org.requester, body)
    assert response.status_code == 403
    assert response.json()["error"] == ADMIN_REFUSAL
    assert not AccessRequest.objects.exists()
    assert api_post(client, org.requester, {**body, "permission_set": org.read_set.arn}).status_code == 201


def test_a_pasted_error_is_refused_with_the_reason_on_the_web_and_in_the_api(client, org):
    eligibility("Sandbox pipelines", groups=["sre"], accounts=[org.account], kinds=[RequestKind.PIPELINE])
    reason = "the eligibility rule “Sandbox pipelines” allows only members of sre"
    client.force_login(org.requester)
    page = client.post(reverse("paste_error"), {"message": MATEO}).content.decode()
    assert "You are not eligible to request pipeline actions on sandbox (123456789012)" in page
    assert "Sandbox pipelines" in page and "allows only members of sre" in page
    _, raw = make_token(org.requester, "intake")
    intake = client.post(
        "/api/v1/intake/",
        {"message": MATEO},
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    ).json()
    assert reason in intake["error"] and intake["proposed_request"] is None
    response = api_post(
        client, org.requester, {"message": MATEO, "justification": "release", "duration_hours": 2}
    )
    assert response.status_code == 403 and reason in response.json()["error"]
    assert not AccessRequest.objects.exists()


def test_a_multi_account_request_is_refused_whole_naming_the_account_and_the_rule(client, org):
    eligibility("Production", groups=["release-managers"], accounts=[org.production])
    draft = org.draft(principal=org.ic_user, pipelines=[org.pipeline])
    with pytest.raises(NotAllowed) as refused:
        batch_submit(requester=org.requester, draft=draft, accounts=[org.account, org.production])
    assert str(refused.value).startswith(
        "In account production (111122223333): You are not eligible to request pipeline actions on production "
        "(111122223333): the eligibility rule “Production” allows only members of release-managers."
    )
    assert not AccessRequest.objects.exists() and not RequestBatch.objects.exists()
    client.force_login(org.requester)
    page = client.post(
        reverse("new_request"),
        {
            "kind": "pipeline",
            "account": org.account.pk,
            "shown_account": org.account.pk,
            "principal": org.ic_user.pk,
            "pipelines": [org.pipeline.pk],
            "level": "viewer",
            "duration_hours": 4,
            "justification": "release",
            "also_accounts": org.production.account_id,
            "intent": "submit",
            "source": Source.FORM,
        },
    )
    assert page.status_code == 400
    assert "In account production (111122223333): You are not eligible" in page.content.decode()
    assert not AccessRequest.objects.exists()
