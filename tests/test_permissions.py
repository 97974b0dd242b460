"""The authorization matrix, at the service layer: every service that changes state, asked by every role and
relationship, allows exactly whom it should. Nothing here goes through a view, so a check removed from a
service fails a test here even if every page still hides the button.

Relationships to a request filed by ``owner``:
- ``linked``: another portal user linked to the request's IAM user (mateojackson);
- ``member``: linked to marymajor, a member (in AWS) of the IAM group ``deployers``;
- ``trusted``: linked to an outside role that a cross-account request would trust;
- ``approver``: an approver of the request's rule; ``other_approver``: of another rule only;
- ``auditor``, ``admin``, ``admin_auditor`` (an auditor who is also an admin: still read-only), ``outsider``.
``linked``, ``member`` and ``trusted`` are approvers of the rule too, so what refuses them is the recipient rule.
"""

from __future__ import annotations

from datetime import timedelta

import boto3
import pytest
from django.utils import timezone

from accessrequests.authz import permissions
from accessrequests.authz.permissions import NotAllowed, SecondFactor
from accessrequests.identity.tokens import token_issue
from accessrequests.models import (
    AccessLevel,
    AccessRequest,
    ApiToken,
    Decision,
    Grant,
    GrantStatus,
    PrincipalKind,
    RequestKind,
    RequestStatus,
)
from accessrequests.provisioning import engine as provisioning
from accessrequests.workflow.requests import (
    RequestDraft,
    request_approve,
    request_cancel,
    request_deny,
    request_submit,
)
from tests.conftest import make_user
from tests.factories import fresh_factor, make_account, make_pipeline, make_principal, make_rule

pytestmark = pytest.mark.django_db

ACCOUNT = "123456789012"
OUTSIDE = "210987654321"
ACTORS = (
    "owner", "linked", "member", "trusted", "approver", "other_approver",
    "auditor", "admin", "admin_auditor", "outsider",
)  # fmt: skip


class Org:
    """The catalog and people of the matrix; the IAM group's membership lives in AWS (moto)."""

    def __init__(self, endpoint: str | None):
        self.account = make_account(ACCOUNT, "sandbox")
        self.outside = make_account(OUTSIDE, "partner")
        self.pipeline = make_pipeline(self.account)
        self.people = {
            "owner": make_user("owner", "requesters"),
            "linked": make_user("linked", "requesters", "approvers"),
            "member": make_user("member", "requesters", "approvers"),
            "trusted": make_user("trusted", "requesters", "approvers"),
            "approver": make_user("approver", "approvers"),
            "other_approver": make_user("other_approver", "release-managers"),
            "auditor": make_user("auditor", "auditors"),
            "admin": make_user("admin", "admins", is_staff=True),
            "admin_auditor": make_user("admin_auditor", "admins", "auditors", is_staff=True),
            "outsider": make_user("outsider", "requesters"),
        }
        self.principal = make_principal(
            self.account, "mateojackson", users=[self.people["owner"], self.people["linked"]]
        )
        self.marymajor = make_principal(self.account, "marymajor", users=[self.people["member"]])
        self.group = make_principal(
            self.account, "deployers", PrincipalKind.IAM_GROUP, users=[self.people["owner"]]
        )
        self.outside_role = make_principal(
            self.outside, "Deployer", PrincipalKind.IAM_ROLE, users=[self.people["trusted"]]
        )
        self.rule = make_rule(accounts=[self.account], max_duration_hours=8)
        make_rule("Releases", accounts=[self.outside], group="release-managers")
        if endpoint:
            iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1")
            for name in ("mateojackson", "marymajor"):
                iam.create_user(UserName=name)
            iam.create_group(GroupName="deployers")
            iam.add_user_to_group(GroupName="deployers", UserName="marymajor")

    def who(self, actor: str):
        return self.people[actor]

    def draft(self, scenario: str = "principal", **fields) -> RequestDraft:
        values = {
            "principal": self.group if scenario == "group" else self.principal,
            "kind": RequestKind.CROSS_ACCOUNT if scenario == "cross_account" else RequestKind.PIPELINE,
            "account": self.account,
            "pipelines": [self.pipeline],
            "level": AccessLevel.VIEWER,
            "justification": "Investigating a failed release",
            "duration_hours": 4,
        }
        if scenario == "cross_account":
            values["trusted_principal_arn"] = self.outside_role.external_id
        values.update(fields)
        return RequestDraft(**values)

    def pending(self, scenario: str = "principal") -> AccessRequest:
        return request_submit(requester=self.people["owner"], draft=self.draft(scenario))

    def granted(self) -> Grant:
        req = self.pending()
        approver = self.people["approver"]
        request_approve(request_id=req.pk, reviewer=approver, second_factor=fresh_factor(approver))
        return Grant.objects.get(request=req)


@pytest.fixture
def org(request):
    # Only decisions on the group need AWS (its members are read from IAM); the rest is the database alone.
    needs_aws = "group" in request.node.name
    endpoint = request.getfixturevalue("aws") if needs_aws else None
    return Org(endpoint)


def _attempt(call) -> bool:
    """True when the service did it, False when a rule refused it (any other error is a failure)."""
    try:
        call()
    except NotAllowed:
        return False
    return True


def _case(allowed: set[str]):
    return [pytest.param(actor, actor in allowed, id=actor) for actor in ACTORS]


# --- filing ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("actor", "expected"), _case({"owner", "linked", "admin"}))
def test_who_may_file_for_a_principal(org, actor, expected):
    user = org.who(actor)
    assert _attempt(lambda: request_submit(requester=user, draft=org.draft())) is expected
    assert AccessRequest.objects.filter(requester=user).exists() is expected


def test_a_request_for_a_group_or_an_outside_role_is_on_behalf_of_the_others(org):
    assert org.pending().on_behalf is False  # mateojackson is linked to the owner
    assert org.pending("group").on_behalf is True  # marymajor is in the group, and not the owner's
    assert org.pending("cross_account").on_behalf is True  # the outside role is not the owner's


# --- deciding -------------------------------------------------------------------------------------------

DECIDERS = {
    "principal": {"approver", "member", "trusted"},  # linked is a recipient: mateojackson is theirs
    "group": {"approver", "linked", "trusted"},  # member is a recipient: marymajor is in the group
    "cross_account": {"approver", "linked", "member"},  # trusted is a recipient: the role trusts theirs
}


@pytest.mark.parametrize("decision", ["approve", "deny"])
@pytest.mark.parametrize(
    ("scenario", "actor", "expected"),
    [
        pytest.param(scenario, actor, actor in allowed, id=f"{scenario}-{actor}")
        for scenario, allowed in DECIDERS.items()
        for actor in ACTORS
    ],
)
def test_who_may_decide(org, scenario, actor, expected, decision):
    req = org.pending(scenario)
    user = org.who(actor)
    service = request_approve if decision == "approve" else request_deny
    done = _attempt(
        lambda: service(request_id=req.pk, reviewer=user, second_factor=fresh_factor(user), comment="checked")
    )
    assert done is expected
    assert Decision.objects.filter(request=req, reviewer=user).exists() is expected


def test_a_group_member_added_in_aws_after_the_last_sync_is_still_a_recipient(org):
    req = org.pending("group")
    assert not org.group.members.exists()  # the catalog has not read the membership yet
    with pytest.raises(NotAllowed, match="would reach you"):
        request_approve(
            request_id=req.pk, reviewer=org.who("member"), second_factor=fresh_factor(org.who("member"))
        )
    assert list(org.group.members.all()) == [org.marymajor]


@pytest.mark.parametrize(
    ("factor", "reason"),
    [
        (lambda user, other: None, "needs your second factor"),
        (
            lambda user, other: SecondFactor(
                user.pk, "totp", timezone.now() - timedelta(minutes=6), "session"
            ),
            "older than",
        ),
        (lambda user, other: fresh_factor(other), "needs your second factor"),
    ],
    ids=["none", "stale", "someone-elses"],
)
def test_a_decision_needs_the_deciders_own_fresh_second_factor(org, factor, reason):
    req = org.pending()
    approver = org.who("approver")
    for service in (request_approve, request_deny):
        with pytest.raises(NotAllowed, match=reason):
            service(
                request_id=req.pk,
                reviewer=approver,
                second_factor=factor(approver, org.who("member")),
                comment="x",
            )
    assert not Decision.objects.exists()


def test_a_request_that_waited_past_its_review_window_cannot_be_decided(org, settings):
    req = org.pending()
    AccessRequest.objects.filter(pk=req.pk).update(
        created_at=timezone.now() - timedelta(hours=settings.GATEHOUSE_PENDING_EXPIRY_HOURS, minutes=1)
    )
    approver = org.who("approver")
    with pytest.raises(NotAllowed, match="waited more than"):
        request_approve(request_id=req.pk, reviewer=approver, second_factor=fresh_factor(approver))
    req.refresh_from_db()
    assert req.status == RequestStatus.PENDING and not Grant.objects.exists()


# --- the requester's own actions, and the admins' ------------------------------------------------------


@pytest.mark.parametrize(("actor", "expected"), _case({"owner"}))
def test_who_may_cancel(org, actor, expected):
    req = org.pending()
    assert _attempt(lambda: request_cancel(request_id=req.pk, requester=org.who(actor))) is expected
    req.refresh_from_db()
    assert (req.status == RequestStatus.CANCELLED) is expected


@pytest.mark.parametrize(("actor", "expected"), _case({"owner", "admin"}))
def test_who_may_revoke(org, actor, expected):
    grant = org.granted()
    assert _attempt(lambda: provisioning.grant_revoke(grant_id=grant.pk, actor=org.who(actor))) is expected
    grant.refresh_from_db()
    assert (grant.status == GrantStatus.REVOKING) is expected


@pytest.mark.parametrize("operation", ["retry", "abandon"])
@pytest.mark.parametrize(("actor", "expected"), _case({"admin"}))
def test_who_may_retry_or_abandon(org, actor, expected, operation):
    grant = org.granted()  # queued: both operations apply
    service = provisioning.grant_retry_now if operation == "retry" else provisioning.grant_abandon
    assert _attempt(lambda: service(grant_id=grant.pk, actor=org.who(actor))) is expected
    grant.refresh_from_db()
    assert (grant.status == GrantStatus.REVOKING) is (expected and operation == "abandon")


@pytest.mark.parametrize(("actor", "expected"), _case({"owner"}))
def test_who_may_extend(org, actor, expected):
    grant = org.granted()
    user = org.who(actor)
    draft = org.draft(extends=grant, justification="the release slipped")
    assert _attempt(lambda: request_submit(requester=user, draft=draft)) is expected
    assert AccessRequest.objects.filter(extends=grant).exists() is expected


@pytest.mark.parametrize(
    ("actor", "expected"), _case({"linked", "member", "trusted", "approver", "other_approver", "admin"})
)
def test_who_may_make_a_token_that_decides(org, actor, expected):
    user = org.who(actor)
    assert _attempt(lambda: token_issue(user=user, name="ci", scopes=["read", "decide"], days=30)) is expected
    assert ApiToken.objects.filter(user=user).exists() is expected


@pytest.mark.parametrize("actor", ["auditor", "admin_auditor"])
def test_auditors_tokens_only_read(org, actor):
    user = org.who(actor)
    with pytest.raises(NotAllowed, match="only read"):
        token_issue(user=user, name="ci", scopes=["read", "request"], days=30)
    token, _ = token_issue(user=user, name="ci", scopes=["read"], days=30)
    assert token.scopes == ["read"]


@pytest.mark.parametrize(("actor", "expected"), _case({"auditor", "admin", "admin_auditor"}))
def test_who_reads_the_audit_trail(org, actor, expected):
    assert (permissions.read_audit_problem(org.who(actor)) is None) is expected
