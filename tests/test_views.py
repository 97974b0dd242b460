"""The request and review pages, as owner, other requester, approver in and out of rule, auditor and outsider."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from django.utils import timezone

from accessrequests.models import AccessRequest, Decision, RequestStatus, Source
from accessrequests.workflow.requests import request_approve
from tests.conftest import enable_totp, make_user, sign_in_with_mfa
from tests.factories import World, force_update, fresh_factor

pytestmark = pytest.mark.django_db

MATEO = (
    "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
    "codepipeline:GetPipeline on resource: my-pipeline"
)
PASSWORD = "correct-horse-battery"


@pytest.fixture
def world():
    w = World()
    enable_totp(w.approver)
    enable_totp(w.approver2)
    enable_totp(w.outsider_approver)
    return w


def login(client, user):
    """Signed in as the user would be: approvers (who have TOTP) with their second factor."""
    if user.authenticator_set.exists():
        sign_in_with_mfa(client, user)
    else:
        client.force_login(user)
    return client


def form_data(world, **overrides):
    data = {
        "kind": "pipeline",
        "account": world.account.pk,
        "principal": world.principal.pk,
        "pipelines": [world.pipeline.pk],
        "level": "viewer",
        "justification": "Investigating a failed release",
        "duration_hours": 4,
        "source": Source.FORM,
        "intent": "submit",
    }
    data.update(overrides)
    return data


def test_a_requester_files_a_request_through_the_form(client, world):
    login(client, world.requester)
    response = client.post(reverse("new_request"), form_data(world))
    req = AccessRequest.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("request_detail", args=[req.pk])
    page = client.get(response["Location"])
    assert b"GH-" in page.content and b"Pending review" in page.content


def test_preview_shows_the_exact_statements_and_files_nothing(client, world):
    login(client, world.requester)
    response = client.post(reverse("new_request"), form_data(world, intent="preview"))
    assert response.status_code == 200
    assert b"arn:aws:codepipeline:us-east-1:123456789012:my-pipeline" in response.content
    assert b"Sandbox pipelines" in response.content
    assert not AccessRequest.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"pipelines": [999999]}, b"no longer offered for the chosen account"),
        ({"principal": 999999}, b"no longer offered for the chosen account"),
        ({"account": "not-a-number"}, b"Gatehouse knows no account not-a-number"),
        ({"account": "999999999999"}, b"Gatehouse knows no account 999999999999"),
        ({"account": "x" * 5000}, b"At most 100 characters: this has 5000. Shorten it; nothing was cut."),
        ({"justification": ""}, b"Say why you need it: the approvers decide on it (required to submit)."),
        ({"justification": "x" * 2001}, b"At most 2000 characters: this has 2001."),
        ({"level": "custom", "actions": "codepipeline:Teleport"}, b"codepipeline:Teleport"),
        ({"duration_hours": 99}, b"between 1 and 8 hours"),
        ({"duration_hours": -1}, b"At least 1 hour."),
    ],
)
def test_bad_input_gets_a_clear_message_and_changes_nothing(client, world, overrides, message):
    login(client, world.requester)
    response = client.post(reverse("new_request"), form_data(world, **overrides))
    assert response.status_code == 400
    assert message in response.content
    assert not AccessRequest.objects.exists()


def test_a_requester_cannot_request_for_a_principal_not_linked_to_them(client, world):
    login(client, world.other_requester)
    response = client.post(reverse("new_request"), form_data(world))
    assert response.status_code == 400
    assert not AccessRequest.objects.exists()


def test_pasting_the_mateojackson_error_prefills_the_smallest_request(client, world):
    login(client, world.requester)
    response = client.post(reverse("paste_error"), {"message": MATEO})
    assert response.status_code == 200
    content = response.content.decode()
    assert "Read from your error" in content
    assert re.search(rf'name="pipelines" value="{world.pipeline.pk}"[^>]*checked', content)
    assert 'data-testid="policy-preview"' in content  # the preview is there at once
    assert '<option value="viewer" selected>' in content
    assert 'name="source" value="pasted_error"' in content


def test_pasting_an_explicit_deny_offers_no_request(client, world):
    login(client, world.requester)
    text = MATEO + " with an explicit deny in a service control policy"
    response = client.post(reverse("paste_error"), {"message": text})
    assert b"A grant cannot fix this" in response.content
    assert b"request-form" not in response.content


@pytest.mark.parametrize(
    ("action", "reason"),
    [("s3:GetObject", "which Gatehouse does not grant"), ("codepipeline:GetPipelien", "Did you mean")],
)
def test_pasting_an_error_gatehouse_cannot_fix_says_why_and_offers_no_request(client, world, action, reason):
    login(client, world.requester)
    response = client.post(
        reverse("paste_error"), {"message": MATEO.replace("codepipeline:GetPipeline", action)}
    )
    page = response.content.decode()
    assert reason in page
    assert 'name="justification"' not in page  # no request form offered


def test_pasting_nonsense_says_what_was_expected(client, world):
    login(client, world.requester)
    response = client.post(reverse("paste_error"), {"message": "the build is red again"})
    assert response.status_code == 400
    assert b"is not authorized to perform" in response.content


def test_pasting_an_oversized_message_is_refused_cleanly(client, world):
    login(client, world.requester)
    response = client.post(reverse("paste_error"), {"message": "A" * 30_000})
    assert response.status_code == 400
    assert b"Paste only the error" in response.content


def test_an_unknown_principal_is_explained(client, world):
    login(client, world.requester)
    response = client.post(reverse("paste_error"), {"message": MATEO.replace("mateojackson", "nobody")})
    assert response.status_code == 400
    assert b"does not know the IAM user nobody" in response.content


def test_a_pipeline_in_another_account_than_the_principal_is_explained(client, world):
    """The pipeline ARN's own account counts: mateojackson's policy in 123456789012 cannot reach a pipeline of
    another account, so no request that would change nothing is offered."""
    login(client, world.requester)
    other = MATEO.replace(
        "on resource: my-pipeline", "on resource: arn:aws:codepipeline:us-east-1:210987654321:my-pipeline"
    )
    response = client.post(reverse("paste_error"), {"message": other})
    assert response.status_code == 400
    page = response.content.decode()
    assert "my-pipeline is in account 210987654321" in page and "not in 123456789012" in page
    assert not AccessRequest.objects.exists()


def test_requesters_see_only_their_own_requests(client, world):
    req = world.submit()
    login(client, world.other_requester)
    assert client.get(reverse("request_detail", args=[req.pk])).status_code == 404
    assert client.post(reverse("cancel_request", args=[req.pk])).status_code == 404
    assert b"GH-" not in client.get(reverse("my_requests")).content
    req.refresh_from_db()
    assert req.status == RequestStatus.PENDING


def test_approvers_outside_the_rule_get_404_and_cannot_decide_by_forged_post(client, world):
    req = world.submit()
    login(client, world.outsider_approver)
    world.outsider_approver.groups.add(
        *world.approver.groups.filter(name="approvers")
    )  # an approver, other rule
    world.rule.approver_groups.clear()
    world.rule.approver_users.add(world.approver)
    assert client.get(reverse("review", args=[req.pk])).status_code == 404
    response = client.post(reverse("review", args=[req.pk]), {"decision": "approve", "comment": "lgtm"})
    assert response.status_code == 404
    assert not Decision.objects.exists()


def test_forged_ids_get_404(client, world):
    login(client, world.approver)
    for url in ("/requests/999999/", "/review/999999/", "/requests/abc/"):
        assert client.get(url).status_code == 404


def test_an_approver_without_mfa_reads_the_queue_and_comes_back_after_setting_it_up(client, world):
    no_mfa = make_user("fresh-approver", "approvers")
    world.rule.approver_users.add(no_mfa)
    req = world.submit()
    login(client, no_mfa)
    queue = client.get(reverse("queue")).content.decode()
    assert 'data-testid="mfa-banner"' in queue and req.reference in queue  # read-only, with one banner
    review = client.get(reverse("review", args=[req.pk])).content.decode()
    assert 'data-testid="mfa-banner"' in review and 'value="approve"' not in review
    refused = client.post(reverse("review", args=[req.pk]), {"decision": "approve", "comment": "x"})
    assert refused.status_code == 302 and not Decision.objects.exists()
    enable_totp(no_mfa)  # set up through allauth's own page in real life
    codes = client.get(reverse("mfa_index")).content.decode()
    assert 'data-testid="after-mfa"' in codes
    back = client.get(reverse("continue_after_mfa"))
    assert back["Location"] == reverse("review", args=[req.pk])


def test_requesters_get_404_on_the_review_pages(client, world):
    req = world.submit()
    login(client, world.requester)
    assert client.get(reverse("queue")).status_code == 404
    assert client.post(reverse("review", args=[req.pk]), {"decision": "approve"}).status_code == 404


def test_the_queue_shows_what_the_approver_may_decide_and_approving_works(client, world):
    req = world.submit()
    login(client, world.approver)
    queue = client.get(reverse("queue"))
    assert req.reference.encode() in queue.content
    assert req.justification.encode() in queue.content  # why, at a glance, before opening it
    review = client.get(reverse("review", args=[req.pk]))
    assert b"diff-add" in review.content
    response = client.post(reverse("review", args=[req.pk]), {"decision": "approve", "comment": "ok"})
    assert response.status_code == 302
    req.refresh_from_db()
    assert req.status == RequestStatus.APPROVED
    again = client.post(reverse("review", args=[req.pk]), {"decision": "approve", "comment": "ok"})
    assert again.status_code == 302
    assert Decision.objects.filter(request=req).count() == 1


def test_the_review_diff_shows_what_the_principal_already_holds(client, world):
    first = world.submit()
    request_approve(request_id=first.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    second = world.submit(level="operator")
    login(client, world.approver2)
    content = client.get(reverse("review", args=[second.pk])).content.decode()
    assert "codepipeline:StartPipelineExecution" in content
    added = [line for line in content.splitlines() if 'class="diff-add"' in line]
    assert not any("codepipeline:GetPipeline&quot;" in line and "Execution" not in line for line in added)


def _bulk_requests(world, n: int) -> None:
    template = world.submit()
    rows = []
    for _ in range(n - 1):
        clone = AccessRequest.objects.get(pk=template.pk)
        clone.pk = None
        rows.append(clone)
    AccessRequest.objects.bulk_create(rows, batch_size=500)


@pytest.mark.parametrize("n", [10, 1000])
def test_query_counts_do_not_grow_with_rows(client, world, django_assert_num_queries, n):
    _bulk_requests(world, n)
    req = AccessRequest.objects.order_by("-pk").first()
    login(client, world.requester)
    with django_assert_num_queries(QUERY_BUDGET["my_requests"]):
        assert client.get(reverse("my_requests")).status_code == 200
    with django_assert_num_queries(QUERY_BUDGET["detail"]):
        assert client.get(reverse("request_detail", args=[req.pk])).status_code == 200
    login(client, world.approver)
    with django_assert_num_queries(QUERY_BUDGET["queue"]):
        assert client.get(reverse("queue")).status_code == 200


@pytest.mark.parametrize("n", [10, 1000])
def test_home_shows_access_now_and_what_waits_in_a_fixed_number_of_queries(
    client, world, django_assert_num_queries, n
):
    _bulk_requests(world, n)
    approved = world.submit(level="operator")
    request_approve(
        request_id=approved.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver)
    )

    login(client, world.requester)
    with django_assert_num_queries(QUERY_BUDGET["home_requester"]):
        content = client.get(reverse("home")).content.decode()
    live = content.split('data-testid="live-grants"')[1].split("</ul>")[0]
    assert approved.reference in live and "Operator" in live and "ends" in live
    waiting = content.split('data-testid="waiting"')[1].split("</ul>")[0]
    assert waiting.count("<li") == 10 and approved.reference not in waiting
    assert 'data-testid="to-review"' not in content  # requesters have no queue

    login(client, world.approver)
    with django_assert_num_queries(QUERY_BUDGET["home_approver"]):
        content = client.get(reverse("home")).content.decode()
    shown = "99+" if n > 99 else str(n)
    assert f"<strong>{shown}</strong> requests wait for your review" in content

    login(client, world.other_requester)
    content = client.get(reverse("home")).content.decode()
    assert approved.reference not in content and "No request of yours is pending." in content


def test_home_tells_an_approver_without_two_factor_to_set_it_up(client):
    w = World()  # nobody has TOTP here
    w.submit()
    login(client, w.approver)
    content = client.get(reverse("home")).content.decode()
    assert "<strong>1</strong> request waits for your review" in content
    assert reverse("mfa_activate_totp") in content


def test_the_way_back_after_two_factor_is_offered_only_once_it_is_set_up(client):
    w = World()
    req = w.submit()
    login(client, w.approver)
    client.get(reverse("review", args=[req.pk]))  # the banner sends the approver to set it up, then back here
    setting_up = client.get(reverse("mfa_index")).content.decode()  # a page outside the approver's
    assert 'data-testid="after-mfa"' not in setting_up and "is set up" not in setting_up
    enable_totp(w.approver)
    done = client.get(reverse("mfa_index")).content.decode()
    assert 'data-testid="after-mfa"' in done and "Two-factor authentication is set up." in done


# Pinned: the same at 10 and at 1,000 requests (session + user + groups, then the page's own queries).
# The queue no longer lists every account for its filter (a picker searches them), and finds the oldest pending
# request first to read only the reviewer's decisions since then. Both approver pages are "Needs your review": they
# also read the ids of the break-glass post-reviews and access-review items waiting (one query each; loading the
# rows shown is one more each when there are any, see tests/test_query_counts.py), and the home page lists the
# first requests itself: queue 13, home 15.
QUERY_BUDGET = {"my_requests": 5, "detail": 9, "queue": 13, "home_requester": 6, "home_approver": 15}


# --- extending a grant from its page ------------------------------------------------------------------


def test_a_requester_extends_a_live_grant_through_the_prefilled_form(client, world):
    first = world.submit(level="operator", stage="Deploy")
    request_approve(request_id=first.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    grant = first.grant
    login(client, world.requester)

    detail = client.get(reverse("request_detail", args=[first.pk])).content.decode()
    link = f"{reverse('new_request')}?extends={grant.pk}"
    assert link in detail

    form = client.get(link)
    assert form.status_code == 200
    page = form.content.decode()
    assert 'data-testid="extending"' in page
    assert f'value="{grant.pk}"' in page and 'name="extends"' in page
    assert re.search(rf'name="pipelines" value="{world.pipeline.pk}"[^>]*checked', page)
    assert '<option value="operator" selected>' in page and 'value="Deploy"' in page

    data = form_data(
        world, level="operator", stage="Deploy", extends=grant.pk, justification="The release slipped"
    )
    response = client.post(reverse("new_request"), data)
    assert response.status_code == 302, response.content.decode()[:2000]
    extension = AccessRequest.objects.exclude(pk=first.pk).get()
    assert extension.extends == grant and extension.status == RequestStatus.PENDING
    shown = client.get(response["Location"]).content.decode()
    assert 'data-testid="extends"' in shown and first.reference in shown


def test_nobody_extends_a_grant_that_is_not_theirs_or_not_live(client, world):
    from accessrequests.models import Grant, GrantStatus

    first = world.submit()
    request_approve(request_id=first.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    grant = first.grant
    before = AccessRequest.objects.count()

    login(client, world.other_requester)
    assert client.get(f"{reverse('new_request')}?extends={grant.pk}").status_code == 404
    assert client.get(f"{reverse('new_request')}?extends=not-a-number").status_code == 404
    forged = client.post(reverse("new_request"), form_data(world, extends=grant.pk))
    assert forged.status_code == 400
    assert b"You have no grant with that number to extend." in forged.content
    assert AccessRequest.objects.count() == before

    login(client, world.requester)
    force_update(
        Grant.objects.filter(pk=grant.pk),
        status=GrantStatus.REVOKED,
        ending="revoked",
        revoked_at=timezone.now(),
    )
    detail = client.get(reverse("request_detail", args=[first.pk])).content.decode()
    assert 'data-testid="extend"' not in detail
    refused = client.get(f"{reverse('new_request')}?extends={grant.pk}", follow=True).content.decode()
    assert "is revoked; file a new request instead." in refused
    late = client.post(reverse("new_request"), form_data(world, extends=grant.pk))
    assert late.status_code == 400 and AccessRequest.objects.count() == before


# --- quorum progress ----------------------------------------------------------------------------------


def test_a_two_approval_request_says_where_its_approvals_stand_everywhere(client):
    world = World(approvals=2)
    enable_totp(world.approver)
    enable_totp(world.approver2)
    world.rule.name = "Production"
    world.rule.save()
    req = world.submit()
    login(client, world.approver)
    queue = client.get(reverse("queue")).content.decode()
    assert "0 of 2 approvals · waiting for two from Production" in queue
    done = client.post(
        reverse("review", args=[req.pk]), {"decision": "approve", "comment": "fine"}, follow=True
    )
    confirmation = (
        "Your approval of "
        + req.reference
        + " is recorded: 1 of 2 approvals (approver) · waiting for one more from Production."
    )
    assert confirmation in done.content.decode()
    login(client, world.approver2)
    queue = client.get(reverse("queue")).content.decode()
    assert "1 of 2 approvals (approver) · waiting for one more from Production" in queue
    login(client, world.requester)
    page = client.get(reverse("request_detail", args=[req.pk])).content.decode()
    assert "1 of 2 approvals (approver) · waiting for one more from Production" in page
    home = client.get(reverse("home")).content.decode()
    assert "1 of 2 approvals (approver) · waiting for one more from Production" in home
    login(client, world.approver2)
    client.post(reverse("review", args=[req.pk]), {"decision": "approve", "comment": "also fine"})
    login(client, world.requester)
    page = client.get(reverse("request_detail", args=[req.pk])).content.decode()
    assert "2 of 2 approvals (approver, approver2)" in page


def test_cancelling_asks_first_and_changes_nothing_until_confirmed(client, world):
    req = world.submit()
    login(client, world.requester)
    asked = client.post(reverse("cancel_request", args=[req.pk]))
    assert asked.status_code == 200 and f"Cancel {req.reference}?" in asked.content.decode()
    req.refresh_from_db()
    assert req.status == RequestStatus.PENDING
    done = client.post(reverse("cancel_request", args=[req.pk]), {"confirm": "yes"})
    assert done.status_code == 302
    req.refresh_from_db()
    assert req.status == RequestStatus.CANCELLED
