"""The request form as a newcomer meets it: two steps without JavaScript, a preview before the justification,
defaults that fit the rule, principals offered only where they can be granted (and why not elsewhere), a
warning with a link when the same access is already pending or live, and every paste result shown."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accessrequests.models import AccessRequest, IdentityCenter, Principal, PrincipalKind, Source
from accessrequests.workflow.requests import request_approve
from tests.factories import World, fresh_factor, make_account, make_pipeline, make_principal, make_role

pytestmark = pytest.mark.django_db

MATEO = (
    "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
    "codepipeline:GetPipeline on resource: my-pipeline"
)


@pytest.fixture
def world():
    return World()


def _form(world, **overrides) -> dict:
    data = {
        "kind": "pipeline", "account": world.account.pk, "shown_account": world.account.pk,
        "principal": world.principal.pk, "pipelines": [world.pipeline.pk], "level": "viewer",
        "duration_hours": 4, "source": Source.FORM, "intent": "preview",
    }  # fmt: skip
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


def test_without_javascript_the_account_comes_first_then_its_lists(client, world):
    other = make_account("210987654321", "staging")
    make_pipeline(other, "staging-deploy")
    # An Identity Center user of theirs can receive access in the other account too, so it may be chosen.
    center = IdentityCenter.objects.create(
        instance_arn="arn:aws:sso:::instance/ssoins-1", identity_store_id="d-1"
    )
    Principal.objects.create(
        kind=PrincipalKind.IC_USER, external_id="u-1", name="requester", identity_center=center
    ).users.add(world.requester)
    client.force_login(world.requester)
    first = client.get(reverse("new_request")).content.decode()
    assert 'data-testid="continue"' in first and 'name="pipelines"' not in first
    second = client.post(
        reverse("new_request"), {"kind": "pipeline", "account": world.account.pk, "intent": "continue"}
    )
    page = second.content.decode()
    assert second.status_code == 200 and "my-pipeline" in page and "staging-deploy" not in page
    assert "invalid-feedback" not in page  # nothing was wrong yet
    # Changing the account and pressing Preview (no JavaScript) shows the new account's lists, not errors.
    switched = client.post(reverse("new_request"), _form(world, account=other.pk)).content.decode()
    assert (
        "staging-deploy" in switched and "my-pipeline" not in switched and "invalid-feedback" not in switched
    )


def test_the_preview_needs_no_justification_and_caps_the_duration_at_the_rules_maximum(client, world):
    client.force_login(world.requester)
    response = client.post(reverse("new_request"), _form(world, duration_hours=24))
    page = response.content.decode()
    assert response.status_code == 200 and 'data-testid="policy-preview"' in page
    assert "Duration set to 8 hours, the most the rule “Sandbox pipelines” allows." in page
    assert 'name="duration_hours" value="8"' in page
    assert not AccessRequest.objects.exists()


def test_principals_are_offered_only_where_they_can_be_granted_and_the_page_says_why(client, world):
    other = make_account("210987654321", "production", environment="production")
    make_principal(other, "deployer", users=[world.requester])
    client.force_login(world.requester)
    page = client.post(reverse("new_request"), _form(world)).content.decode()
    assert "deployer" not in page.split('name="principal"')[1].split("</select>")[0]
    assert "Your IAM user deployer lives in account 210987654321" in page
    assert "choose your Identity Center user, or ask for a cross-account role" in page


def test_the_same_access_pending_or_live_is_warned_with_a_link_and_not_filed_twice(client, world):
    client.force_login(world.requester)
    pending = world.submit()
    warned = client.post(reverse("new_request"), _form(world)).content.decode()
    assert f"You already asked for exactly this access in {pending.reference}" in warned
    assert reverse("request_detail", args=[pending.pk]) in warned
    refused = client.post(reverse("new_request"), _form(world, intent="submit", justification="again"))
    assert refused.status_code == 400 and AccessRequest.objects.count() == 1
    request_approve(
        request_id=pending.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )
    live = client.post(reverse("new_request"), _form(world)).content.decode()
    assert "You already hold exactly this access" in live
    assert f"?extends={pending.grant.pk}" in live


def test_pasting_names_what_was_not_matched_and_why(client, world):
    make_role(world.account, "CodePipelineServiceRole")
    client.force_login(world.requester)
    unknown_role = MATEO.replace("codepipeline:GetPipeline", "iam:PassRole").replace(
        "my-pipeline", "arn:aws:iam::123456789012:role/NotInTheCatalog"
    )
    page = client.post(reverse("paste_error"), {"message": unknown_role}).content.decode()
    assert (
        "arn:aws:iam::123456789012:role/NotInTheCatalog" in page and "is not a role Gatehouse knows" in page
    )

    someone_else = make_principal(world.account, "marymajor", users=[world.other_requester])
    page = client.post(
        reverse("paste_error"), {"message": MATEO.replace("mateojackson", "marymajor")}
    ).content.decode()
    assert someone_else.external_id in page and "is not linked to your Gatehouse account" in page
    assert 'data-testid="intake-unmatched"' in page

    page = client.post(
        reverse("paste_error"),
        {"message": MATEO.replace("my-pipeline", "arn:aws:codepipeline:us-east-1:210987654321:my-pipeline")},
    ).content.decode()
    assert "my-pipeline is in account 210987654321" in page


def test_a_passrole_error_naming_the_role_bare_chooses_it(client, world):
    client.force_login(world.requester)
    bare = MATEO.replace("codepipeline:GetPipeline", "iam:PassRole").replace(
        "my-pipeline", "CodePipelineServiceRole"
    )
    page = client.post(reverse("paste_error"), {"message": bare}).content.decode()
    assert f'<option value="{world.role.pk}" selected>' in page
    assert "invalid-feedback" not in page and 'data-testid="intake-unmatched"' not in page


def test_an_identity_center_user_is_offered_in_any_account(client, world):
    from accessrequests.models import IdentityCenter, Principal

    center = IdentityCenter.objects.create(
        instance_arn="arn:aws:sso:::instance/ssoins-1", identity_store_id="d-1", region="us-east-1"
    )
    paulo = Principal.objects.create(
        kind=PrincipalKind.IC_USER,
        name="paulo.santos",
        display_name="Paulo Santos",
        external_id="u-1",
        identity_center=center,
    )
    paulo.users.add(world.requester)
    production = make_account("210987654321", "production", environment="production")
    client.force_login(world.requester)
    page = client.post(
        reverse("new_request"), {"kind": "permission_set", "account": production.pk, "intent": "continue"}
    ).content.decode()
    principals = page.split('name="principal"')[1].split("</select>")[0]
    assert (
        "Identity Center user Paulo Santos (paulo.santos)" in principals and "mateojackson" not in principals
    )


def _production(world, max_hours: int = 4):
    """The world's account under a rule that allows less than the usual 8 hours, as the demo's production."""
    world.rule.max_duration_hours = max_hours
    world.rule.name = "Production"
    world.rule.save()


def test_a_duration_left_as_it_is_files_for_the_rules_maximum_the_preview_said(client, world):
    _production(world)
    client.force_login(world.requester)
    page = client.get(reverse("new_request"), {"account": world.account.pk}).content.decode()
    duration = page.split('name="duration_hours"')[1].split(">")[0]
    assert (
        "value=" not in duration and 'placeholder="8"' in duration
    )  # nothing typed: the usual, or the rule's
    preview = client.post(reverse("new_request"), _form(world, duration_hours=None)).content.decode()
    assert "Asks for <strong>4 hours</strong> from approval." in preview
    assert "The usual 8 hours brought down to 4 hours, the most the rule “Production” allows." in preview
    field = preview.split('name="duration_hours"')[1].split(">")[0]
    assert 'placeholder="4"' in field and "value=" not in field
    response = client.post(
        reverse("new_request"), _form(world, duration_hours=None, intent="submit", justification="deploy")
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert AccessRequest.objects.get().duration_hours == 4


def test_more_than_the_rule_allows_is_brought_down_in_the_field_and_then_files(client, world):
    _production(world)
    client.force_login(world.requester)
    preview = client.post(reverse("new_request"), _form(world, duration_hours=8)).content.decode()
    assert 'name="duration_hours" value="4"' in preview and "Asks for <strong>4 hours</strong>" in preview
    # Submitted as the preview left it, it is filed; 8 sent anyway is refused with the rule's limit, as before.
    refused = client.post(
        reverse("new_request"), _form(world, duration_hours=8, intent="submit", justification="deploy")
    )
    assert refused.status_code == 400 and "Ask for between 1 and 4 hours" in refused.content.decode()
    filed = client.post(
        reverse("new_request"), _form(world, duration_hours=4, intent="submit", justification="deploy")
    )
    assert filed.status_code == 302 and AccessRequest.objects.get().duration_hours == 4


def test_the_api_without_a_duration_files_for_the_rules_maximum(world):
    from tests.test_api import Api

    _production(world)
    response = Api(world.requester).post(
        "requests/",
        {
            "account": world.account.account_id,
            "principal": world.principal.pk,
            "pipelines": ["my-pipeline"],
            "level": "viewer",
            "justification": "Debugging a deploy",
        },
    )
    assert response.status_code == 201, response.content
    assert response.json()["duration_hours"] == 4


def test_a_pasted_error_files_for_the_rules_maximum(client, world):
    _production(world, max_hours=2)
    client.force_login(world.requester)
    page = client.post(reverse("paste_error"), {"message": MATEO}).content.decode()
    assert "Asks for <strong>2 hours</strong> from approval." in page
    form = {
        "kind": "pipeline", "account": world.account.pk, "shown_account": world.account.pk,
        "principal": world.principal.pk, "pipelines": [world.pipeline.pk], "level": "viewer",
        "source": Source.PASTED_ERROR, "pasted_text": MATEO, "intent": "submit", "justification": "stuck",
    }  # fmt: skip
    assert client.post(reverse("new_request"), form).status_code == 302
    assert AccessRequest.objects.get().duration_hours == 2


def _summary(page: str) -> str:
    assert page.count('data-testid="error-summary"') == 1
    return page.split('data-testid="error-summary"')[1].split("</div>")[0]


def test_the_same_access_submitted_again_is_said_once_with_its_link(client, world):
    client.force_login(world.requester)
    first = world.submit(justification="deploy")
    response = client.post(reverse("new_request"), _form(world, intent="submit", justification="again"))
    page = response.content.decode()
    assert response.status_code == 400 and AccessRequest.objects.count() == 1
    assert page.count("You already asked for exactly this access") == 1
    assert f'href="/requests/{first.pk}/">Open {first.reference}</a>' in page
    assert 'data-testid="error-summary"' not in page  # the warning is the one thing said


def test_what_stops_a_submit_is_listed_once_at_the_top_with_links_to_the_fields(client, world):
    client.force_login(world.requester)
    page = client.get(reverse("new_request"), {"account": world.account.pk}).content.decode()
    assert 'id="request-form" novalidate' in page  # the server's list, not the browser's one bubble at a time
    empty = {
        "kind": "pipeline",
        "account": world.account.pk,
        "shown_account": world.account.pk,
        "intent": "submit",
    }
    response = client.post(reverse("new_request"), empty)
    page = response.content.decode()
    assert response.status_code == 400
    summary = _summary(page)
    assert "Not filed yet: fix what is listed, then submit again." in summary
    assert (
        '<a class="alert-link" href="#id_principal">Who receives access</a>: This field is required.'
        in summary
    )
    assert '<a class="alert-link" href="#id_level">Level</a>: Choose an access level.' in summary
    assert (
        '<a class="alert-link" href="#id_justification">Why you need it</a>: Say why you need it' in summary
    )
    assert page.index('data-testid="error-summary"') < page.index('id="request-form"')
    # A refusal of the service (no field of its own) is said there once too, not again in the panel.
    world.rule.delete()
    page = client.post(
        reverse("new_request"), _form(world, intent="submit", justification="x")
    ).content.decode()
    refusal = _summary(page)
    assert "no approval rule" in refusal.lower()
    panel = page.split('id="preview-panel"')[1]
    assert 'class="text-danger small mb-0 gh-live-only"' in panel  # shown only by the live preview


def test_a_justification_too_long_is_said_at_the_top_and_kept_whole(client, world):
    client.force_login(world.requester)
    page = client.get(reverse("new_request"), {"account": world.account.pk}).content.decode()
    textarea = page.split('name="justification"')[1].split(">")[0]
    assert "maxlength" not in textarea and 'data-limit="2000"' in textarea  # the browser cuts nothing
    long = "The release is blocked because " + "x" * 19_969
    response = client.post(reverse("new_request"), _form(world, intent="submit", justification=long))
    page = response.content.decode()
    assert response.status_code == 400 and not AccessRequest.objects.exists()
    assert (
        "Why you need it</a>: At most 2000 characters: this has 20000. Shorten it; nothing was cut."
        in _summary(page)
    )
    assert f">\n{long}</textarea>" in page or f">{long}</textarea>" in page


def test_an_unknown_account_on_step_one_is_the_one_thing_listed(client, world):
    client.force_login(world.requester)
    page = client.post(
        reverse("new_request"), {"kind": "pipeline", "account": "nosuchaccount"}
    ).content.decode()
    summary = _summary(page)
    assert "Fix what is listed to see what would be granted." in summary
    assert "Gatehouse knows no account nosuchaccount" in summary
    assert "Who receives access" not in summary and "Level" not in summary  # not on this step's page
