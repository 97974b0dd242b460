"""Checks of Gatehouse's AWS settings, before anything is asked of AWS."""

from __future__ import annotations

import re

from django.conf import settings

from accessrequests.aws.client import endpoint_url, provisioning_role_name
from accessrequests.aws.config import setting
from accessrequests.core.wording import counted
from accessrequests.models import AwsAccount

from .registry import Context, Result, check, fail, ok, warn

REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
EXTERNAL_ID = re.compile(r"[\w+=,.@:/-]{2,1224}")  # AWS's pattern and length for sts:ExternalId
TEMPLATE_EXTERNAL_ID_LENGTH = 16  # the templates' MinLength
ROLE_NAME = re.compile(r"[\w+=,.@-]{1,64}")
ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::[0-9]{12}:role/[\w+=,.@/-]{1,512}")
GUIDE = "docs/deploy.md"


@check("settings.aws", "AWS_DEFAULT_REGION and GATEHOUSE_REGIONS are region names; where AWS is")
def aws_settings(ctx: Context) -> Result:
    region = settings.AWS_DEFAULT_REGION
    regions = list(settings.GATEHOUSE_REGIONS)
    bad = [r for r in dict.fromkeys([region, *regions]) if not REGION.fullmatch(r)]
    if bad:
        return fail(
            f"{', '.join(repr(r) for r in bad)} {'is not a region name' if len(bad) == 1 else 'are not region names'}",
            fix="set AWS_DEFAULT_REGION (Identity Center's region) and GATEHOUSE_REGIONS (where pipelines are "
            "read, comma-separated) to AWS region names such as us-east-1",
        )
    endpoint = endpoint_url()
    where = f"AWS_ENDPOINT_URL={endpoint} (a stand-in for AWS)" if endpoint else "AWS itself"
    if endpoint and not settings.DEBUG:
        return warn(
            f"every AWS call goes to {where}, not to AWS",
            fix="unset AWS_ENDPOINT_URL in production: it is for the demo and the tests",
        )
    return ok(f"region {region}; pipelines read in {', '.join(regions)}; calls go to {where}")


@check("settings.external-id", "AWS_PROVISIONING_EXTERNAL_ID is set and valid")
def external_id(ctx: Context) -> Result:
    value = setting("AWS_PROVISIONING_EXTERNAL_ID") or ""
    fix = (
        "set AWS_PROVISIONING_EXTERNAL_ID to the external id in the provisioning and Identity Center roles' "
        f"trust policies (the templates' ExternalId parameter; {GUIDE}, steps 1 and 7)"
    )
    if not value:
        return warn(
            "AWS_PROVISIONING_EXTERNAL_ID is not set: the hub assumes the provisioning and Identity Center roles "
            "without an external id, which roles deployed from the templates refuse",
            fix=fix,
        )
    if not EXTERNAL_ID.fullmatch(value):
        return fail(
            "AWS_PROVISIONING_EXTERNAL_ID is not a valid external id (2 to 1224 letters, digits and +=,.@:/-): "
            "AWS refuses every AssumeRole that carries it",
            fix=fix,
        )
    if len(value) < TEMPLATE_EXTERNAL_ID_LENGTH:
        return warn(
            f"AWS_PROVISIONING_EXTERNAL_ID has {counted(len(value), 'character')}; the templates take at least "
            f"{TEMPLATE_EXTERNAL_ID_LENGTH}",
            fix=f"make a longer one and deploy it with the roles ({GUIDE}, step 1)",
        )
    return ok(f"set ({counted(len(value), 'character')})")


@check(
    "settings.roles",
    "the provisioning role's name, and the prefix and permissions boundary of the roles Gatehouse creates",
)
def role_settings(ctx: Context) -> Result:
    name = provisioning_role_name()
    if not ROLE_NAME.fullmatch(name):
        return fail(
            f"AWS_PROVISIONING_ROLE_NAME={name!r} is not an IAM role name",
            fix="set AWS_PROVISIONING_ROLE_NAME to the StackSet's ProvisioningRoleName (GatehouseProvisioner "
            "by default), or unset it",
        )
    prefix, boundary = settings.GATEHOUSE_ROLE_PREFIX, settings.GATEHOUSE_PERMISSIONS_BOUNDARY
    if not boundary:
        return warn(
            "GATEHOUSE_PERMISSIONS_BOUNDARY is empty: the roles Gatehouse creates carry no permissions boundary, "
            "and a provisioning role deployed from the member template refuses to create them",
            fix="set GATEHOUSE_PERMISSIONS_BOUNDARY to the boundary policy's name (the StackSet's "
            "BoundaryPolicyName, GatehouseBoundary by default)",
        )
    return ok(
        f"provisioning role {name}; roles Gatehouse creates are named {prefix}<reference> under /gatehouse/ "
        f"and carry the boundary {boundary}"
    )


@check("settings.identity-center-role", "GATEHOUSE_IDENTITY_CENTER_ROLE_ARN is a role ARN, when set")
def identity_center_role(ctx: Context) -> Result:
    arn = settings.GATEHOUSE_IDENTITY_CENTER_ROLE_ARN
    if not arn:
        return ok(
            "not set: Identity Center calls use the hub's own credentials (Gatehouse runs in the account that "
            "administers Identity Center)"
        )
    if not ROLE_ARN.fullmatch(arn):
        return fail(
            f"GATEHOUSE_IDENTITY_CENTER_ROLE_ARN={arn!r} is not an IAM role ARN",
            fix="set it to arn:aws:iam::<account>:role/GatehouseIdentityCenter, the role of "
            f"identity-center-role.yaml ({GUIDE}, step 4); leave it empty only when Gatehouse runs in the "
            "account that administers Identity Center",
        )
    return ok(f"Identity Center calls run as {arn}")


@check(
    "settings.unmanaged-accounts",
    "the accounts in GATEHOUSE_UNMANAGED_ACCOUNTS are in the catalog, and disabled there",
    needs=("database.migrations",),
)
def unmanaged_accounts(ctx: Context) -> Result:
    listed = list(settings.GATEHOUSE_UNMANAGED_ACCOUNTS)
    if not listed:
        return ok("none listed: Gatehouse serves every account of the organization it finds")
    known = {a.account_id: a for a in AwsAccount.objects.filter(account_id__in=listed)}
    enabled = [f"{a.name} ({a.account_id})" for a in known.values() if a.enabled]
    if enabled:
        return fail(
            f"{', '.join(enabled)}: listed in GATEHOUSE_UNMANAGED_ACCOUNTS but enabled in the catalog, so "
            "Gatehouse offers it and provisions into it, where it has no provisioning role",
            fix="disable it under AWS accounts in the Django admin (the catalog sync disables a listed account "
            "only when it first sees it), or take it off GATEHOUSE_UNMANAGED_ACCOUNTS if Gatehouse should serve it",
            accounts=[a for a in listed if a in known and known[a].enabled],
        )
    unknown = [a for a in listed if a not in known]
    if unknown and AwsAccount.objects.exists():
        return warn(
            f"{', '.join(unknown)}: listed in GATEHOUSE_UNMANAGED_ACCOUNTS but not in the organization as the "
            "catalog last read it",
            fix="check the ids in GATEHOUSE_UNMANAGED_ACCOUNTS: the management account and the Gatehouse account "
            f"({GUIDE}, step 7)",
            accounts=unknown,
        )
    return ok(f"{', '.join(listed)}: never offered, never provisioned into")
