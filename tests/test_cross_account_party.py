"""Cross-account access is for the outside party its role trusts, and only that party is asked for: the form has no
"who receives access" for it, the request is filed for that party (the page, the queue, the API and the audit
trail say so), naming both an outside account and an outside ARN is refused with a message that says both were
given, and a principal sent with it over the API is refused rather than shown as the one it is for."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accessrequests.authz.recipients import recipients_of
from accessrequests.models import AccessRequest, AuditEvent, Principal, PrincipalKind, RequestKind, Source
from accessrequests.workflow import drafts
from accessrequests.workflow.drafts import DraftError, DraftInput, build_draft
from accessrequests.workflow.requests import RequestError, request_submit
from tests.conftest import make_user
from tests.factories import World, make_account, make_principal
from tests.test_api import Api

pytestmark = pytest.mark.django_db

OUTSIDE = "210987654321"
DEPLOYER = f"arn:aws:iam::{OUTSIDE}:role/Deployer"


@pytest.fixture
def world():
    return World()


def _input(world, **fields) -> DraftInput:
    values = {
        "account": world.account.account_id, "kind": RequestKind.CROSS_ACCOUNT, "pipelines": [world.pipeline.pk],
        "level": "viewer", "justification": "The release partner reads the pipeline", "duration_hours": 4,
        "trusted_account_id": OUTSIDE,
    }  # fmt: skip
    values.update(fields)
    return DraftInput(**values)


def _form(world, **overrides) -> dict:
    data = {
        "kind": "cross_account", "account": world.account.pk, "shown_account": world.account.pk,
        "pipelines": [world.pipeline.pk], "level": "viewer", "trusted_account_id": OUTSIDE,
        "duration_hours": 4, "source": Source.FORM, "intent": "preview",
    }  # fmt: skip
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_the_draft_needs_no_principal_and_is_for_the_outside_party(world):
    draft = build_draft(user=world.requester, data=_input(world))
    assert (draft.principal.kind, draft.principal.external_id) == (
        PrincipalKind.OUTSIDE_ACCOUNT, f"arn:aws:iam::{OUTSIDE}:root",
    )  # fmt: skip
    req = request_submit(requester=world.requester, draft=draft)
    assert req.principal.kind == PrincipalKind.OUTSIDE_ACCOUNT and req.principal.name == OUTSIDE
    assert req.for_whom == f"outside account {OUTSIDE}" and req.on_behalf  # nobody here vouches for it
    assert [r.label for r in recipients_of(req)] == [
        f"any principal of account {OUTSIDE} that its administrators allow"
    ]
    created = AuditEvent.objects.get(action="request.created")
    assert created.after["principal"] == f"arn:aws:iam::{OUTSIDE}:root"
    # The same party again is the same catalog row, and the same access is said to be pending already.
    again = build_draft(user=world.requester, data=_input(world))
    assert again.principal.pk == req.principal.pk
    with pytest.raises(RequestError, match="already asked for exactly this access"):
        request_submit(requester=world.requester, draft=again)
    # Another party is another row; an outside principal is one too.
    other = request_submit(
        requester=world.requester,
        draft=build_draft(
            user=world.requester, data=_input(world, trusted_account_id="", trusted_principal_arn=DEPLOYER)
        ),
    )
    assert (other.principal.kind, other.principal.external_id) == (PrincipalKind.OUTSIDE_PRINCIPAL, DEPLOYER)
    assert other.for_whom == f"outside principal {DEPLOYER}"


def test_a_role_trusting_your_own_principal_elsewhere_is_not_on_your_behalf(world):
    elsewhere = make_account(OUTSIDE, "staging")
    mine = make_principal(elsewhere, "mateo-staging", users=[world.requester])
    req = request_submit(
        requester=world.requester,
        draft=build_draft(
            user=world.requester,
            data=_input(world, trusted_account_id="", trusted_principal_arn=mine.external_id),
        ),
    )
    assert req.on_behalf is False and req.principal.kind == PrincipalKind.OUTSIDE_PRINCIPAL
    assert [r.principal for r in recipients_of(req)] == [mine]  # the catalog's row, not the outside one


def test_naming_both_says_both_were_given_in_the_builder_and_the_service(world):
    with pytest.raises(DraftError) as caught:
        build_draft(user=world.requester, data=_input(world, trusted_principal_arn=DEPLOYER))
    [problem] = caught.value.problems["trusted_principal_arn"]
    assert problem.message.startswith(
        f"You named both an outside account ({OUTSIDE}) and an outside principal ({DEPLOYER}); name one."
    )
    # A draft built another way is refused by the service with the same words.
    draft = world.draft(
        kind=RequestKind.CROSS_ACCOUNT, trusted_account_id=OUTSIDE, trusted_principal_arn=DEPLOYER
    )
    with pytest.raises(RequestError, match="You named both an outside account"):
        request_submit(requester=world.requester, draft=draft)
    with pytest.raises(DraftError) as caught:
        build_draft(user=world.requester, data=_input(world, trusted_account_id=""))
    assert "Name who outside may assume the role" in caught.value.problems["trusted_account_id"][0].message
    assert not AccessRequest.objects.exists()


def test_a_draft_made_for_a_principal_of_the_requester_is_filed_for_the_outside_party(world):
    """Callers that build a draft themselves (an older integration) still name a principal: the service settles
    it as the outside party, so the request is never shown as for someone the role does not trust."""
    req = request_submit(
        requester=world.requester,
        draft=world.draft(kind=RequestKind.CROSS_ACCOUNT, trusted_account_id=OUTSIDE),
    )
    assert req.principal.kind == PrincipalKind.OUTSIDE_ACCOUNT and req.principal != world.principal


def test_the_api_files_it_without_a_principal_and_refuses_one(world):
    body = {
        "kind": "cross_account", "account": world.account.account_id, "pipelines": ["my-pipeline"],
        "level": "viewer", "trusted_account_id": OUTSIDE, "justification": "partner", "duration_hours": 4,
    }  # fmt: skip
    api = Api(world.requester)
    refused = api.post("requests/", {**body, "principal": world.principal.pk})
    assert refused.status_code == 400
    assert "goes to the outside party the role trusts" in refused.json()["detail"]["principal"][0]["message"]
    both = api.post("requests/", {**body, "trusted_principal_arn": DEPLOYER})
    assert (
        both.status_code == 400
        and "You named both" in both.json()["detail"]["trusted_principal_arn"][0]["message"]
    )
    filed = api.post("requests/", body)
    assert filed.status_code == 201, filed.json()
    assert (
        filed.json()["principal_arn"] == f"arn:aws:iam::{OUTSIDE}:root" and filed.json()["on_behalf"] is True
    )


def test_the_form_asks_only_for_the_outside_party(client, world):
    client.force_login(world.requester)
    # No principal, and one left over from another kind (without JavaScript every section is sent) is dropped.
    for extra in ({}, {"principal": world.principal.pk}, {"principal": "999"}):
        page = client.post(reverse("new_request"), _form(world, **extra)).content.decode()
        assert 'data-testid="policy-preview"' in page and "invalid-feedback" not in page, extra
        assert f"any principal of account {OUTSIDE}" in page
        section = page.split('data-testid="principal-section"')[1].split(">")[0]
        assert "hidden" in section and "disabled" in section  # shown only for the other kinds
    response = client.post(reverse("new_request"), _form(world, intent="submit", justification="partner"))
    assert response.status_code == 302
    req = AccessRequest.objects.get()
    detail = client.get(reverse("request_detail", args=[req.pk])).content.decode()
    facts = detail.split('data-testid="request-for"')[1].split("</dd>")[0]
    assert f"Outside account <strong>{OUTSIDE}</strong>" in facts and "mateojackson" not in facts
    assert "Filed for" not in detail


def test_the_form_says_both_were_given(client, world):
    client.force_login(world.requester)
    page = client.post(reverse("new_request"), _form(world, trusted_principal_arn=DEPLOYER)).content.decode()
    assert (
        f"You named both an outside account ({OUTSIDE}) and an outside principal ({DEPLOYER}); name one."
        in page
    )
    assert not AccessRequest.objects.exists()


def test_the_other_kinds_still_ask_who_receives_access_and_never_offer_an_outside_party(client, world):
    admin = make_user("boss", "admins")
    request_submit(requester=world.requester, draft=build_draft(user=world.requester, data=_input(world)))
    assert Principal.objects.filter(kind=PrincipalKind.OUTSIDE_ACCOUNT).exists()
    assert not drafts.principal_choices(admin).filter(kind=PrincipalKind.OUTSIDE_ACCOUNT).exists()
    client.force_login(world.requester)
    page = client.post(
        reverse("new_request"), _form(world, kind="pipeline", trusted_account_id="")
    ).content.decode()
    assert "This field is required." in page.split('name="principal"')[1]
    assert "hidden" not in page.split('data-testid="principal-section"')[1].split(">")[0]
