"""SCIM 2.0 provisioning as Okta and Entra ID do it: their documented request sequences (payloads below, as their
provisioning guides show them) over HTTP against /scim/v2/. After a deactivation the person's API token gets a
401, their session is gone, they are no longer asked to approve and their decisions on pending requests are void;
everything lands in the audit trail."""

from __future__ import annotations

import json

import pytest
from allauth.account.models import EmailAddress
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.core import mail
from django.test import Client

from accessrequests.models import AuditEvent, Decision, RequestStatus, ScimGroup, ScimUser
from accessrequests.notify.send import approvers_to_notify, notify_request_created
from accessrequests.workflow.requests import request_approve
from portal.settings import _group_roles
from tests.conftest import current_code, make_user, sign_in_with_mfa
from tests.factories import World, fresh_factor, make_token

pytestmark = pytest.mark.django_db

SCIM_TOKEN = "scim-token-for-tests-0123456789abcdef"
SCIM_JSON = "application/scim+json"


@pytest.fixture(autouse=True)
def scim_settings(settings):
    settings.GATEHOUSE_SCIM_TOKEN = SCIM_TOKEN
    settings.GATEHOUSE_OIDC_GROUP_ROLES = _group_roles(
        "aws-approvers=approvers,Gatehouse Approvers=approvers"
    )


class Scim:
    """The identity provider's SCIM client: JSON over HTTP with the bearer token."""

    def __init__(self, token: str = SCIM_TOKEN):
        self.client = Client()
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    def call(self, method: str, path: str, body=None, **extra):
        kwargs = dict(self.headers, **extra)
        if body is not None:
            kwargs["data"] = json.dumps(body)
            kwargs["content_type"] = SCIM_JSON
        return getattr(self.client, method)(f"/scim/v2/{path}", **kwargs)

    def get(self, path):
        return self.call("get", path)

    def post(self, path, body):
        return self.call("post", path, body)

    def put(self, path, body):
        return self.call("put", path, body)

    def patch(self, path, body):
        return self.call("patch", path, body)

    def delete(self, path):
        return self.call("delete", path)


@pytest.fixture
def scim():
    return Scim()


@pytest.fixture
def world():
    return World(approvals=2)


def _bearer(raw: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


# --- Okta ----------------------------------------------------------------------------------------------

OKTA_CREATE_USER = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
    "userName": "dana.reviewer@example.com",
    "name": {"givenName": "Dana", "familyName": "Reviewer"},
    "emails": [{"primary": True, "value": "dana.reviewer@example.com", "type": "work"}],
    "displayName": "Dana Reviewer",
    "locale": "en-US",
    "externalId": "00ujl29u0le5T6Aj10h7",
    "groups": [],
    "password": "1mz050nq",
    "active": True,
}
OKTA_CREATE_GROUP = {
    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
    "displayName": "aws-approvers",
    "members": [],
}


def okta_add_member(user_id: str) -> dict:
    return {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {
                "op": "add",
                "path": "members",
                "value": [{"value": user_id, "display": "dana.reviewer@example.com"}],
            }
        ],
    }


OKTA_DEACTIVATE = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "value": {"active": False}}],
}


def test_okta_provisions_a_reviewer_whose_deactivation_takes_everything_at_once(scim, world, client):
    # Okta looks the user up first, then creates them.
    lookup = scim.get("Users?filter=userName%20eq%20%22dana.reviewer%40example.com%22&startIndex=1&count=100")
    assert lookup.status_code == 200 and lookup.json()["totalResults"] == 0
    assert lookup["Content-Type"] == SCIM_JSON
    created = scim.post("Users", OKTA_CREATE_USER)
    assert created.status_code == 201, created.content
    dana_id = created.json()["id"]
    assert created.json()["userName"] == "dana.reviewer@example.com" and created.json()["active"] is True
    dana = User.objects.get(username="dana.reviewer@example.com")
    assert not dana.has_usable_password()  # Okta's password is dropped: people sign in through the IdP
    assert EmailAddress.objects.get(user=dana).verified
    group = scim.post("Groups", OKTA_CREATE_GROUP)
    assert group.status_code == 201
    assert scim.patch(f"Groups/{group.json()['id']}", okta_add_member(dana_id)).status_code == 204
    assert set(dana.groups.values_list("name", flat=True)) == {"approvers"}

    # Dana reviews: one of the two approvals a request needs, a browser session and a token.
    first = world.submit()
    second = world.submit(justification="Another deploy")
    request_approve(request_id=first.pk, reviewer=dana, second_factor=fresh_factor(dana), comment="ok")
    _, token = make_token(dana, "laptop")
    assert Client().get("/api/v1/requests/", **_bearer(token)).status_code == 200
    sign_in_with_mfa(client, dana)
    assert client.get("/review/").status_code == 200
    assert dana in approvers_to_notify(second)

    # Okta deactivates her.
    deactivated = scim.patch(f"Users/{dana_id}", OKTA_DEACTIVATE)
    assert deactivated.status_code == 200 and deactivated.json()["active"] is False

    assert Client().get("/api/v1/requests/", **_bearer(token)).status_code == 401
    assert client.get("/review/").status_code == 302  # the session is gone: back to the sign-in page
    assert not [s for s in Session.objects.all() if s.get_decoded().get("_auth_user_id") == str(dana.pk)]
    assert dana not in approvers_to_notify(second)
    notify_request_created.apply(args=[second.pk])
    assert "dana.reviewer@example.com" not in [a for m in mail.outbox for a in m.to]
    vote = Decision.objects.get(reviewer=dana, request=first)
    assert vote.voided_at is not None and vote.void_reason == "user deactivated"
    # Her approval no longer counts: two other people are still needed.
    request_approve(request_id=first.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver))
    first.refresh_from_db()
    assert first.status == RequestStatus.PENDING
    request_approve(
        request_id=first.pk, reviewer=world.approver2, second_factor=fresh_factor(world.approver2)
    )
    first.refresh_from_db()
    assert first.status == RequestStatus.APPROVED

    actions = list(AuditEvent.objects.order_by("id").values_list("action", flat=True))
    for action in (
        "scim.user_created", "scim.group_created", "scim.group_updated", "identity.roles_synced",
        "auth.user_deactivated", "request.decision_voided", "identity.user_offboarded", "scim.user_updated",
    ):  # fmt: skip
        assert action in actions, action
    offboarded = AuditEvent.objects.get(action="identity.user_offboarded")
    assert offboarded.actor_label == "scim (identity provider)"
    assert offboarded.after["decisions_voided"] == 1 and offboarded.after["sessions_deleted"] == 1
    voided = AuditEvent.objects.get(action="request.decision_voided")
    assert voided.request_id == first.pk and voided.before == {
        "reviewer": dana.username,
        "outcome": "approve",
    }
    assert "1mz050nq" not in json.dumps(list(AuditEvent.objects.values("before", "after")), default=str)


def test_okta_replaces_a_user_with_put_and_removes_a_member_by_filter(scim, world):
    dana_id = scim.post("Users", OKTA_CREATE_USER).json()["id"]
    group_id = scim.post("Groups", {**OKTA_CREATE_GROUP, "members": [{"value": dana_id}]}).json()["id"]
    dana = User.objects.get(username="dana.reviewer@example.com")
    assert dana.groups.filter(name="approvers").exists()

    replaced = scim.put(
        f"Users/{dana_id}",
        {**OKTA_CREATE_USER, "name": {"givenName": "Dana", "familyName": "Lead"}, "id": dana_id},
    )
    assert replaced.status_code == 200 and replaced.json()["name"]["familyName"] == "Lead"
    renamed = scim.patch(
        f"Groups/{group_id}",
        {"Operations": [{"op": "replace", "value": {"id": group_id, "displayName": "Gatehouse Approvers"}}]},
    )
    assert renamed.status_code == 204
    assert dana.groups.filter(name="approvers").exists()  # the new name maps to the same role
    removed = scim.patch(
        f"Groups/{group_id}", {"Operations": [{"op": "remove", "path": f'members[value eq "{dana_id}"]'}]}
    )
    assert removed.status_code == 204
    assert not User.objects.get(pk=dana.pk).groups.filter(name="approvers").exists()
    assert scim.get(f"Groups/{group_id}").json()["members"] == []


# --- Entra ID ------------------------------------------------------------------------------------------

ENTRA_CREATE_USER = {
    "schemas": [
        "urn:ietf:params:scim:schemas:core:2.0:User",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
    ],
    "externalId": "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef",
    "userName": "Test_User_ab6490ee-1e48-479e-a20b-2d77186b5dd1",
    "active": True,
    "emails": [
        {
            "primary": True,
            "type": "work",
            "value": "Test_User_fd0ea19b-0777-472c-9f96-4f70d2226f2e@testuser.com",
        }
    ],
    "meta": {"resourceType": "User"},
    "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
    "roles": [],
}
ENTRA_CREATE_GROUP = {
    "schemas": [
        "urn:ietf:params:scim:schemas:core:2.0:Group",
        "http://schemas.microsoft.com/2006/11/ResourceManagement/ADSCIM/2.0/Group",
    ],
    "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
    "displayName": "aws-approvers",
    "meta": {"resourceType": "Group"},
}


def test_entra_id_provisions_updates_and_disables_a_user_with_its_patch_dialect(scim, world):
    name = ENTRA_CREATE_USER["userName"]
    assert scim.get(f'Users?filter=userName+eq+"{name}"').json()["Resources"] == []
    user_id = scim.post("Users", ENTRA_CREATE_USER).json()["id"]
    assert scim.get(f'Users?filter=userName+eq+"{name}"').json()["Resources"][0]["id"] == user_id
    group_id = scim.post("Groups", ENTRA_CREATE_GROUP).json()["id"]
    assert scim.get(f"Groups/{group_id}?excludedAttributes=members").json().get("members") is None
    assert (
        scim.get('Groups?excludedAttributes=members&filter=displayName+eq+"aws-approvers"').json()[
            "totalResults"
        ]
        == 1
    )
    added = scim.patch(
        f"Groups/{group_id}",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
         "Operations": [{"op": "Add", "path": "members", "value": [{"$ref": None, "value": user_id}]}]},
    )  # fmt: skip
    assert added.status_code == 204
    person = User.objects.get(username=name)
    assert person.groups.filter(name="approvers").exists()

    updated = scim.patch(
        f"Users/{user_id}",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
         "Operations": [
             {"op": "Replace", "path": 'emails[type eq "work"].value', "value": "updatedEmail@microsoft.com"},
             {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"},
             {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
              "value": [{"$ref": None, "value": "Test_User_2"}]},
         ]},
    )  # fmt: skip
    assert updated.status_code == 200, updated.content
    person.refresh_from_db()
    assert (person.email, person.last_name) == ("updatedEmail@microsoft.com", "updatedFamilyName")
    assert EmailAddress.objects.get(user=person).email == "updatedEmail@microsoft.com"

    pending = world.submit()
    request_approve(request_id=pending.pk, reviewer=person, second_factor=fresh_factor(person))
    _, token = make_token(person, "ci")
    disabled = scim.patch(
        f"Users/{user_id}",
        {"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
         "Operations": [{"op": "Replace", "path": "active", "value": "False"}]},
    )  # fmt: skip
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    assert Client().get("/api/v1/requests/", **_bearer(token)).status_code == 401
    assert Decision.objects.get(reviewer=person).voided_at is not None
    assert person not in approvers_to_notify(world.submit(justification="next"))

    removed = scim.patch(
        f"Groups/{group_id}",
        {"Operations": [{"op": "Remove", "path": "members", "value": [{"$ref": None, "value": user_id}]}]},
    )
    assert removed.status_code == 204
    assert not person.groups.filter(name="approvers").exists()
    assert scim.delete(f"Users/{user_id}").status_code == 204
    assert scim.get(f"Users/{user_id}").status_code == 404
    assert User.objects.filter(pk=person.pk, is_active=False).exists()  # history still names them
    assert AuditEvent.objects.filter(action="scim.user_deleted").exists()
    # Entra ID may provision the same userName again later: a new resource for the same portal user.
    again = scim.post("Users", ENTRA_CREATE_USER)
    assert again.status_code == 201 and again.json()["id"] != user_id and again.json()["active"] is True


def test_group_membership_links_and_unlinks_the_principals_an_admin_attached_to_the_group(scim, world):
    user_id = scim.post("Users", OKTA_CREATE_USER).json()["id"]
    group_id = scim.post("Groups", {**OKTA_CREATE_GROUP, "displayName": "pipeline-team"}).json()["id"]
    ScimGroup.objects.get(display_name="pipeline-team").principals.add(world.principal)
    dana = User.objects.get(username="dana.reviewer@example.com")

    scim.patch(f"Groups/{group_id}", okta_add_member(user_id))
    assert world.principal.users.filter(pk=dana.pk).exists()
    scim.patch(
        f"Groups/{group_id}", {"Operations": [{"op": "remove", "path": f'members[value eq "{user_id}"]'}]}
    )
    assert not world.principal.users.filter(pk=dana.pk).exists()
    assert world.principal.users.filter(pk=world.requester.pk).exists()  # links made by hand stay
    synced = AuditEvent.objects.filter(action="identity.principals_synced").order_by("id")
    assert [e.after["linked"] or e.after["unlinked"] for e in synced] == [[world.principal.external_id]] * 2


def test_the_identity_providers_role_and_link_changes_are_audited_and_announced_to_admins(
    scim, world, settings, client, django_capture_on_commit_callbacks
):
    # The identity provider owns group membership: applied at once, with no second admin, so every admin hears.
    settings.CELERY_TASK_ALWAYS_EAGER = True
    admin = make_user("root-admin", "admins", is_staff=True)
    user_id = scim.post("Users", OKTA_CREATE_USER).json()["id"]
    group_id = scim.post("Groups", OKTA_CREATE_GROUP).json()["id"]  # aws-approvers: the approvers role
    ScimGroup.objects.get(display_name="aws-approvers").principals.add(world.principal)
    mail.outbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert scim.patch(f"Groups/{group_id}", okta_add_member(user_id)).status_code == 204

    roles = AuditEvent.objects.get(action="identity.roles_synced")
    assert roles.before == {"roles": []} and roles.after["roles"] == ["approvers"]
    links = AuditEvent.objects.get(action="identity.principals_synced")
    linked = f"IAM user mateojackson ({world.account.account_id})"
    assert links.before == {"user": "dana.reviewer@example.com", "principals": []}
    assert links.after["principals"] == [linked] and links.actor_label == "scim (identity provider)"
    subjects = sorted(m.subject for m in mail.outbox if m.to == [admin.email])
    assert subjects == [
        "[Gatehouse] Identity provider changed dana.reviewer@example.com's principals",
        "[Gatehouse] Identity provider changed dana.reviewer@example.com's roles",
    ]
    body = next(m.body for m in mail.outbox if m.subject.endswith("roles"))
    assert "The identity provider (scim) gave dana.reviewer@example.com the role approvers." in body
    assert "without a second admin" in body

    sign_in_with_mfa(client, admin)
    page = client.get("/dashboard/").content.decode()
    assert "Identity provider changes (last 7 days)" in page
    assert f"The identity provider (scim) linked dana.reviewer@example.com to {linked}." in page


# --- the token and bad input ---------------------------------------------------------------------------


def test_scim_opens_only_with_the_scim_token_and_the_scim_token_opens_nothing_else(world, settings):
    _, personal = make_token(world.requester, "laptop")
    for token in (personal, "wrong", ""):
        refused = Scim(token).get("Users")
        assert refused.status_code == 401 and refused.json()["status"] == "401"
        assert refused["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/api/v1/requests/", **_bearer(SCIM_TOKEN)).status_code == 401
    settings.GATEHOUSE_SCIM_TOKEN = ""
    assert Scim("").get("Users").status_code == 401  # no token configured: SCIM is off


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "scim_type"),
    [
        ("post", "Users", {"userName": ""}, 400, "invalidValue"),
        ("post", "Users", {"userName": "ok", "active": "maybe"}, 400, "invalidValue"),
        ("post", "Users", {"userName": "has space"}, 400, "invalidValue"),
        ("post", "Users", {"userName": "x", "emails": [{"value": "not-an-email"}]}, 400, "invalidValue"),
        ("post", "Users", ["not", "an", "object"], 400, "invalidValue"),
        ("post", "Groups", {"displayName": "g", "members": [{"value": "no-such-user"}]}, 400, "invalidValue"),
        ("get", 'Users?filter=emails co "x"', None, 400, "invalidFilter"),
        ("get", "Users?startIndex=abc", None, 400, "invalidValue"),
    ],
)
def test_bad_input_gets_a_scim_error_and_changes_nothing(scim, method, path, body, status, scim_type):
    response = scim.call(method, path, body)
    assert response.status_code == status, response.content
    assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    assert response.json()["scimType"] == scim_type and response.json()["detail"]
    assert not ScimUser.objects.exists() and not ScimGroup.objects.exists()
    assert not AuditEvent.objects.filter(action__startswith="scim.").exists()


def test_bad_patches_change_nothing(scim):
    user_id = scim.post("Users", OKTA_CREATE_USER).json()["id"]
    for body in (
        {},
        {"Operations": []},
        {"Operations": [{"op": "explode", "path": "active", "value": False}]},
        {"Operations": [{"op": "remove"}]},
        {"Operations": [{"op": "replace", "path": "active", "value": "nope"}]},
        {
            "Operations": [
                {"op": "replace", "path": "active", "value": False},
                {"op": "replace", "path": "userName", "value": ""},
            ]
        },
    ):
        assert scim.patch(f"Users/{user_id}", body).status_code == 400
    assert User.objects.get(username="dana.reviewer@example.com").is_active
    assert scim.get("Users/not-a-uuid").status_code == 404
    assert scim.patch("Users/00000000-0000-0000-0000-000000000000", OKTA_DEACTIVATE).status_code == 404


def test_a_second_user_with_the_same_name_is_a_conflict_and_an_admins_account_is_not_taken_over(scim):
    assert scim.post("Users", OKTA_CREATE_USER).status_code == 201
    clash = scim.post("Users", {**OKTA_CREATE_USER, "externalId": "other"})
    assert clash.status_code == 409 and clash.json()["scimType"] == "uniqueness"
    make_user("root", "admins", is_superuser=True)
    taken = scim.post(
        "Users", {**OKTA_CREATE_USER, "userName": "root", "emails": [{"value": "evil@example.com"}]}
    )
    assert taken.status_code == 409
    assert User.objects.get(username="root").email == "root@example.com"


def test_the_web_decision_pages_refuse_a_deactivated_approver_even_with_a_code(scim, world, client):
    user_id = scim.post("Users", OKTA_CREATE_USER).json()["id"]
    group_id = scim.post("Groups", OKTA_CREATE_GROUP).json()["id"]
    scim.patch(f"Groups/{group_id}", okta_add_member(user_id))
    dana = User.objects.get(username="dana.reviewer@example.com")
    sign_in_with_mfa(client, dana)
    req = world.submit()
    scim.patch(f"Users/{user_id}", OKTA_DEACTIVATE)
    response = client.post(
        f"/review/{req.pk}/", {"decision": "approve", "comment": "late", "code": current_code(dana)}
    )
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert not Decision.objects.exists()


def test_the_scim_token_never_reaches_logs_the_audit_trail_or_the_database(scim, caplog):
    import logging

    from tests.test_secrets import _everything_in_the_database

    caplog.set_level(logging.DEBUG)
    user_id = scim.post("Users", OKTA_CREATE_USER).json()["id"]
    scim.patch(f"Users/{user_id}", OKTA_DEACTIVATE)
    Scim("wrong-token").get("Users")
    audit = json.dumps(list(AuditEvent.objects.values("before", "after", "actor_label")), default=str)
    assert SCIM_TOKEN not in caplog.text and SCIM_TOKEN not in audit
    assert SCIM_TOKEN not in _everything_in_the_database()


def test_a_deactivated_requester_is_emailed_nothing_more(scim, world):
    from accessrequests.notify.send import notify_request_decided

    user_id = scim.post(
        "Users", {**OKTA_CREATE_USER, "userName": "requester", "emails": [{"value": "requester@example.com"}]}
    )
    assert user_id.status_code == 201  # the identity provider takes over the account of the same person
    req = world.submit()
    scim.patch(f"Users/{user_id.json()['id']}", OKTA_DEACTIVATE)
    from accessrequests.workflow.requests import request_deny

    request_deny(
        request_id=req.pk, reviewer=world.approver, second_factor=fresh_factor(world.approver), comment="no"
    )
    notify_request_decided.apply(args=[req.pk])
    assert mail.outbox == []
