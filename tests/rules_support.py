"""A catalog for the rules-file and eligibility tests: two accounts, groups, an Identity Center with two
permission sets (one privileged), and an Identity Center user linked to the requester."""

from __future__ import annotations

from pathlib import Path

from django.contrib.auth.models import Group

from accessrequests.models import (
    Environment,
    IdentityCenter,
    PermissionSet,
    PermissionSetRisk,
    Principal,
    PrincipalKind,
)
from tests.factories import World, make_account, make_pipeline

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "rules.example.yaml"
PRODUCTION_ID = "111122223333"


class Org(World):
    """``World`` plus a production account, the groups the example file names, and permission sets."""

    def __init__(self, approvals: int = 1):
        super().__init__(approvals)
        self.production = make_account(PRODUCTION_ID, "production", Environment.PRODUCTION)
        self.prod_pipeline = make_pipeline(self.production)  # my-pipeline there too (multi-account requests)
        for name in ("sre", "release-managers", "approvers"):
            Group.objects.get_or_create(name=name)
        self.identity_center = IdentityCenter.objects.create(
            instance_arn="arn:aws:sso:::instance/ssoins-0000000000000001",
            identity_store_id="d-0000000001",
            region="us-east-1",
        )
        self.admin_set = PermissionSet.objects.create(
            identity_center=self.identity_center,
            arn="arn:aws:sso:::permissionSet/ssoins-0000000000000001/ps-0000000000000001",
            name="AdministratorAccess",
            risk=PermissionSetRisk.STANDARD,
        )
        self.read_set = PermissionSet.objects.create(
            identity_center=self.identity_center,
            arn="arn:aws:sso:::permissionSet/ssoins-0000000000000001/ps-0000000000000002",
            name="ReadOnlyAccess",
            risk=PermissionSetRisk.STANDARD,
        )
        self.ic_user = Principal.objects.create(
            kind=PrincipalKind.IC_USER,
            name="ic-requester",
            external_id="90000000-0000-0000-0000-000000000001",
            identity_center=self.identity_center,
        )
        self.ic_user.users.add(self.requester)
