"""Text an approver reads cannot disguise itself: a right-to-left override or another invisible character in a
justification, a ticket, a comment or any free text is refused by the services with a message that names it and
where it is (the API and Slack answer with it); the web form takes it out, keeps the rest of what was typed and says
so; a NUL byte gets the same clear message on the form, never a bare 400 or a 500."""

from __future__ import annotations

import pytest
from django.urls import reverse

from accessrequests.core import plain_text
from accessrequests.models import AccessRequest, Decision, RequestKind, Source
from accessrequests.workflow.drafts import DraftError, DraftInput, build_draft
from accessrequests.workflow.requests import RequestError, request_deny, request_submit
from tests.conftest import enable_totp
from tests.factories import World, fresh_factor
from tests.test_api import Api

pytestmark = pytest.mark.django_db

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: "approved by CISO\u202eton" shows as "approved by CISOnot"
DISGUISED = f"Fix the deploy; approved by the CISO{RLO}ton"


@pytest.fixture
def world():
    return World()


def _form(world, **overrides) -> dict:
    data = {
        "kind": "pipeline", "account": world.account.pk, "shown_account": world.account.pk,
        "principal": world.principal.pk, "pipelines": [world.pipeline.pk], "level": "viewer",
        "duration_hours": 4, "source": Source.FORM, "intent": "submit", "justification": "Debugging a deploy",
    }  # fmt: skip
    data.update(overrides)
    return data


@pytest.mark.parametrize(
    "char",
    [RLO, "\u2066", "\u200f", "\u200b", "\ufeff", "\x00", "\x1b", "\u2028", "\U000e0041"],
    ids=["RLO", "LRI", "RLM", "ZWSP", "BOM", "NUL", "ESC", "LSEP", "TAG-A"],
)
def test_invisible_characters_are_found_and_named(char):
    problem = plain_text.hidden_character_problem("The justification", f"ab{char}c")
    assert problem is not None and f"U+{ord(char):04X}" in problem and "at character 3" in problem


def test_line_breaks_tabs_joiners_and_other_scripts_are_text():
    for text in (
        "two\r\nlines\tand a tab",
        "\u0646\u06cc\u0645\u200c\u0641\u0627\u0635\u0644\u0647",
        "👩\u200d💻",
        "שלום עולם",
        "Grüße — ok",
    ):
        assert plain_text.hidden_character_problem("The justification", text) is None


@pytest.mark.parametrize("field", ["justification", "ticket", "stage", "action_name"])
def test_the_draft_builder_refuses_each_free_text_with_the_character_named(world, field):
    fields = {"justification": "Debugging a deploy", field: DISGUISED}
    data = DraftInput(
        account=world.account.account_id,
        principal=world.principal.pk,
        pipelines=[world.pipeline.pk],
        level="viewer",
        duration_hours=4,
        **fields,
    )
    with pytest.raises(DraftError) as caught:
        build_draft(user=world.requester, data=data)
    [problem] = caught.value.problems[field]
    assert "U+202E (RIGHT-TO-LEFT OVERRIDE) at character 37" in problem.message


def test_the_submit_service_refuses_it_whatever_built_the_draft(world):
    for field in ("justification", "ticket"):
        with pytest.raises(RequestError, match="U\\+202E"):
            request_submit(requester=world.requester, draft=world.draft(**{field: DISGUISED}))
    assert not AccessRequest.objects.exists()


def test_a_decision_comment_cannot_hide_one_either(world):
    req = world.submit()
    with pytest.raises(RequestError, match="The comment contains 1 invisible character"):
        request_deny(
            request_id=req.pk,
            reviewer=world.approver,
            second_factor=fresh_factor(world.approver),
            comment=f"Not needed{RLO}",
        )
    assert not Decision.objects.exists()


def test_the_api_answers_400_naming_the_field_and_the_character(world):
    response = Api(world.requester).post(
        "requests/",
        {
            "account": world.account.account_id,
            "principal": world.principal.pk,
            "pipelines": ["my-pipeline"],
            "level": "viewer",
            "justification": "Debugging a deploy",
            "ticket": f"OPS-1{RLO}2",
            "duration_hours": 4,
        },
    )
    assert response.status_code == 400, response.content
    [problem] = response.json()["detail"]["ticket"]
    assert "U+202E (RIGHT-TO-LEFT OVERRIDE) at character 6" in problem["message"]
    assert not AccessRequest.objects.exists()


def test_the_form_takes_them_out_keeps_the_rest_and_says_so(client, world):
    client.force_login(world.requester)
    response = client.post(
        reverse("new_request"), _form(world, justification=DISGUISED, ticket=f"OPS{RLO}-1")
    )
    page = response.content.decode()
    assert response.status_code == 400 and not AccessRequest.objects.exists()
    assert "Gatehouse removed 1 invisible character from “Why you need it”" in page
    assert "U+202E (RIGHT-TO-LEFT OVERRIDE) at character 37" in page
    assert "Fix the deploy; approved by the CISOton</textarea>" in page and 'value="OPS-1"' in page
    assert RLO not in page
    # Sent again as shown, it is filed.
    response = client.post(reverse("new_request"), _form(world, justification=DISGUISED.replace(RLO, "")))
    assert response.status_code == 302 and AccessRequest.objects.get().justification.endswith("CISOton")


def test_a_nul_byte_on_the_form_is_said_on_its_field_and_what_was_typed_stays(client, world):
    client.force_login(world.requester)
    response = client.post(
        reverse("new_request"), _form(world, justification="Debugging\x00 the deploy of release 42")
    )
    page = response.content.decode()
    assert response.status_code == 400 and "<html" in page  # the form, not a bare "Bad request"
    assert "U+0000 (NUL) at character 10" in page
    assert "Debugging the deploy of release 42</textarea>" in page
    assert not AccessRequest.objects.exists()


def test_a_nul_byte_in_the_account_box_is_said_not_a_server_error(client, world):
    client.force_login(world.requester)
    for intent in ("continue", "preview"):
        response = client.post(reverse("new_request"), _form(world, account="sand\x00box", intent=intent))
        assert response.status_code in (200, 400) and "<html" in response.content.decode()


def test_a_pasted_error_is_read_and_kept_without_its_hidden_characters(client, world):
    """Nobody typed them: a terminal or a web page printed them (zero-width spaces inside an ARN, an override).
    The paste is read without them, as the parser always did, and what the approver sees is kept without them."""
    client.force_login(world.requester)
    pasted = (
        "User: arn:aws:iam::123456789012:user/mateo\u200bjackson is not authorized to perform: "
        f"codepipeline:GetPipeline on resource: my-pipeline{RLO}"
    )
    page = client.post(reverse("paste_error"), {"message": pasted}).content.decode()
    assert 'data-testid="policy-preview"' in page and "invisible character" not in page
    kept = page.split('name="pasted_text" value="')[1].split('"')[0]
    assert RLO not in kept and "\u200b" not in kept and "mateojackson" in kept
    # A draft that carries them anyway (the API's message, a caller of its own) is filed without them.
    req = request_submit(
        requester=world.requester, draft=world.draft(pasted_text=pasted, source=Source.PASTED_ERROR)
    )
    assert req.pasted_text == pasted.replace("\u200b", "").replace(RLO, "")


def test_break_glass_refuses_a_disguised_incident(world):
    from accessrequests.workflow.break_glass import break_glass_submit

    world.rule.break_glass_users.add(world.requester)
    enable_totp(world.requester)
    with pytest.raises(RequestError, match="The incident reference contains"):
        break_glass_submit(
            requester=world.requester,
            draft=world.draft(duration_hours=1, kind=RequestKind.PIPELINE),
            incident=f"INC-7{RLO}",
        )
    assert not AccessRequest.objects.exists()


def test_text_stored_before_the_rule_shows_its_hidden_characters_to_the_approver(client, world):
    from tests.conftest import sign_in_with_mfa
    from tests.factories import force_update

    req = world.submit()
    force_update(AccessRequest.objects.filter(pk=req.pk), justification=DISGUISED, ticket=f"OPS{RLO}-1")
    enable_totp(world.approver)
    sign_in_with_mfa(client, world.approver)
    for path in (reverse("review", args=[req.pk]), "/review/", reverse("request_detail", args=[req.pk])):
        page = client.get(path).content.decode()
        assert RLO not in page, path
        assert "approved by the CISO[U+202E]ton" in page, path
