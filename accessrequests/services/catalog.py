"""Catalog sync: make the portal's catalog match what AWS says exists.

Two phases, on purpose:

1. **Read** every listing from AWS (accounts, then per enabled account its pipelines in each region of
   ``GATEHOUSE_REGIONS``, roles, IAM users and groups; then Identity Center) with no database transaction
   open. A sync of many accounts takes seconds to minutes of network calls; holding a write transaction that
   long would stall the web process and the worker (SQLite's IMMEDIATE transactions admit one writer).
2. **Write** everything in one short transaction, together with the ``catalog.synced`` audit event, so the
   trail describes exactly the change that was committed.

Rules the write phase keeps:

- Rows are never deleted (requests and grants reference them); a row the sync no longer sees gets
  ``present=False``, and comes back to ``present=True`` if AWS shows it again.
- "No longer seen" is only said about what was actually read: when an account (or one region of it, or
  Identity Center) cannot be read, its rows are left as they are and the failure is reported in ``errors``.
- Admin edits win: an existing account keeps its name, environment and enabled flag; a role an admin marked
  sensitive stays sensitive (the sync only ever raises sensitivity, from the ``gatehouse:sensitive`` tag).
- Running it twice changes nothing the second time (apart from timestamps and one more audit event).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import connection, models, transaction
from django.utils import timezone

from accessrequests import audit
from accessrequests.aws import catalog as aws_catalog
from accessrequests.aws.client import default_region, error_details
from accessrequests.models import (
    AwsAccount,
    Environment,
    IdentityCenter,
    PassableRole,
    PermissionSet,
    Pipeline,
    Principal,
    PrincipalKind,
)

logger = logging.getLogger(__name__)

# Serialises concurrent syncs on PostgreSQL (beat and a manual `manage.py sync_catalog`), so two writers never
# both insert the same new pipeline and one of them fails on the unique constraint. SQLite's IMMEDIATE
# transactions already admit one writer at a time.
_SYNC_LOCK_KEY = 0x67617465_73796E63  # "gatesync"

ENVIRONMENT_TAGS = ("gatehouse:environment", "environment")
_ENVIRONMENT_ALIASES = {
    "prod": Environment.PRODUCTION,
    "prd": Environment.PRODUCTION,
    "stage": Environment.STAGING,
    "stg": Environment.STAGING,
    "dev": Environment.DEVELOPMENT,
}

M = TypeVar("M", bound=models.Model)


def environment_for(name: str, tags: Mapping[str, str]) -> str:
    """The environment a newly found account starts with: its tag if it has a known one, else its name.

    Only a guess for new rows (admins correct it in Django admin, and the sync never overwrites it): a name
    containing "prod" is production, anything else development, which routes it to the stricter rule only
    when the evidence says so.
    """
    for key in ENVIRONMENT_TAGS:
        value = tags.get(key, "").strip().lower()
        if value in Environment.values:
            return value
        if value in _ENVIRONMENT_ALIASES:
            return _ENVIRONMENT_ALIASES[value]
    return Environment.PRODUCTION if "prod" in name.lower() else Environment.DEVELOPMENT


def _regions() -> list[str]:
    configured = getattr(settings, "GATEHOUSE_REGIONS", None) or [default_region()]
    return list(dict.fromkeys(region.strip() for region in configured if region.strip()))


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        code, message = error_details(exc)
        return f"{code}: {message}"
    return f"{type(exc).__name__}: {exc}"


# --- phase 1: read AWS ---


@dataclass
class _AccountRead:
    """What one account looked like in AWS; ``None`` lists mean "could not be read"."""

    account_id: str
    pipelines: dict[str, list[aws_catalog.Pipeline]] = field(default_factory=dict)  # region -> pipelines
    roles: list[aws_catalog.Role] | None = None
    users: list[aws_catalog.IamIdentity] | None = None
    groups: list[aws_catalog.IamIdentity] | None = None
    errors: list[str] = field(default_factory=list)


@dataclass
class _IdentityCenterRead:
    instance: aws_catalog.IdentityCenter | None
    region: str
    permission_sets: list[aws_catalog.PermissionSet] = field(default_factory=list)
    users: list[aws_catalog.IdentityCenterUser] = field(default_factory=list)
    groups: list[aws_catalog.IdentityCenterGroup] = field(default_factory=list)


def _read_account(account: AwsAccount, regions: list[str]) -> _AccountRead:
    # An empty provisioning role means "the conventional role", which the client factory derives (or the
    # hub's own credentials when this is the hub's account).
    where: dict[str, Any] = {
        "account_id": account.account_id,
        "role_arn": account.provisioning_role_arn or None,
    }
    read = _AccountRead(account_id=account.account_id)

    def attempt(what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (ClientError, BotoCoreError, ValueError) as exc:
            # ValueError: the client factory refusing a provisioning role outside the account (an admin typo).
            read.errors.append(f"account {account.account_id} {what}: {_describe(exc)}")
            logger.warning("catalog sync: %s", read.errors[-1])
            return None

    for region in regions:
        found = attempt(f"pipelines in {region}", partial(aws_catalog.list_pipelines, region=region, **where))
        if found is not None:
            read.pipelines[region] = found
    read.roles = attempt("roles", partial(aws_catalog.list_roles, **where))
    read.users = attempt("users", partial(aws_catalog.list_iam_users, **where))
    read.groups = attempt("groups", partial(aws_catalog.list_iam_groups, **where))
    return read


def _read_identity_center() -> _IdentityCenterRead:
    region = default_region()
    instance = aws_catalog.identity_center(region=region)
    read = _IdentityCenterRead(instance=instance, region=region)
    if instance is not None:
        read.permission_sets = aws_catalog.list_permission_sets(instance.instance_arn, region=region)
        read.users = aws_catalog.list_ic_users(instance.identity_store_id, region=region)
        read.groups = aws_catalog.list_ic_groups(instance.identity_store_id, region=region)
    return read


# --- phase 2: write ---


def _reconcile(
    model: type[M],
    *,
    existing: Iterable[M],
    key: Callable[[M], Hashable],
    wanted: Mapping[Hashable, dict[str, Any]],
    vouched: Callable[[M], bool] = lambda row: True,
    merge: Callable[[M, dict[str, Any]], dict[str, Any]] | None = None,
) -> dict[str, int]:
    """Create the wanted rows that are missing, update the changed ones, mark unseen vouched rows absent.

    ``wanted`` maps a natural key to the row's field values (attribute names, e.g. ``account_id``);
    ``vouched`` says which existing rows this sync has read the truth about; ``merge`` lets a model keep
    values an admin set. Returns counts of seen/created/updated/gone rows.
    """
    rows = {key(row): row for row in existing}
    created: list[M] = []
    changed: dict[int, M] = {}
    changed_fields: set[str] = set()
    for row_key, values in wanted.items():
        row = rows.get(row_key)
        if row is None:
            created.append(model(**values))
            continue
        if merge is not None:
            values = merge(row, values)
        for name, value in values.items():
            if getattr(row, name) != value:
                setattr(row, name, value)
                changed[row.pk] = row
                changed_fields.add(name)
    gone = 0
    for row_key, row in rows.items():
        if row_key not in wanted and getattr(row, "present", False) and vouched(row):
            row.present = False  # type: ignore[attr-defined]  # every synced model has it
            changed.setdefault(row.pk, row)
            changed_fields.add("present")
            gone += 1
    model._default_manager.bulk_create(created)
    if changed:
        model._default_manager.bulk_update(list(changed.values()), sorted(changed_fields))
    return {
        "seen": len(wanted),
        "created": len(created),
        "updated": len(changed) - gone,
        "gone": gone,
    }


def _add(total: dict[str, int], counts: dict[str, int]) -> None:
    for name, value in counts.items():
        total[name] = total.get(name, 0) + value


def _stages(pipeline: aws_catalog.Pipeline) -> list[dict[str, Any]]:
    return [
        {
            "name": stage.name,
            "actions": [{"name": action.name, "category": action.category} for action in stage.actions],
        }
        for stage in pipeline.stages
    ]


def _keep_sensitive(row: PassableRole, values: dict[str, Any]) -> dict[str, Any]:
    # Fail safe: the tag can make a role sensitive, but removing the tag (or a sync that misread it) never
    # makes a role an admin marked sensitive requestable again; an admin clears the flag deliberately.
    return values | {"sensitive": row.sensitive or values["sensitive"]}


def _write_account(account: AwsAccount, read: _AccountRead, regions: list[str], now: Any) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    # Pipelines: vouch for the regions read now, and for regions no longer configured (the sync no longer
    # stands behind those rows, so they must not stay requestable).
    read_regions = set(read.pipelines)
    counts["pipelines"] = _reconcile(
        Pipeline,
        existing=Pipeline.objects.filter(account=account),
        key=lambda row: (row.region, row.name),
        wanted={
            (pipeline.region, pipeline.name): {
                "account_id": account.pk,
                "region": pipeline.region,
                "name": pipeline.name,
                "arn": pipeline.arn,
                "role_arn": pipeline.role_arn,
                "stages": _stages(pipeline),
                "tags": dict(pipeline.tags),
                "present": True,
            }
            for pipelines in read.pipelines.values()
            for pipeline in pipelines
        },
        vouched=lambda row: row.region in read_regions or row.region not in regions,
    )
    Pipeline.objects.filter(account=account, region__in=read_regions, present=True).update(last_seen_at=now)

    if read.roles is not None:
        counts["roles"] = _reconcile(
            PassableRole,
            existing=PassableRole.objects.filter(account=account),
            key=lambda row: row.arn,
            wanted={
                role.arn: {
                    "account_id": account.pk,
                    "arn": role.arn,
                    "name": role.name,
                    "trusts_codepipeline": role.trusts_codepipeline,
                    "sensitive": role.sensitive,
                    "present": True,
                }
                for role in read.roles
            },
            merge=_keep_sensitive,
        )
        PassableRole.objects.filter(account=account, present=True).update(last_seen_at=now)

    # (ARN, name) per kind; None where the listing could not be read, so nothing of that kind is marked gone.
    identities: dict[str, list[tuple[str, str]] | None] = {
        kind: None if listed is None else [(item.arn, item.name) for item in listed]
        for kind, listed in (
            (PrincipalKind.IAM_USER, read.users),
            (PrincipalKind.IAM_ROLE, read.roles),
            (PrincipalKind.IAM_GROUP, read.groups),
        )
    }
    principals: dict[str, int] = {}
    for kind, listed in identities.items():
        if listed is None:
            continue
        _add(
            principals,
            _reconcile(
                Principal,
                existing=Principal.objects.filter(account=account, kind=kind),
                key=lambda row: row.external_id,
                wanted={
                    arn: {
                        "kind": kind,
                        "external_id": arn,
                        "name": name,
                        "account_id": account.pk,
                        "present": True,
                    }
                    for arn, name in listed
                },
            ),
        )
    counts["principals"] = principals
    return counts


def _write_identity_center(read: _IdentityCenterRead) -> dict[str, Any]:
    if read.instance is None:
        # Identity Center was read and is not enabled: nothing it held can be assigned any more.
        sets_gone = PermissionSet.objects.filter(present=True).update(present=False)
        people_gone = Principal.objects.filter(
            kind__in=[PrincipalKind.IC_USER, PrincipalKind.IC_GROUP], present=True
        ).update(present=False)
        return {"permission_sets": {"gone": sets_gone}, "principals": {"gone": people_gone}}

    instance, created = IdentityCenter.objects.get_or_create(
        instance_arn=read.instance.instance_arn,
        defaults={"identity_store_id": read.instance.identity_store_id, "region": read.region},
    )
    if not created and (instance.identity_store_id, instance.region) != (
        read.instance.identity_store_id,
        read.region,
    ):
        instance.identity_store_id, instance.region = read.instance.identity_store_id, read.region
        instance.save(update_fields=["identity_store_id", "region"])

    counts: dict[str, Any] = {"identity_centers": {"seen": 1, "created": int(created)}}
    counts["permission_sets"] = _reconcile(
        PermissionSet,
        existing=PermissionSet.objects.all(),  # all instances', for the same reason as the people below
        key=lambda row: row.arn,
        wanted={
            item.arn: {
                "identity_center_id": instance.pk,
                "arn": item.arn,
                "name": item.name,
                "description": item.description,
                "present": True,
            }
            for item in read.permission_sets
        },
    )
    principals: dict[str, int] = {}
    # (name, display name): a user signs in with the first; auditors know them by the second.
    people: dict[str, dict[str, tuple[str, str]]] = {
        PrincipalKind.IC_USER: {user.user_id: (user.user_name, user.display_name) for user in read.users},
        PrincipalKind.IC_GROUP: {group.group_id: (group.display_name, "") for group in read.groups},
    }
    for kind, names in people.items():
        _add(
            principals,
            _reconcile(
                Principal,
                # All of them, not only this instance's: an organization has one Identity Center, so
                # people of an instance no longer seen (deleted and re-created, or the demo's moto world
                # started afresh) are gone, and an id seen again under the new instance moves there.
                existing=Principal.objects.filter(kind=kind),
                key=lambda row: row.external_id,
                wanted={
                    principal_id: {
                        "kind": kind,
                        "external_id": principal_id,
                        "name": name,
                        "display_name": display_name,
                        "identity_center_id": instance.pk,
                        "present": True,
                    }
                    for principal_id, (name, display_name) in names.items()
                },
            ),
        )
    counts["principals"] = principals
    return counts


def catalog_sync() -> dict[str, Any]:
    """Read the AWS catalog and upsert it into the database; return what changed (also audited).

    The result: ``accounts`` / ``pipelines`` / ``roles`` / ``principals`` / ``permission_sets`` /
    ``identity_centers`` counts (seen, created, updated, gone), the ``regions`` read, and ``errors`` (one
    line per listing that could not be read; those rows were left untouched).
    """
    regions = _regions()
    errors: list[str] = []

    listed = aws_catalog.list_accounts()
    known = {account.account_id: account for account in AwsAccount.objects.all()}
    new_accounts = [
        AwsAccount(
            account_id=item.id,
            name=item.name[:100],
            environment=environment_for(item.name, aws_catalog.account_tags(item.id)),
            # A suspended account cannot be provisioned into; an admin enables it when it is back.
            enabled=item.status == "ACTIVE",
        )
        for item in listed
        if item.id not in known
    ]
    to_read = [account for account in known.values() if account.enabled] + [
        account for account in new_accounts if account.enabled
    ]
    account_reads = [_read_account(account, regions) for account in to_read]
    for read in account_reads:
        errors.extend(read.errors)

    ic_read: _IdentityCenterRead | None
    try:
        ic_read = _read_identity_center()
    except (ClientError, BotoCoreError) as exc:
        ic_read = None
        errors.append(f"identity center: {_describe(exc)}")
        logger.warning("catalog sync: %s", errors[-1])

    now = timezone.now()
    listed_ids = {item.id for item in listed}
    result: dict[str, Any] = {
        "regions": regions,
        "accounts": {
            "seen": len(listed),
            "created": len(new_accounts),
            # Still enabled here but no longer in the organization: an admin should look (and disable it).
            "missing": sum(
                1 for account_id, account in known.items() if account.enabled and account_id not in listed_ids
            ),
        },
    }
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_xact_lock(%s)", [_SYNC_LOCK_KEY])
        # Another sync may have created some of these since we looked; theirs is as good as ours.
        for account in new_accounts:
            account.pk = AwsAccount.objects.get_or_create(
                account_id=account.account_id,
                defaults={
                    "name": account.name,
                    "environment": account.environment,
                    "enabled": account.enabled,
                },
            )[0].pk
        by_id = {account.account_id: account for account in AwsAccount.objects.all()}
        for read in account_reads:
            account = by_id[read.account_id]
            for name, counts in _write_account(account, read, regions, now).items():
                _add(result.setdefault(name, {}), counts)
            if not read.errors:
                AwsAccount.objects.filter(pk=account.pk).update(last_synced_at=now)
        if ic_read is not None:
            for name, counts in _write_identity_center(ic_read).items():
                _add(result.setdefault(name, {}), counts)
        result["errors"] = errors
        audit.record(action="catalog.synced", object_type="catalog", after=result)
    logger.info("catalog sync: %s", "; ".join(summary_lines(result)) + (" (with errors)" if errors else ""))
    return result


_KINDS = ("accounts", "pipelines", "roles", "principals", "permission_sets", "identity_centers")


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per catalog kind of a sync result: ``pipelines: 5 seen, 0 created, 0 updated, 0 gone``."""
    lines = []
    for kind in _KINDS:
        counts = result.get(kind)
        if counts:
            lines.append(f"{kind}: " + ", ".join(f"{value} {name}" for name, value in counts.items()))
    return lines
