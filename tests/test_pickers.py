"""The pickers' search (/catalog/search/) and the form fields that use it: only what the user may choose, by
name, id or organizational unit, a page at a time; JSON for the combobox, a plain page without JavaScript; bad
input and outsiders' input get a clear message, never a 500. And a multi-account request naming a whole unit."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accessrequests.models import (
    AccessRequest,
    ApprovalRule,
    AwsAccount,
    IdentityCenter,
    OrganizationalUnit,
    Principal,
    PrincipalKind,
    RequestBatch,
    RequestKind,
)
from accessrequests.workflow.batches import MAX_ACCOUNTS, batch_submit
from accessrequests.workflow.requests import RequestError
from tests.conftest import make_user
from tests.factories import World, make_account, make_pipeline

pytestmark = pytest.mark.django_db


def unit(ou_id: str, path: str, parent=None) -> OrganizationalUnit:
    return OrganizationalUnit.objects.create(
        ou_id=ou_id, name=path.rsplit(" / ", 1)[-1], path=path, parent=parent
    )


@pytest.fixture
def org(db):
    world = World()
    root = unit("r-root", "Root")
    workloads = unit("ou-work", "Root / Workloads", root)
    prod = unit("ou-prod", "Root / Workloads / Prod", workloads)
    dev = unit("ou-dev", "Root / Workloads / Dev", workloads)
    world.units = {"root": root, "workloads": workloads, "prod": prod, "dev": dev}
    world.account.ou = dev
    world.account.save()
    world.payments = make_account("210000000001", "payments-prod")
    world.ledger = make_account("210000000002", "ledger-prod")
    world.sandbox2 = make_account("210000000003", "sandbox-two")
    AwsAccount.objects.filter(pk__in=[world.payments.pk, world.ledger.pk]).update(ou=prod)
    AwsAccount.objects.filter(pk=world.sandbox2.pk).update(ou=dev)
    world.gone = make_account("210000000009", "gone-prod")
    AwsAccount.objects.filter(pk=world.gone.pk).update(ou=prod, present=False)
    world.rule.accounts.add(world.payments, world.ledger, world.sandbox2)
    # An Identity Center user reaches every account; the requester's IAM user only its own.
    world.ic_person = make_user("icperson", "requesters")
    center = IdentityCenter.objects.create(
        instance_arn="arn:aws:sso:::instance/ssoins-1", identity_store_id="d-1", region="us-east-1"
    )
    world.ic_principal = Principal.objects.create(
        kind=PrincipalKind.IC_USER,
        external_id="u-1234",
        name="icperson",
        display_name="IC Person",
        identity_center=center,
    )
    world.ic_principal.users.add(world.ic_person)
    return world


def search(client, **params):
    return client.get(reverse("catalog_search"), {"format": "json", **params})


def values(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [item["value"] for item in response.json()["results"]]


def test_a_requester_is_offered_only_the_accounts_their_principals_reach(client, org):
    client.force_login(org.requester)
    assert values(search(client, kind="account")) == ["123456789012"]
    client.force_login(org.ic_person)
    assert values(search(client, kind="account")) == [
        "210000000002",
        "210000000001",
        "123456789012",
        "210000000003",
    ]


def test_accounts_that_left_the_organization_or_are_disabled_are_never_offered(client, org):
    AwsAccount.objects.filter(pk=org.ledger.pk).update(enabled=False)
    client.force_login(org.ic_person)
    offered = values(search(client, kind="account", q="prod"))
    assert offered == ["210000000001"]  # not ledger (disabled), not gone-prod (left)


def test_search_by_name_fragment_or_id_prefix(client, org):
    client.force_login(org.ic_person)
    assert values(search(client, kind="account", q="LEDG")) == ["210000000002"]
    assert values(search(client, kind="account", q="21000000000")) == [
        "210000000002",
        "210000000001",
        "210000000003",
    ]
    body = search(client, kind="account", q="payments").json()["results"][0]
    assert body == {
        "value": "210000000001",
        "label": "payments-prod (210000000001)",
        "detail": "Root / Workloads / Prod",
    }


def test_the_unit_filter_takes_the_unit_and_the_units_below_it(client, org):
    client.force_login(org.ic_person)
    assert values(search(client, kind="account", ou="ou-prod")) == ["210000000002", "210000000001"]
    assert len(values(search(client, kind="account", ou="ou-work"))) == 4
    assert values(search(client, kind="ou", q="prod")) == ["ou-prod"]
    assert values(search(client, kind="ou", ou="ou-work")) == ["ou-dev", "ou-prod"]


def test_units_offered_to_a_requester_are_those_holding_their_accounts(client, org):
    client.force_login(org.requester)
    assert values(search(client, kind="ou")) == ["r-root", "ou-work", "ou-dev"]


def test_pipelines_are_searched_within_an_account_the_user_may_use(client, org):
    make_pipeline(org.payments, "payments-deploy")
    client.force_login(org.ic_person)
    found = search(client, kind="pipeline", account="210000000001").json()["results"]
    assert [p["label"] for p in found] == ["payments-deploy"]
    client.force_login(org.requester)
    refused = search(client, kind="pipeline", account="210000000001")
    assert (
        refused.status_code == 400
        and "cannot choose pipelines in account 210000000001" in refused.json()["error"]
    )


def test_results_come_a_page_at_a_time_by_keyset(client, org):
    for i in range(25):
        make_account(f"3100000000{i:02d}", f"bulk-{i:02d}")
    client.force_login(org.ic_person)
    first = search(client, kind="account", q="bulk").json()
    assert len(first["results"]) == 20 and first["next"]
    second = search(client, kind="account", q="bulk", after=first["next"]).json()
    assert [r["value"] for r in second["results"]] == [f"3100000000{i:02d}" for i in range(20, 25)]
    assert second["next"] is None


def test_without_javascript_a_search_page_lists_results_with_choose_links(client, org):
    for i in range(25):
        make_account(f"3100000000{i:02d}", f"bulk-{i:02d}")
    client.force_login(org.ic_person)
    page = client.get(reverse("catalog_search"), {"kind": "account", "q": "bulk"})
    html = page.content.decode()
    assert page.status_code == 200 and 'data-testid="search-form"' in html
    assert html.count("Choose</a>") == 20
    assert f'href="{reverse("new_request")}?account=310000000000"' in html
    more = (
        html.split('data-testid="search-more"')[0].rsplit('href="', 1)[1].split('"')[0].replace("&amp;", "&")
    )
    assert client.get(more).content.decode().count("Choose</a>") == 5
    # The request form links to it, and a chosen account opens the form on its lists.
    form = client.get(reverse("new_request")).content.decode()
    assert 'data-testid="find-account"' in form and 'data-picker="account"' in form
    chosen = client.get(reverse("new_request"), {"account": "210000000001"}).content.decode()
    assert "payments-prod</span> (210000000001) · Root / Workloads / Prod" in chosen


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"kind": "everything"}, "Search for an account, an organizational unit (ou) or a pipeline."),
        ({"kind": "account", "ou": "ou-nope"}, "There is no organizational unit ou-nope"),
        ({"kind": "account", "ou": "x" * 500}, "not an organizational unit id"),
        ({"kind": "account", "q": "x" * 101}, "at most 100 characters"),
        ({"kind": "account", "after": "junk"}, "page link is not valid"),
        ({"kind": "account", "after": "a|99999999999999999999"}, "page link is not valid"),
        ({"kind": "pipeline", "account": "12ab"}, "12 digits"),
        ({"kind": "account", "scope": "root"}, "Unknown search scope"),
    ],
)
def test_bad_input_gets_a_clear_message(client, org, params, message):
    client.force_login(org.ic_person)
    as_json = search(client, **params)
    assert as_json.status_code == 400 and message in as_json.json()["error"]
    as_page = client.get(reverse("catalog_search"), params)
    assert as_page.status_code == 400 and message in as_page.content.decode()


def test_signed_out_visitors_are_sent_to_sign_in(client, org):
    assert client.get(reverse("catalog_search")).status_code == 302


def test_the_review_scope_offers_the_accounts_the_approvers_rules_cover(client, org):
    other = make_account("410000000001", "elsewhere")
    ApprovalRule.objects.create(name="Elsewhere", priority=5).accounts.add(other)
    client.force_login(org.approver)
    offered = values(search(client, kind="account", scope="review"))
    assert "410000000001" not in offered and "210000000001" in offered
    client.force_login(org.requester)  # no rules: nothing to review
    assert values(search(client, kind="account", scope="review")) == []


def test_the_queue_filter_takes_an_account_id_and_says_when_it_is_not_one(client, org):
    client.force_login(org.approver)
    page = client.get(reverse("queue"), {"account": "payments"})
    assert page.status_code == 200 and "An AWS account id is 12 digits" in page.content.decode()
    assert 'data-picker="account"' in page.content.decode()
    assert client.get(reverse("queue"), {"account": "210000000001"}).status_code == 200


def _form(world, **overrides):
    data = {
        "kind": "pipeline",
        "account": world.account.account_id,
        "shown_account": world.account.account_id,
        "principal": world.principal.pk,
        "pipelines": [world.pipeline.pk],
        "level": "viewer",
        "justification": "Debugging a failed deploy",
        "duration_hours": 4,
        "source": "form",
        "intent": "submit",
    }
    data.update(overrides)
    return data


def test_an_outsiders_account_gets_a_form_error_not_a_500(client, org):
    client.force_login(org.requester)
    response = client.post(reverse("new_request"), _form(org, account="210000000001"))
    assert response.status_code == 400
    assert "None of your principals can receive access in account 210000000001" in response.content.decode()
    gone = client.post(reverse("new_request"), _form(org, account="210000000009"))
    assert (
        gone.status_code == 400 and "(210000000009) is no longer in the organization" in gone.content.decode()
    )
    assert not AccessRequest.objects.exists()


def test_also_accounts_the_user_cannot_request_in_get_a_form_error(client, org):
    client.force_login(org.requester)
    response = client.post(reverse("new_request"), _form(org, also_accounts="210000000001 210000000009"))
    body = response.content.decode()
    assert response.status_code == 400
    assert "None of your principals can receive access in account 210000000001" in body
    assert "(210000000009) is no longer in the organization" in body
    bad_unit = client.post(reverse("new_request"), _form(org, also_ou="ou-missing"))
    assert (
        bad_unit.status_code == 400
        and "There is no organizational unit ou-missing" in bad_unit.content.decode()
    )


def _ic_draft(org):
    return org.draft(principal=org.ic_principal, kind=RequestKind.PIPELINE, pipelines=[], level="viewer")


def test_a_multi_account_request_for_a_unit_files_one_request_per_account_in_it(client, org):
    for account in (org.payments, org.ledger):
        make_pipeline(account, "my-pipeline")
    draft = _ic_draft(org)
    draft.pipelines = [org.pipeline]
    prod_rule = ApprovalRule.objects.create(name="Production", priority=1, approvals_required=2)
    prod_rule.accounts.add(org.ledger)

    batch = batch_submit(requester=org.ic_person, draft=draft, accounts=[org.account], unit=org.units["prod"])

    members = {m.account.account_id: m for m in batch.members.select_related("account", "rule")}
    # The unit's accounts still in the organization (not gone-prod), each under its own rule.
    assert set(members) == {"123456789012", "210000000001", "210000000002"}
    assert members["210000000002"].rule == prod_rule and members["210000000001"].rule == org.rule
    assert batch_event_unit(batch) == "ou-prod"


def batch_event_unit(batch: RequestBatch) -> str:
    from accessrequests.models import AuditEvent

    return AuditEvent.objects.get(action="batch.created", object_id=str(batch.pk)).after["unit"]


def test_a_unit_is_expanded_through_the_form_too(client, org):
    for account in (org.payments, org.ledger):
        make_pipeline(account, "my-pipeline")
    client.force_login(org.ic_person)
    preview = client.post(
        reverse("new_request"), _form(org, principal=org.ic_principal.pk, also_ou="ou-prod", intent="preview")
    )
    body = preview.content.decode()
    assert preview.status_code == 200, body[:3000]
    assert "In 3 accounts" in body and "payments-prod (210000000001)" in body
    filed = client.post(reverse("new_request"), _form(org, principal=org.ic_principal.pk, also_ou="ou-prod"))
    assert filed.status_code == 302
    assert AccessRequest.objects.filter(batch__isnull=False).count() == 3


def test_a_unit_too_large_for_one_request_is_refused_whole(org):
    for i in range(MAX_ACCOUNTS + 1):
        account = make_account(f"5100000000{i:02d}", f"many-{i:02d}")
        account.ou = org.units["dev"]
        account.save()
    with pytest.raises(RequestError, match="more than 50 accounts"):
        batch_submit(
            requester=org.ic_person, draft=_ic_draft(org), accounts=[org.account], unit=org.units["dev"]
        )
    assert not AccessRequest.objects.exists()


def test_the_services_refuse_an_account_that_left_or_that_the_requester_cannot_reach(org):
    from accessrequests.authz import permissions
    from accessrequests.authz.selectors import requestable_accounts

    make_pipeline(org.gone, "my-pipeline")
    AwsAccount.objects.filter(pk=org.gone.pk).update(present=False)
    org.gone.refresh_from_db()
    with pytest.raises((RequestError, permissions.NotAllowed), match="no longer in the organization"):
        org.submit(requester=org.ic_person, principal=org.ic_principal, account=org.gone, pipelines=[])
    draft = _ic_draft(org)
    draft.pipelines = [org.pipeline]
    make_pipeline(org.payments, "my-pipeline")
    with pytest.raises(permissions.NotAllowed, match="None of your principals"):
        batch_submit(requester=org.requester, draft=draft, accounts=[org.account, org.payments])
    # The pickers' query and the services' rule agree, account by account.
    for user in (org.requester, org.ic_person, org.approver):
        offered = set(requestable_accounts(user))
        for account in AwsAccount.objects.all():
            assert (account in offered) == (permissions.account_problem(user, account) is None)


def test_an_account_with_many_pipelines_offers_a_search_by_name_instead_of_checkboxes(client, org, settings):
    from accessrequests.views import forms as request_forms

    for i in range(request_forms.PIPELINE_CHECKBOXES + 1):
        make_pipeline(org.account, f"bulk-{i:03d}")
    client.force_login(org.requester)
    page = client.get(reverse("new_request"), {"account": org.account.account_id}).content.decode()
    assert 'name="pipeline_names"' in page and 'data-account="123456789012"' in page
    assert 'name="pipelines"' not in page and 'data-testid="find-pipeline"' in page
    found = search(client, kind="pipeline", account="123456789012", q="bulk-04").json()["results"]
    assert [p["label"] for p in found] == ["bulk-040"]

    preview = client.post(
        reverse("new_request"),
        _form(org, pipelines=[], pipeline_names="bulk-001, bulk-040", intent="preview"),
    )
    body = preview.content.decode()
    assert preview.status_code == 200, body[:2000]
    assert ":bulk-001" in body and ":bulk-040" in body
    wrong = client.post(reverse("new_request"), _form(org, pipelines=[], pipeline_names="bulk-001 nope"))
    assert wrong.status_code == 400 and "Account 123456789012 has no pipeline nope." in wrong.content.decode()
