"""Small factories for a catalog, principals, rules and requests (the services do the real work)."""

from __future__ import annotations

from django.contrib.auth.models import Group
from django.db import models
from django.utils import timezone

from accessrequests.authz.permissions import SecondFactor
from accessrequests.models import (
    AccessLevel,
    ApprovalRule,
    AwsAccount,
    Environment,
    PassableRole,
    Pipeline,
    Principal,
    PrincipalKind,
    RequestKind,
)
from accessrequests.workflow.requests import RequestDraft, find_duplicates, request_submit
from tests.conftest import make_user

ACCOUNT_ID = "123456789012"


def fresh_factor(user) -> SecondFactor:
    """A second factor ``user`` presented just now, in the shape the web (allauth's session records) and the API
    (a checked TOTP code) hand one to a decision service. The step-up itself is tested through those real paths
    (tests/test_step_up.py); tests about other things start from here."""
    return SecondFactor(user_id=user.pk, method="totp", at=timezone.now(), via="test")


def force_update(queryset, **fields) -> int:
    """Put requests or grants straight into a state, skipping the state machine, to set up a test (production
    code can only move statuses with ``transition``, which checks the table). The database's own constraints
    still apply."""
    return models.QuerySet.update(queryset, **fields)


def make_account(
    account_id: str = ACCOUNT_ID, name: str = "sandbox", environment: str = Environment.DEVELOPMENT
):
    return AwsAccount.objects.get_or_create(
        account_id=account_id, defaults={"name": name, "environment": environment}
    )[0]


def make_pipeline(account, name: str = "my-pipeline", region: str = "us-east-1"):
    return Pipeline.objects.get_or_create(
        account=account,
        region=region,
        name=name,
        defaults={
            "arn": f"arn:aws:codepipeline:{region}:{account.account_id}:{name}",
            "role_arn": f"arn:aws:iam::{account.account_id}:role/CodePipelineServiceRole",
        },
    )[0]


def make_role(
    account, name: str = "CodePipelineServiceRole", *, trusts: bool = True, sensitive: bool = False
):
    return PassableRole.objects.get_or_create(
        arn=f"arn:aws:iam::{account.account_id}:role/{name}",
        defaults={"account": account, "name": name, "trusts_codepipeline": trusts, "sensitive": sensitive},
    )[0]


def make_principal(account, name: str = "mateojackson", kind: str = PrincipalKind.IAM_USER, users=()):
    kind_path = {"iam_user": "user", "iam_role": "role", "iam_group": "group"}[kind]
    principal = Principal.objects.get_or_create(
        kind=kind,
        external_id=f"arn:aws:iam::{account.account_id}:{kind_path}/{name}",
        defaults={"name": name, "account": account},
    )[0]
    principal.users.add(*users)
    return principal


def make_rule(
    name: str = "Sandbox pipelines", *, accounts=(), approvals: int = 1, group: str = "approvers", **kw
):
    rule = ApprovalRule.objects.create(name=name, approvals_required=approvals, **kw)
    rule.accounts.set(accounts)
    rule.approver_groups.add(Group.objects.get_or_create(name=group)[0])
    return rule


class World:
    """An account with my-pipeline, mateojackson linked to the requester, a rule and two approvers."""

    def __init__(self, approvals: int = 1):
        self.account = make_account()
        self.pipeline = make_pipeline(self.account)
        self.role = make_role(self.account)
        self.requester = make_user("requester", "requesters")
        self.other_requester = make_user("other", "requesters")
        self.approver = make_user("approver", "approvers")
        self.approver2 = make_user("approver2", "approvers")
        self.outsider_approver = make_user("outsider", "release-managers")
        self.principal = make_principal(self.account, users=[self.requester])
        self.rule = make_rule(
            accounts=[self.account], approvals=approvals, max_duration_hours=8, contact="platform@example.com"
        )
        self._fresh = 0

    def draft(self, **overrides) -> RequestDraft:
        fields = {
            "principal": self.principal,
            "kind": RequestKind.PIPELINE,
            "account": self.account,
            "pipelines": [self.pipeline],
            "level": AccessLevel.VIEWER,
            "justification": "Debugging a failed deploy",
            "duration_hours": 4,
        }
        fields.update(overrides)
        return RequestDraft(**fields)

    def submit(self, requester=None, **overrides):
        """File a request. Gatehouse refuses a second identical pending request (a double submit), so a repeat of
        the same call without its own pipelines goes to a fresh pipeline of the account: tests that file "a
        request" several times get several requests."""
        requester = requester or self.requester
        draft = self.draft(**overrides)
        if "pipelines" not in overrides and find_duplicates(requester, draft):
            self._fresh += 1
            draft = self.draft(
                **{**overrides, "pipelines": [make_pipeline(self.account, f"my-pipeline-{self._fresh}")]}
            )
        return request_submit(requester=requester, draft=draft)


def make_token(user, name: str = "tests", scopes=None, days: int = 30) -> tuple:
    """A personal API token through the real service; by default with every scope the user may hold."""
    from accessrequests.authz import permissions
    from accessrequests.identity.tokens import token_issue
    from accessrequests.models import TokenScope

    if scopes is None:
        scopes = [
            scope
            for scope in TokenScope.values
            if permissions.token_scopes_problem(user, {TokenScope.READ, scope}) is None
        ]
    return token_issue(user=user, name=name, scopes=scopes, days=days)
