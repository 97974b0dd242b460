"""Checks of AWS as the hub sees it: its identity, the provisioning role in each managed account, the permissions
boundary there, and Identity Center. Every call is a read, made with one attempt and short timeouts."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from accessrequests.aws import catalog as aws_catalog
from accessrequests.aws.client import (
    assume_fresh,
    client,
    default_region,
    endpoint_url,
    error_details,
    is_access_denied,
    provisioning_role_arn,
)
from accessrequests.aws.config import quick_reads
from accessrequests.aws.iam import boundary_arn
from accessrequests.core.wording import counted
from accessrequests.models import AwsAccount, IdentityCenter

from .registry import Context, Result, check, fail, ok, warn

GUIDE = "docs/deploy.md"
SHOWN = 5  # accounts named in a message; the details list them all


def describe_error(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        code, message = error_details(exc)
        return f"{code}: {message}" if message else code
    return f"{exc.__class__.__name__}: {exc}"


def _names(items: list[str]) -> str:
    more = len(items) - SHOWN
    return "; ".join(items[:SHOWN]) + (f"; and {more} more" if more > 0 else "")


@check("aws.identity", "AWS answers, and who the hub is (sts get-caller-identity)")
def identity(ctx: Context) -> Result:
    where = endpoint_url() or "AWS"
    try:
        sent = time.time()
        with quick_reads():
            answer = client("sts").get_caller_identity()
        ctx.facts["aws_clock"] = (
            (sent + time.time()) / 2,
            answer["ResponseMetadata"]["HTTPHeaders"].get("date"),
        )
    except (BotoCoreError, ClientError) as exc:
        return fail(
            f"{where} did not answer with the hub's identity: {describe_error(exc)}",
            fix="give the web, worker and beat processes the hub role (the ECS task role, the EC2 instance "
            f"profile, or assumed from HUB_TRUSTED_PRINCIPAL: {GUIDE}, step 8), and leave AWS_ENDPOINT_URL "
            "unset outside the demo",
        )
    ctx.facts["own_account"] = answer["Account"]
    arn = str(answer["Arn"])
    if ":user/" in arn and not settings.DEBUG:
        return warn(
            f"the hub runs as the IAM user {arn}, with long-lived access keys",
            fix=f"run Gatehouse as the hub role instead ({GUIDE}, step 8); keep no AWS keys in its settings",
        )
    return ok(f"{arn} in account {answer['Account']}")


CLOCK_WARN_SECONDS = 60
CLOCK_FAIL_SECONDS = 5 * 60  # AWS refuses a SigV4 signature dated more than 5 minutes from its own clock


@check(
    "aws.clock",
    "this machine's clock agrees with AWS's (the Date of the STS answer)",
    needs=("aws.identity",),
)
def clock(ctx: Context) -> Result:
    local, date = ctx.facts.get("aws_clock") or (None, None)
    fix = (
        "synchronise this machine's clock (NTP: chrony or systemd-timesyncd; on EC2 the Amazon Time Sync "
        "Service at 169.254.169.123); AWS refuses requests signed more than 5 minutes off its clock"
    )
    try:
        theirs = parsedate_to_datetime(date).timestamp() if date else None
    except (TypeError, ValueError):
        theirs = None
    if local is None or theirs is None:
        return warn(
            f"STS answered without a Date header one can read ({date!r}): the clock is not compared", fix=fix
        )
    skew = local - theirs  # the Date is whole seconds, rounded down: within a second either way of exact
    ahead = f"{abs(skew):.0f} seconds {'ahead of' if skew > 0 else 'behind'} AWS"
    if abs(skew) > CLOCK_FAIL_SECONDS:
        return fail(
            f"this machine's clock is {ahead}: every AWS call is refused",
            fix=fix,
            skew_seconds=round(skew, 1),
        )
    if abs(skew) > CLOCK_WARN_SECONDS:
        return warn(
            f"this machine's clock is {ahead}; at 5 minutes AWS refuses every call",
            fix=fix,
            skew_seconds=round(skew, 1),
        )
    return ok(f"within {CLOCK_WARN_SECONDS} seconds of AWS ({skew:+.0f} s)", skew_seconds=round(skew, 1))


def _managed() -> list[AwsAccount]:
    return list(AwsAccount.objects.filter(enabled=True, present=True).order_by("account_id"))


def _role_of(account: AwsAccount, own: str) -> str | None:
    """The role Gatehouse assumes in the account; None where the hub's own credentials serve (its own account)."""
    if account.provisioning_role_arn:
        return account.provisioning_role_arn
    return None if account.account_id == own else provisioning_role_arn(account.account_id)


@check(
    "aws.provisioning-roles",
    "the hub can assume the provisioning role in each managed account (a sample of --accounts of them)",
    needs=("aws.identity", "database.migrations"),
)
def provisioning_roles(ctx: Context) -> Result:
    own = ctx.facts["own_account"]
    accounts = _managed()
    ctx.facts["reachable"] = [(a, None) for a in accounts if _role_of(a, own) is None]
    if not accounts:
        return warn(
            "the catalog has no enabled account: nothing to provision into",
            fix="run python manage.py sync_catalog as the hub (it must read the organization: "
            f"{GUIDE}, steps 5 and 8), then enable the accounts Gatehouse serves",
        )
    with_role = [(a, role) for a in accounts if (role := _role_of(a, own))]
    sample = with_role
    if ctx.account_limit and len(with_role) > ctx.account_limit:
        sample = sorted(random.sample(with_role, ctx.account_limit), key=lambda pair: pair[0].account_id)
    refused: list[str] = []
    failed_ids: list[str] = []
    for account, role in sample:
        try:
            with quick_reads():
                assume_fresh(role)
        except (BotoCoreError, ClientError, ValueError) as exc:
            refused.append(f"{account.name} ({account.account_id}): {role}: {describe_error(exc)}")
            failed_ids.append(account.account_id)
        else:
            ctx.facts["reachable"].append((account, role))
    own_note = (
        f"; the hub's own account {own} with its own credentials"
        if any(a.account_id == own for a in accounts)
        else ""
    )
    scope = (
        f"a sample of {len(sample)} of {counted(len(with_role), 'managed account')} (--accounts 0 checks all)"
        if len(sample) < len(with_role)
        else counted(len(with_role), "managed account")
    )
    if refused:
        return fail(
            f"the hub cannot assume the provisioning role in {len(refused)} of {scope}: {_names(refused)}",
            fix="deploy member-provisioning-role.yaml to these accounts' organizational units (the StackSet, "
            f"{GUIDE}, step 6); AWS_PROVISIONING_ROLE_NAME and AWS_PROVISIONING_EXTERNAL_ID must equal its "
            "ProvisioningRoleName and ExternalId. An account Gatehouse must not serve goes into "
            "GATEHOUSE_UNMANAGED_ACCOUNTS, or is disabled in the admin",
            accounts=failed_ids,
        )
    if not with_role:
        return ok(f"no managed account needs a provisioning role{own_note}")
    names = sorted({role.rsplit("/", 1)[-1] for _, role in sample})
    return ok(f"assumed {' and '.join(names)} in {scope}{own_note}")


@check(
    "aws.boundary",
    "the permissions boundary exists in each managed account checked",
    needs=("aws.provisioning-roles",),
)
def boundary(ctx: Context) -> Result:
    name = settings.GATEHOUSE_PERMISSIONS_BOUNDARY
    if not name:
        return ok("no permissions boundary is configured (settings.roles says why that matters)")
    missing: list[str] = []
    denied: list[str] = []
    broken: list[str] = []
    reachable: list[tuple[AwsAccount, str | None]] = ctx.facts.get("reachable", [])
    for account, role in reachable:
        label = f"{account.name} ({account.account_id})"
        arn = boundary_arn(account.account_id)
        try:
            with quick_reads():
                client("iam", role_arn=role, account_id=account.account_id).get_policy(PolicyArn=arn)
        except ClientError as exc:
            if error_details(exc)[0] == "NoSuchEntity":
                missing.append(label)
            elif is_access_denied(exc):
                denied.append(label)
            else:
                broken.append(f"{label}: {describe_error(exc)}")
        except (BotoCoreError, ValueError) as exc:
            broken.append(f"{label}: {describe_error(exc)}")
    details: dict[str, Any] = {"missing": missing, "denied": denied, "errors": broken}
    if missing:
        return fail(
            f"the permissions boundary {name} does not exist in {_names(missing)}: cross-account grants there "
            "fail (a role is created only with its boundary)",
            fix="deploy member-provisioning-role.yaml to these accounts (it creates the boundary), or set "
            f"GATEHOUSE_PERMISSIONS_BOUNDARY to the name of the boundary policy they have ({GUIDE}, step 6)",
            **details,
        )
    if denied or broken:
        return fail(
            f"the boundary {name} could not be read in {_names(denied + broken)}",
            fix="update the StackSet to the current member-provisioning-role.yaml (its ReadAttachedPolicies statement "
            "lets the provisioning role read the boundary), and check that its BoundaryPolicyName equals "
            "GATEHOUSE_PERMISSIONS_BOUNDARY",
            **details,
        )
    if not reachable:
        return ok("no managed account to look in")
    return ok(f"{name} exists in {counted(len(reachable), 'account')} checked")


@check(
    "aws.identity-center",
    "Identity Center answers through the configured role, and it is the instance the catalog holds",
    needs=("aws.identity", "database.migrations"),
)
def identity_center(ctx: Context) -> Result:
    role = settings.GATEHOUSE_IDENTITY_CENTER_ROLE_ARN
    region = default_region()
    through = f"through {role}" if role else "with the hub's own credentials"
    fix = (
        "deploy identity-center-role.yaml in the account that administers Identity Center (the management "
        f"account or its delegated administrator) and set GATEHOUSE_IDENTITY_CENTER_ROLE_ARN to its role ({GUIDE}, "
        "step 4): its trust takes the hub with AWS_PROVISIONING_EXTERNAL_ID; AWS_DEFAULT_REGION must be "
        "Identity Center's region"
    )
    if role:
        try:
            with quick_reads():
                assume_fresh(role)  # not credentials a long-lived process cached before the trust changed
        except (BotoCoreError, ClientError) as exc:
            return fail(f"the hub cannot assume {role}: {describe_error(exc)}", fix=fix)
    try:
        with quick_reads():
            found = aws_catalog.identity_center(region=region)
    except (BotoCoreError, ClientError, ValueError) as exc:
        return fail(
            f"Identity Center in {region} could not be read {through}: {describe_error(exc)}", fix=fix
        )
    known = list(IdentityCenter.objects.values_list("instance_arn", flat=True))
    if found is None:
        if role or known:
            return fail(f"no Identity Center instance in {region} {through}", fix=fix)
        return ok(f"Identity Center is not enabled in {region} for the hub: permission sets are not offered")
    if known and found.instance_arn not in known:
        return fail(
            f"{through} Gatehouse reaches the Identity Center instance {found.instance_arn}, but the catalog "
            f"holds {', '.join(known)}: another account's or region's Identity Center",
            fix="point GATEHOUSE_IDENTITY_CENTER_ROLE_ARN at the account that administers the organization's "
            "Identity Center, and AWS_DEFAULT_REGION at its region",
        )
    return ok(f"{found.instance_arn} (identity store {found.identity_store_id}) in {region}, {through}")
