"""Single sign-on against a real, independent OpenID Provider (oidc-provider in a Node process on 127.0.0.1):
a real Chromium signs in through its login and consent pages and lands with the roles of its groups; the
roles follow the groups at every sign-in; a forged state, a replayed code and a code from another browser's
sign-in are refused."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from accessrequests.models import AuditEvent
from portal.oidc import nonce_problem
from portal.settings import _group_roles
from tests.conftest import screenshot, wait_for
from tests.oidc_support import CALLBACK_PATH, PASSWORD, OpenIdProvider, ScriptedBrowser, params, with_params

pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="session")
def openid_provider(live_server, tmp_path_factory):
    provider = OpenIdProvider(tmp_path_factory.mktemp("oidc") / "provider.json", live_server.url).start()
    yield provider
    provider.stop()


@pytest.fixture
def idp(openid_provider, settings):
    """Gatehouse registered with the provider (as the README says, through settings), users reset."""
    from tests.oidc_support import DEFAULT_USERS

    openid_provider.write(DEFAULT_USERS)
    providers = dict(settings.SOCIALACCOUNT_PROVIDERS)
    providers["openid_connect"] = openid_provider.app_settings()
    settings.SOCIALACCOUNT_PROVIDERS = providers
    settings.OIDC_ENABLED = True
    settings.GATEHOUSE_OIDC_GROUP_ROLES = _group_roles("aws-approvers=approvers,sec=auditors,sec=requesters")
    return openid_provider


def roles_of(username: str) -> set[str]:
    return set(User.objects.get(username=username).groups.values_list("name", flat=True))


def sign_in_in_chromium(page, login: str, gatehouse_url: str) -> None:
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Sign in with Test IdP").click()
    page.wait_for_load_state()
    if page.locator('input[name="password"]').count():
        page.fill('input[name="login"]', login)
        page.fill('input[name="password"]', PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_load_state()
    if page.get_by_role("button", name="Allow").count():
        page.get_by_role("button", name="Allow").click()
    page.wait_for_url(gatehouse_url + "/")


@pytest.mark.browser
def test_chromium_signs_in_through_the_providers_login_and_consent_pages_and_lands_with_its_groups_roles(
    idp, page, live_server
):
    authorize_requests = []
    page.on(
        "request",
        lambda r: authorize_requests.append(r.url) if r.url.startswith(idp.url + "/auth?") else None,
    )

    page.goto("/accounts/login/")
    page.get_by_role("button", name="Sign in with Test IdP").click()
    page.wait_for_selector('input[name="password"]')
    assert page.url.startswith(idp.url + "/interaction/")
    screenshot(page, "oidc-provider-login")
    page.fill('input[name="login"]', "alice")
    page.fill('input[name="password"]', PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("button", name="Allow").wait_for()
    assert "groups" in page.content()  # the consent page lists what Gatehouse asks for
    page.get_by_role("button", name="Allow").click()
    page.wait_for_url(live_server.url + "/")
    screenshot(page, "oidc-signed-in")

    assert "alice" in page.content()
    assert roles_of("alice") == {"approvers"}
    [first] = authorize_requests
    sent = params(first)
    assert sent["code_challenge_method"] == "S256" and len(sent["code_challenge"]) >= 43
    assert len(sent["nonce"]) >= 32 and len(sent["state"]) >= 8
    assert sent["redirect_uri"] == live_server.url + CALLBACK_PATH
    synced = AuditEvent.objects.get(action="identity.roles_synced")
    assert synced.after["added"] == ["approvers"] and synced.actor_label == "oidc (identity provider)"
    assert AuditEvent.objects.filter(
        action="auth.login", object_id=str(User.objects.get(username="alice").pk)
    ).exists()


@pytest.mark.browser
def test_a_group_change_at_the_provider_changes_the_role_at_the_next_sign_in(idp, page, live_server):
    sign_in_in_chromium(page, "alice", live_server.url)
    wait_for(lambda: roles_of("alice") == {"approvers"}, what="alice to be an approver")

    idp.set_groups("alice", ["sec"])
    page.goto("/accounts/logout/")
    page.get_by_role("button", name="Sign out", exact=True).click()
    page.wait_for_url(lambda url: "/accounts/login/" in url)
    sign_in_in_chromium(page, "alice", live_server.url)

    assert roles_of("alice") == {"auditors", "requesters"}
    removed = AuditEvent.objects.filter(action="identity.roles_synced").order_by("id").last()
    assert removed.after["removed"] == ["approvers"] and removed.after["idp_groups"] == ["sec"]


def test_a_role_given_by_hand_that_the_mapping_does_not_name_is_left_alone_and_admins_never_come_from_claims(
    idp, live_server
):
    idp.set_groups("bob", ["admins", "Domain Admins", "aws-approvers"])
    browser = ScriptedBrowser(live_server.url)
    browser.callback(browser.authorize("bob"))
    assert browser.signed_in()
    assert roles_of("bob") == {"approvers"}  # "admins" is a group at the provider, not a mapped role


def test_a_role_given_at_sign_in_is_audited_with_before_and_after_and_announced_to_admins(
    idp, live_server, settings
):
    # Roles are the identity provider's: applied at sign-in with no second admin, so admins are told each time.
    from django.core import mail
    from django.test import Client

    from tests.conftest import make_user, sign_in_with_mfa

    settings.CELERY_TASK_ALWAYS_EAGER = True
    admin = make_user("root-admin", "admins", is_staff=True)
    idp.set_groups("bob", ["aws-approvers"])
    browser = ScriptedBrowser(live_server.url)
    browser.callback(browser.authorize("bob"))
    assert browser.signed_in() and roles_of("bob") == {"approvers"}

    synced = AuditEvent.objects.get(action="identity.roles_synced")
    assert synced.before == {"roles": []} and synced.after["roles"] == ["approvers"]
    announced = wait_for(
        lambda: [m for m in mail.outbox if m.to == [admin.email]], what="the admins' email about bob's roles"
    )
    assert [m.subject for m in announced] == ["[Gatehouse] Identity provider changed bob's roles"]
    assert "The identity provider (oidc) gave bob the role approvers." in announced[0].body
    client = Client()
    sign_in_with_mfa(client, admin)
    page = client.get("/dashboard/").content.decode()
    assert "The identity provider (oidc) gave bob the role approvers." in page


def test_a_forged_state_is_refused_and_nobody_is_signed_in(idp, live_server):
    browser = ScriptedBrowser(live_server.url)
    callback = browser.authorize("alice")

    refused = browser.callback(with_params(callback, state="forged-state-value"))

    assert refused.status_code == 401 and "login failure" in refused.text.lower(), refused.text[:500]
    assert not browser.signed_in()
    assert not User.objects.filter(username="alice").exists()


def test_a_replayed_code_is_refused(idp, live_server):
    first = ScriptedBrowser(live_server.url)
    used = first.authorize("alice")
    assert first.callback(used).status_code == 200 and first.signed_in()

    # The same callback again: its state was used up.
    again = ScriptedBrowser(live_server.url)
    assert "login failure" in again.callback(used).text.lower() and not again.signed_in()
    # The used code under a fresh, valid state of a new sign-in: the provider refuses to redeem it twice.
    replay = ScriptedBrowser(live_server.url)
    fresh = replay.authorize("alice")
    response = replay.callback(with_params(fresh, code=params(used)["code"]))
    assert "login failure" in response.text.lower()
    assert not replay.signed_in()


def test_a_code_from_another_browsers_sign_in_is_refused(idp, live_server):
    """A code injected into someone else's sign-in (a stolen callback link) fails PKCE: it was issued for the
    other browser's challenge."""
    victim, attacker = ScriptedBrowser(live_server.url), ScriptedBrowser(live_server.url)
    victims_code = params(victim.authorize("alice"))["code"]
    attackers_callback = attacker.authorize("bob")

    response = attacker.callback(with_params(attackers_callback, code=victims_code))

    assert "login failure" in response.text.lower()
    assert not attacker.signed_in()
    assert not User.objects.filter(username="alice").exists()


def test_an_id_token_without_this_sign_ins_nonce_is_refused():
    state = {"nonce": "n-0S6_WzA2Mj"}
    assert nonce_problem(state, {"id_token": {"nonce": "n-0S6_WzA2Mj"}}) is None
    assert "nonce mismatch" in nonce_problem(state, {"id_token": {"nonce": "other"}})
    assert "nonce mismatch" in nonce_problem(state, {"id_token": {}})
    assert "not started here" in nonce_problem({}, {"id_token": {"nonce": "n-0S6_WzA2Mj"}})


def test_a_mapping_to_an_unknown_role_stops_the_process_with_one_line():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured, match="GATEHOUSE_OIDC_GROUP_ROLES"):
        _group_roles("aws-approvers=superusers")
    assert _group_roles("a=approvers, b=admins") == {
        "a": frozenset({"approvers"}),
        "b": frozenset({"admins"}),
    }
