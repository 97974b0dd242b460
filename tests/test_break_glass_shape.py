"""Break-glass has one shape on every path (the web form, the API, the Slack command): only the kinds its rule
names (pipeline access unless it names more), and only access that reaches nobody but the person breaking the
glass. The service decides (``permissions.break_glass_shape_problem``), so every path is refused the same way,
with the rule's name and what to do instead; what a rule names is applied for real (read back from moto)."""

from __future__ import annotations

import itertools
import json

import boto3
import pytest
from allauth.account.models import EmailAddress
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from accessrequests.authz.permissions import NotAllowed
from accessrequests.models import (
    AccessRequest,
    AwsAccount,
    Grant,
    GrantStatus,
    PermissionSet,
    Principal,
    PrincipalKind,
    RequestKind,
    RequestStatus,
)
from accessrequests.workflow.break_glass import break_glass_submit
from tests.conftest import make_user
from tests.factories import make_principal, make_token
from tests.rules_support import Org
from tests.slack_support import BOT_TOKEN, SIGNING_SECRET, FakeSlack, signed_form, slash_command

REASON = "Production deploy is stuck at the approval stage; customers cannot check out"
RULE = "“Sandbox pipelines”"
CONTACT = "(contact platform@example.com)"
ASKED = {
    RequestKind.PASS_ROLE: "PassRole",
    RequestKind.PERMISSION_SET: "permission sets",
    RequestKind.CROSS_ACCOUNT: "cross-account access",
}
OTHER_KINDS = list(ASKED)
ALL_KINDS = ["pipeline", *OTHER_KINDS]


def only_pipeline(kind: str) -> str:
    return f"Break-glass under the rule {RULE} gives pipeline access only; ask its approvers for {ASKED[kind]} the normal way {CONTACT}."


def denied(user: str, action: str = "iam:PassRole") -> str:
    """The AccessDenied message ``user`` got for ``action`` (PassRole of the pipelines' service role)."""
    resource = (
        "arn:aws:iam::123456789012:role/CodePipelineServiceRole"
        if action == "iam:PassRole"
        else "my-pipeline"
    )
    return f"User: arn:aws:iam::123456789012:user/{user} is not authorized to perform: {action} on resource: {resource}"


@pytest.fixture
def org(db, settings):
    settings.GATEHOUSE_BREAK_GLASS_PER_DAY = 50
    org = Org()
    org.boss = make_user(
        "boss", "admins"
    )  # an admin, who may file on anyone's behalf, but never break-glass so
    org.rule.break_glass_users.add(org.requester, org.boss)
    # The requester's own IAM user in production, which a cross-account role in the sandbox may trust.
    org.prod_self = make_principal(org.production, "requester-prod", users=[org.requester])
    return org


def set_kinds(rule, kinds: list[str]) -> None:
    rule.break_glass_kinds = kinds
    rule.save(update_fields=["break_glass_kinds"])


def draft_of(org, kind: str, **overrides):
    fields = {"justification": REASON, "duration_hours": 1}
    if kind == RequestKind.PASS_ROLE:
        fields.update(kind=kind, pass_role=org.role, pipelines=[], level="")
    elif kind == RequestKind.PERMISSION_SET:
        fields.update(kind=kind, principal=org.ic_user, permission_set=org.read_set, pipelines=[], level="")
    elif kind == RequestKind.CROSS_ACCOUNT:
        fields.update(kind=kind, trusted_principal_arn=org.prod_self.external_id)
    return org.draft(**{**fields, **overrides})


def glass(org, draft, user=None):
    return break_glass_submit(requester=user or org.requester, draft=draft, incident="INC-4711")


# --- the service -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", OTHER_KINDS)
def test_break_glass_gives_pipeline_access_only_until_the_rule_names_the_kind(org, kind):
    assert glass(org, org.draft(justification=REASON, duration_hours=1)).kind == RequestKind.PIPELINE
    with pytest.raises(NotAllowed) as refused:
        glass(org, draft_of(org, kind))
    assert str(refused.value) == only_pipeline(kind)
    assert not AccessRequest.objects.filter(kind=kind).exists()

    set_kinds(org.rule, ["pipeline", kind])
    req = glass(org, draft_of(org, kind))
    assert (req.kind, req.status, req.break_glass) == (kind, RequestStatus.APPROVED, True)
    assert Grant.objects.get(request=req).status == GrantStatus.QUEUED


def test_a_rule_may_name_a_kind_without_pipeline_access(org):
    set_kinds(org.rule, [RequestKind.PASS_ROLE])
    with pytest.raises(
        NotAllowed, match=f"under the rule {RULE} gives PassRole only; ask its approvers for pipeline"
    ):
        glass(org, org.draft(justification=REASON, duration_hours=1))
    assert glass(org, draft_of(org, RequestKind.PASS_ROLE)).kind == RequestKind.PASS_ROLE


def test_break_glass_never_reaches_anyone_else_whatever_kinds_the_rule_names(org):
    set_kinds(org.rule, ALL_KINDS)
    own = f"Break-glass under the rule {RULE} is for your own access only, and "
    group = make_principal(org.account, "developers", kind=PrincipalKind.IAM_GROUP, users=[org.requester])
    group.members.add(make_principal(org.account, "marymajor"))
    unread = make_principal(org.account, "releasers", kind=PrincipalKind.IAM_GROUP, users=[org.requester])
    group.members_synced_at = timezone.now()
    group.save(update_fields=["members_synced_at"])
    theirs = make_principal(org.production, "other-prod", users=[org.other_requester])
    cases = [
        # Someone else's principal, even for an admin (who may otherwise file on anyone's behalf).
        (org.boss, {}, own + "IAM user mateojackson is not linked to you"),
        # A principal of one's own that a group the access goes to shares with someone else.
        (org.requester, {"principal": group}, own + "this access would also reach IAM user marymajor"),
        (
            org.requester,
            {"principal": unread},
            own
            + "this access would also reach the members of IAM group releasers, which Gatehouse has not read yet",
        ),
        # An outside account: whoever its administrators let in.
        (
            org.requester,
            {"kind": RequestKind.CROSS_ACCOUNT, "trusted_account_id": "210987654321"},
            own
            + "this access would also reach any principal of account 210987654321 that its administrators allow",
        ),
        (
            org.requester,
            {
                "kind": RequestKind.CROSS_ACCOUNT,
                "trusted_principal_arn": "arn:aws:iam::210987654321:role/Deployer",
            },
            own + "this access would also reach arn:aws:iam::210987654321:role/Deployer",
        ),
        (
            org.requester,
            {"kind": RequestKind.CROSS_ACCOUNT, "trusted_principal_arn": theirs.external_id},
            own + "this access would also reach IAM user other-prod, other",
        ),
    ]
    for user, overrides, message in cases:
        with pytest.raises(NotAllowed) as refused:
            glass(org, org.draft(justification=REASON, duration_hours=1, level="viewer", **overrides), user)
        assert message in str(refused.value) and RULE in str(refused.value), overrides
        assert str(refused.value).endswith(f"the normal way {CONTACT}."), overrides
    # The principal shared with another person reaches them too.
    org.principal.users.add(org.other_requester)
    with pytest.raises(NotAllowed, match="would also reach other;"):
        glass(org, org.draft(justification=REASON, duration_hours=1))
    assert not AccessRequest.objects.exists()


# --- every path: the web form, the API, Slack ------------------------------------------------------------

SOMEONE_ELSES = "someone_else"


def api_body(org, case: str) -> dict:
    body = {
        "kind": "pipeline", "account": org.account.account_id, "principal": org.principal.pk,
        "pipelines": ["my-pipeline"], "level": "viewer", "justification": REASON, "duration_hours": 1,
        "break_glass": True, "incident": "INC-4711",
    }  # fmt: skip
    if case == RequestKind.PASS_ROLE:
        body.update(kind=case, pass_role=org.role.arn, pipelines=[], level="")
    elif case == RequestKind.PERMISSION_SET:
        body.update(
            kind=case, principal=org.ic_user.pk, permission_set=org.read_set.arn, pipelines=[], level=""
        )
    elif case == RequestKind.CROSS_ACCOUNT:
        # The outside party is who receives it: no principal is named.
        del body["principal"]
        body.update(kind=case, trusted_principal_arn=org.prod_self.external_id)
    return body


def web_form(org, case: str) -> dict:
    body = {
        "intent": "submit", "kind": "pipeline", "account": org.account.account_id, "principal": org.principal.pk,
        "pipelines": [org.pipeline.pk], "level": "viewer", "justification": REASON, "incident": "INC-4711",
        "duration_hours": 1,
    }  # fmt: skip
    if case == RequestKind.PASS_ROLE:
        body.update(kind=case, pass_role=org.role.pk, pipelines=[], level="")
    elif case == RequestKind.PERMISSION_SET:
        body.update(
            kind=case, principal=org.ic_user.pk, permission_set=org.read_set.pk, pipelines=[], level=""
        )
    elif case == RequestKind.CROSS_ACCOUNT:
        body.update(kind=case, trusted_principal_arn=org.prod_self.external_id)
    return body


TOKENS = itertools.count()


def through_api(org, user, case: str) -> tuple[bool, str]:
    _, raw = make_token(user, f"break-glass-{next(TOKENS)}")
    answer = Client().post(
        "/api/v1/requests/", json.dumps(api_body(org, case)), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )  # fmt: skip
    assert answer.status_code in (201, 403), answer.content
    return answer.status_code == 201, answer.json().get("error") or ""


def through_web(org, user, case: str) -> tuple[bool, str]:
    client = Client()
    client.force_login(user)
    answer = client.post("/break-glass/new/", web_form(org, case))
    assert answer.status_code in (302, 400), answer.content
    return answer.status_code == 302, answer.content.decode()


def through_slack(org, user, case: str) -> tuple[bool, str]:
    """Slack reads a pasted AccessDenied message, which asks for pipeline actions or PassRole on the principal
    it names; mateojackson is the requester's own, so the admin's command is for someone else's."""
    message = denied("mateojackson", "codepipeline:GetPipeline" if case == SOMEONE_ELSES else "iam:PassRole")
    slack_user = {org.requester.pk: "U0REQUESTER", org.boss.pk: "U0BOSS"}[user.pk]
    fields = slash_command(f"break-glass INC-4711 {message} -- {REASON}", slack_user=slack_user)
    answer = Client().post(reverse("slack_commands"), **signed_form(fields))
    assert answer.status_code == 200, answer.content
    text = answer.json()["text"]
    return text.startswith("Break-glass GH-"), text


PATHS = {"api": through_api, "web": through_web, "slack": through_slack}
# What each path can ask for: a pasted AccessDenied message never asks for a permission set or a role outside
# principals assume, so Slack has no way to ask for them at all.
CASES = [
    *((path, kind) for path in ("api", "web") for kind in OTHER_KINDS),
    ("slack", RequestKind.PASS_ROLE),
    *((path, SOMEONE_ELSES) for path in PATHS),
]


@pytest.fixture
def slack(org, settings):
    fake = FakeSlack()
    settings.SLACK_BOT_TOKEN = BOT_TOKEN
    settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
    settings.SLACK_API_URL = fake.url
    for user, slack_id in ((org.requester, "U0REQUESTER"), (org.boss, "U0BOSS")):
        EmailAddress.objects.create(user=user, email=user.email, verified=True, primary=True)
        fake.add_user(slack_id, user.email)
    yield fake
    fake.close()


@pytest.mark.parametrize(("path", "case"), CASES)
def test_every_path_refuses_what_the_rule_does_not_name_and_someone_elses_principal_always_naming_the_rule(
    org, slack, path, case
):
    through = PATHS[path]
    user = org.boss if case == SOMEONE_ELSES else org.requester
    applied, said = through(org, user, case)
    assert not applied
    if case == SOMEONE_ELSES:
        assert (
            f"Break-glass under the rule {RULE} is for your own access only, and IAM user mateojackson is not linked to you"
            in said
        )
    else:
        assert only_pipeline(case).replace("&", "&amp;") in said
    assert not AccessRequest.objects.exists()

    set_kinds(org.rule, ALL_KINDS)
    applied, said = through(org, user, case)
    if case == SOMEONE_ELSES:
        assert not applied and "is for your own access only" in said
        assert not AccessRequest.objects.exists()
    else:
        assert applied, said
        req = AccessRequest.objects.get()
        assert (req.kind, req.status, req.break_glass, req.requester) == (case, "approved", True, user)


def test_the_break_glass_page_shows_the_exact_statements_and_whom_they_reach_before_anything_is_applied(org):
    client = Client()
    client.force_login(org.requester)
    form = {**web_form(org, "pipeline"), "intent": "preview"}
    page = client.post("/break-glass/new/", form).content.decode()
    assert 'data-testid="policy-preview"' in page and "codepipeline:GetPipeline" in page
    assert "arn:aws:codepipeline:us-east-1:123456789012:my-pipeline" in page
    assert 'data-testid="preview-recipients"' in page and "IAM user mateojackson" in page
    assert "Break-glass under rule <strong>Sandbox pipelines</strong>" in page
    assert 'data-testid="preview-refusal"' not in page
    # A shape the service would refuse is said in the preview already, with the rule's reason.
    page = client.post("/break-glass/new/", {**web_form(org, RequestKind.PASS_ROLE), "intent": "preview"})
    content = page.content.decode()
    assert 'data-testid="preview-refusal"' in content and "iam:PassRole" in content
    assert "gives pipeline access only; ask its approvers for PassRole" in content
    assert not AccessRequest.objects.exists()


# --- what a rule names is applied, and read back from AWS (moto) ---------------------------------------------


@pytest.fixture
def portal(db, demo_world, settings):
    from tests.provisioning_support import PortalWorld

    settings.GATEHOUSE_BREAK_GLASS_PER_DAY = 50
    world = PortalWorld(demo_world)  # every principal of the catalog is linked to the requester alone
    world.rule.break_glass_users.add(world.requester)
    return world


def api_post(user, body: dict):
    _, raw = make_token(user, f"break-glass-{next(TOKENS)}")
    return Client().post(
        "/api/v1/requests/",
        json.dumps(body),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )


def applied(request_id: int) -> Grant:
    from tests.provisioning_support import reconcile

    grant = Grant.objects.get(request_id=request_id)
    reconcile(grant)
    grant.refresh_from_db()
    assert grant.status == GrantStatus.ACTIVE, grant.last_error
    return grant


@pytest.mark.moto
def test_the_api_attack_a_cross_account_editor_role_for_any_outside_account_is_refused_and_aws_untouched(
    portal, aws
):
    from tests.provisioning_support import MANAGEMENT, OUTSIDE_ACCOUNT, iam_client

    iam = iam_client(aws)
    roles_before = sorted(r["RoleName"] for r in iam.list_roles()["Roles"])
    attack = {
        "kind": "cross_account", "account": MANAGEMENT, "pipelines": ["my-pipeline"], "level": "editor", "trusted_account_id": OUTSIDE_ACCOUNT, "justification": REASON, "duration_hours": 1,
        "break_glass": True, "incident": "INC-666",
    }  # fmt: skip
    refused = api_post(portal.requester, attack)
    assert refused.status_code == 403
    assert refused.json()["error"] == (
        f"Break-glass under the rule {RULE} gives pipeline access only; ask its approvers for cross-account access "
        "the normal way."
    )
    # Even under a rule that names cross-account access: an outside account reaches people nobody vouches for.
    set_kinds(portal.rule, ALL_KINDS)
    refused = api_post(portal.requester, attack)
    assert refused.status_code == 403 and RULE in refused.json()["error"]
    assert f"would also reach any principal of account {OUTSIDE_ACCOUNT}" in refused.json()["error"]
    assert not AccessRequest.objects.exists() and not Grant.objects.exists()
    assert sorted(r["RoleName"] for r in iam.list_roles()["Roles"]) == roles_before


@pytest.mark.moto
def test_cross_account_and_permission_sets_a_rule_names_are_applied_through_the_api(portal, aws):
    from tests.provisioning_support import MANAGEMENT, MY_PIPELINE_ARN, iam_client, permits

    # The requester's own IAM user in production, which the role in the management account will trust.
    production = AwsAccount.objects.exclude(account_id=MANAGEMENT).get()
    credentials = boto3_client("sts", aws).assume_role(
        RoleArn=f"arn:aws:iam::{production.account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="test",
    )["Credentials"]
    iam_client(
        aws,
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    ).create_user(UserName="requester")
    mine = make_principal(production, "requester", users=[portal.requester])
    cross = {
        "kind": "cross_account", "account": MANAGEMENT, "pipelines": ["my-pipeline"], "level": "viewer", "trusted_principal_arn": mine.external_id,
        "justification": REASON, "duration_hours": 1, "break_glass": True, "incident": "INC-7",
    }  # fmt: skip
    paulo = Principal.objects.get(name="paulo.santos")
    permission_set = PermissionSet.objects.get(name="CodePipelineReadOnly")
    assignment = {
        "kind": "permission_set", "account": MANAGEMENT, "principal": paulo.pk, "permission_set": permission_set.arn,
        "justification": REASON, "duration_hours": 1, "break_glass": True, "incident": "INC-7",
    }  # fmt: skip
    for body in (cross, assignment):
        refused = api_post(portal.requester, body)
        assert refused.status_code == 403 and "gives pipeline access only" in refused.json()["error"]
    assert not AccessRequest.objects.exists()

    set_kinds(portal.rule, ["pipeline", "cross_account", "permission_set"])
    made = api_post(portal.requester, cross)
    assert made.status_code == 201, made.json()
    grant = applied(made.json()["id"])
    iam = iam_client(aws)
    role = iam.get_role(RoleName=grant.details["role_arn"].rsplit("/", 1)[-1])["Role"]
    [trust] = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"AWS": mine.external_id}  # the requester's own user, nobody else
    document = iam.get_role_policy(RoleName=role["RoleName"], PolicyName="gatehouse")["PolicyDocument"]
    assert permits([document], "codepipeline:GetPipeline", MY_PIPELINE_ARN)

    made = api_post(portal.requester, assignment)
    assert made.status_code == 201, made.json()
    applied(made.json()["id"])
    sso = boto3_client("sso-admin", aws)
    held = sso.list_account_assignments(
        InstanceArn=portal.seeded["identity_center"]["instance_arn"], AccountId=MANAGEMENT,
        PermissionSetArn=permission_set.arn,
    )["AccountAssignments"]  # fmt: skip
    assert [a["PrincipalId"] for a in held] == [paulo.external_id]


@pytest.mark.moto
def test_passrole_a_rule_names_is_applied_through_the_web_form(portal, aws):
    from tests.provisioning_support import MANAGEMENT, iam_client, permits, user_policies

    marymajor = Principal.objects.get(name="marymajor")
    role = portal.role("CodePipelineServiceRole")
    client = Client()
    client.force_login(portal.requester)
    form = {
        "intent": "submit", "kind": "pass_role", "account": MANAGEMENT, "principal": marymajor.pk,
        "pass_role": role.pk, "justification": REASON, "incident": "INC-7", "duration_hours": 1,
    }  # fmt: skip
    refused = client.post("/break-glass/new/", form)
    assert refused.status_code == 400
    assert (
        f"Break-glass under the rule {RULE} gives pipeline access only; ask its approvers for PassRole"
        in (refused.content.decode())
    )
    set_kinds(portal.rule, ["pipeline", "pass_role"])
    preview = client.post("/break-glass/new/", {**form, "intent": "preview"}).content.decode()
    assert (
        "iam:PassRole" in preview
        and "codepipeline.amazonaws.com" in preview
        and "IAM user marymajor" in preview
    )
    done = client.post("/break-glass/new/", form)
    assert done.status_code == 302
    applied(AccessRequest.objects.get(break_glass=True).pk)
    documents = user_policies(iam_client(aws), "marymajor")
    assert permits(documents, "iam:PassRole", role.arn, {"iam:PassedToService": "codepipeline.amazonaws.com"})


@pytest.mark.moto
def test_passrole_a_rule_names_is_applied_through_the_slack_command(portal, aws, settings):
    from tests.provisioning_support import iam_client, permits, user_policies

    fake = FakeSlack()
    try:
        settings.SLACK_BOT_TOKEN = BOT_TOKEN
        settings.SLACK_SIGNING_SECRET = SIGNING_SECRET
        settings.SLACK_API_URL = fake.url
        EmailAddress.objects.create(
            user=portal.requester, email=portal.requester.email, verified=True, primary=True
        )
        fake.add_user("U0REQUESTER", portal.requester.email)

        def run() -> str:
            fields = slash_command(
                f"break-glass INC-7 {denied('marymajor')} -- {REASON}", slack_user="U0REQUESTER"
            )
            return Client().post(reverse("slack_commands"), **signed_form(fields)).json()["text"]

        assert run() == "Nothing was applied: " + only_pipeline(RequestKind.PASS_ROLE).replace(
            f" {CONTACT}", ""
        )
        set_kinds(portal.rule, ["pipeline", "pass_role"])
        assert run().startswith("Break-glass GH-")
    finally:
        fake.close()
    req = AccessRequest.objects.get()
    assert (req.kind, req.source, req.incident) == (RequestKind.PASS_ROLE, "slack", "INC-7")
    applied(req.pk)
    role = portal.role("CodePipelineServiceRole")
    documents = user_policies(iam_client(aws), "marymajor")
    assert permits(documents, "iam:PassRole", role.arn, {"iam:PassedToService": "codepipeline.amazonaws.com"})


def boto3_client(service: str, endpoint: str):
    return boto3.client(service, region_name="us-east-1", endpoint_url=endpoint)
