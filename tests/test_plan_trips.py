"""One trip, each rule once: filing a request (from the form, its preview, the API, an extension over the API)
enters every permission rule once for each person it judges, and the preview shows exactly what the submit would
refuse. The rules are counted as they are entered (a counting wrapper around each, which changes no answer)."""

from __future__ import annotations

from collections import Counter

import pytest
from django.urls import reverse

from accessrequests.authz import permissions
from accessrequests.models import AccessRequest, EligibilityRule, RequestStatus
from accessrequests.workflow.requests import request_approve
from tests.conftest import enable_totp
from tests.factories import World, fresh_factor
from tests.test_api import Api
from tests.test_views import form_data, login

pytestmark = pytest.mark.django_db

RULES = ("file_problem", "account_problem", "eligibility_problem", "extend_problem")


@pytest.fixture
def world():
    w = World()
    enable_totp(w.approver)
    return w


@pytest.fixture
def entered(monkeypatch):
    """Each permission rule's entries on this trip, by (rule, the user it judged)."""
    counts: Counter[tuple[str, int]] = Counter()
    for name in RULES:
        original = getattr(permissions, name)

        def counting(user, *args, _original=original, _name=name, **kwargs):
            counts[(_name, user.pk)] += 1
            return _original(user, *args, **kwargs)

        monkeypatch.setattr(permissions, name, counting)
    return counts


def _each_once(counts: Counter, user, rules=RULES) -> None:
    assert {rule: counts[(rule, user.pk)] for rule in rules} == dict.fromkeys(rules, 1)
    assert max(counts.values()) == 1, counts


def test_the_form_submit_enters_each_rule_once(client, world, entered):
    login(client, world.requester)
    entered.clear()
    response = client.post(reverse("new_request"), form_data(world))
    assert response.status_code == 302 and AccessRequest.objects.count() == 1
    _each_once(entered, world.requester, rules=("file_problem", "account_problem", "eligibility_problem"))


def test_the_form_preview_enters_each_rule_once_and_refuses_what_the_submit_would(client, world, entered):
    """An eligibility rule that leaves out someone the access reaches: the preview says so, as the submit does."""
    login(client, world.requester)
    entered.clear()
    preview = client.post(reverse("new_request"), form_data(world, intent="preview"))
    assert preview.status_code == 200
    _each_once(entered, world.requester, rules=("file_problem", "account_problem", "eligibility_problem"))

    rule = EligibilityRule.objects.create(name="Only the release team", kinds=["pipeline"])
    rule.accounts.add(world.account)
    rule.users.add(world.approver)
    refused_preview = client.post(reverse("new_request"), form_data(world, intent="preview"))
    refused_submit = client.post(reverse("new_request"), form_data(world))
    assert refused_preview.status_code == refused_submit.status_code == 400
    said = "not eligible"
    assert said in refused_preview.content.decode() and said in refused_submit.content.decode()
    assert AccessRequest.objects.count() == 0


def test_the_api_filing_enters_each_rule_once(world, entered):
    api = Api(world.requester)
    entered.clear()
    response = api.post(
        "requests/",
        {
            "kind": "pipeline",
            "account": world.account.account_id,
            "principal": world.principal.pk,
            "pipelines": [world.pipeline.name],
            "level": "viewer",
            "justification": "Investigating a failed release",
            "duration_hours": 4,
        },
    )
    assert response.status_code == 201, response.content
    _each_once(entered, world.requester, rules=("file_problem", "account_problem", "eligibility_problem"))


def test_the_api_extension_enters_each_rule_once(world, entered):
    first = world.submit()
    request_approve(request_id=first.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    first.refresh_from_db()
    api = Api(world.requester)
    entered.clear()
    response = api.post(
        f"grants/{first.grant.pk}/extend/", {"justification": "more time", "duration_hours": 2}
    )
    assert response.status_code == 201, response.content
    assert AccessRequest.objects.get(extends=first.grant).status == RequestStatus.PENDING
    _each_once(entered, world.requester)
