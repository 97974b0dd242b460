"""Catalog sync: make the portal's catalog match what AWS says exists, at the size of an organization.

This module reads and writes one account and Identity Center; ``services.catalog_sync`` runs a sync in three
steps, each account written on its own:

1. **Organization**: walk the roots and units once (each account with its unit), write units and accounts
   (joined, left, moved) in one short transaction, and plan which accounts to list: all of them (``full``), or
   (``incremental``, what beat runs) only those new, changed in Organizations, failed last time or overdue.
2. **Accounts**: list each planned account's pipelines (in each region of ``GATEHOUSE_REGIONS``), roles, IAM users
   and groups, ``GATEHOUSE_CATALOG_CONCURRENCY`` accounts at a time with no transaction open (network calls take
   seconds; SQLite admits one writer), and write each account in its own short transaction as it arrives, with
   its ``last_synced_at`` and the run's progress. A sync killed here is resumed by the next one from the
   ``CatalogSyncRun`` row: only the planned accounts not yet written are listed.
3. **Identity Center**, then the ``catalog.synced`` audit event with the counts.

Rules the writes keep:

- Rows are never deleted (requests and grants reference them); a row the sync no longer sees gets
  ``present=False``, and comes back to ``present=True`` if AWS shows it again. An account that left the
  Organization is kept (its grants still need revoking) and is no longer requestable.
- "No longer seen" is only said about what was actually read: when an account (or one region of it, or
  Identity Center) cannot be read, its rows are left as they are and the failure is reported in ``errors``.
- Admin edits win: an existing account keeps its name and enabled flag; a role an admin marked sensitive stays
  sensitive (the sync only ever raises sensitivity, from the ``gatehouse:sensitive`` tag).
- Organizations owns an account's tags, and with an environment tag its environment: every listing reads them
  (``aws_catalog.account_tags``) and a change is recorded (``awsaccount.environment_changed`` or
  ``.tags_changed``, before and after) and told to the admins once per sync. An account with no environment tag
  keeps the environment an admin set; nothing is guessed from a name, so with neither it stays unknown, and
  routing fails closed on it (``accessrequests.scope``).
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
from django.db import models
from django.utils import timezone

from accessrequests import audit, risk
from accessrequests.aws import catalog as aws_catalog
from accessrequests.aws.client import default_region, error_details
from accessrequests.aws.config import quick_reads
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
from accessrequests.models.catalog import environment_from_tag, environment_tag

logger = logging.getLogger(__name__)

# Serialises concurrent syncs on PostgreSQL (beat and a manual `manage.py sync_catalog`), so two writers never
# both insert the same new pipeline and one of them fails on the unique constraint. SQLite's IMMEDIATE
# transactions already admit one writer at a time.
_SYNC_LOCK_KEY = 0x67617465_73796E63  # "gatesync"

M = TypeVar("M", bound=models.Model)


def environment_for(tags: Mapping[str, str], *, before_tags: Mapping[str, str], current: str) -> str:
    """The environment of an account whose tags were just read as ``tags`` (``before_tags`` last time).

    An environment tag decides (its value, or unknown when it names no environment). Without one, the environment
    an admin set stays; but one that came from a tag removed since goes back to unknown, because nobody chose it.
    Nothing is guessed from the account's name: a new account is unknown until a tag or an admin says.
    """
    tag = environment_tag(tags)
    if tag is not None:
        return environment_from_tag(tag[1])
    if environment_tag(before_tags) is not None:
        return Environment.UNKNOWN
    return current


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
    tags: dict[str, str] | None = (
        None  # its tags in Organizations; None: not read (no organization, or failed)
    )
    errors: list[str] = field(default_factory=list)


@dataclass
class _IdentityCenterRead:
    instance: aws_catalog.IdentityCenter | None
    region: str
    permission_sets: list[aws_catalog.PermissionSet] = field(default_factory=list)
    users: list[aws_catalog.IdentityCenterUser] = field(default_factory=list)
    groups: list[aws_catalog.IdentityCenterGroup] = field(default_factory=list)


def _read_account(account: AwsAccount, regions: list[str], *, organization: bool = True) -> _AccountRead:
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
    if organization:
        # From the hub, not the account: Organizations is the management account's (or its delegate's).
        read.tags = attempt("tags", partial(aws_catalog.account_tags, account.account_id))
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
    if read.groups is not None:
        _write_members(
            {group.arn: group.members for group in read.groups},
            groups=Principal.objects.filter(account=account, kind=PrincipalKind.IAM_GROUP),
            members=Principal.objects.filter(account=account, kind=PrincipalKind.IAM_USER),
            now=now,
        )
    return counts


def organization_facts_write(account: AwsAccount, tags: Mapping[str, str]) -> dict[str, Any] | None:
    """Store the Organizations tags just read for ``account`` and the environment they give it
    (:func:`environment_for`), under a lock on the row (an admin may be setting the environment of an untagged
    account at this moment). A change is audited with before and after (``awsaccount.environment_changed``, or
    ``.tags_changed`` when the environment stays) and returned for the admins' notice; None when nothing changed.
    """
    row = AwsAccount.objects.select_for_update().get(pk=account.pk)
    before_tags, tags = dict(row.tags or {}), dict(tags)
    environment = environment_for(tags, before_tags=before_tags, current=row.environment)
    if tags == before_tags and environment == row.environment:
        return None
    AwsAccount.objects.filter(pk=row.pk).update(tags=tags, environment=environment)
    moved = environment != row.environment
    audit.record(
        action=f"awsaccount.{'environment_changed' if moved else 'tags_changed'}",
        object_type="awsaccount",
        object_id=row.pk,
        account_id=row.account_id,
        before={"environment": row.environment, "tags": before_tags},
        after={"environment": environment, "tags": tags, "source": "organizations"},
    )
    tag = environment_tag(tags)
    return {
        "account_id": row.account_id,
        "name": row.name,
        "environment": [row.environment, environment],
        "tag": f"{tag[0]}={tag[1]}" if tag else "",
    }


def _write_members(
    listed: Mapping[str, Iterable[str]],
    *,
    groups: Iterable[Principal],
    members: Iterable[Principal],
    now: Any,
) -> None:
    """Make each group's ``members`` what AWS listed (by external id); members the catalog does not know yet
    are skipped (they are not linked to anyone in the portal either)."""
    by_id = {member.external_id: member.pk for member in members}
    for group in groups:
        if group.external_id not in listed:
            continue
        wanted = {by_id[m] for m in listed[group.external_id] if m in by_id}
        have = set(group.members.values_list("pk", flat=True))
        if wanted != have:
            group.members.set(wanted)
        Principal.objects.filter(pk=group.pk).update(members_synced_at=now)


def _permission_set_values(item: aws_catalog.PermissionSet) -> dict[str, Any]:
    level, reasons = risk.permission_set_risk(
        managed_policy_arns=item.managed_policies,
        customer_managed_policies=item.customer_managed_policies,
        inline_policy=item.inline_policy or None,
    )
    return {
        "name": item.name,
        "description": item.description,
        "managed_policies": list(item.managed_policies),
        "customer_managed_policies": list(item.customer_managed_policies),
        "inline_policy": item.inline_policy,
        "risk": level,
        "risk_reasons": reasons,
    }


def principal_refresh_members(*, principal: Principal) -> None:
    """Read one group's members from AWS now (before a decision, so a member added since the last sync counts
    as a recipient). When AWS cannot be read, the catalog's last reading stands and the failure is logged."""
    now = timezone.now()
    try:
        with quick_reads():
            members, known = _read_members(principal)
    except (ClientError, BotoCoreError, ValueError) as exc:
        logger.warning("members of %s not refreshed (%s); using the catalog's", principal, _describe(exc))
        return
    if members is not None:
        _write_members({principal.external_id: members}, groups=[principal], members=known, now=now)


def _read_members(principal: Principal) -> tuple[tuple[str, ...] | None, Any]:
    if principal.kind == PrincipalKind.IAM_GROUP and principal.account is not None:
        members = aws_catalog.iam_group_members(
            principal.external_id.rsplit("/", 1)[-1],
            account_id=principal.account.account_id,
            role_arn=principal.account.provisioning_role_arn or None,
        )
        return members, Principal.objects.filter(account=principal.account, kind=PrincipalKind.IAM_USER)
    if principal.kind == PrincipalKind.IC_GROUP and principal.identity_center is not None:
        center = principal.identity_center
        members = aws_catalog.ic_group_members(
            center.identity_store_id, principal.external_id, region=center.region
        )
        return members, Principal.objects.filter(identity_center=center, kind=PrincipalKind.IC_USER)
    return None, None


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
                **_permission_set_values(item),
                "present": True,
            }
            for item in read.permission_sets
        },
    )
    principals: dict[str, int] = {}
    people: dict[str, dict[str, dict[str, str]]] = {
        PrincipalKind.IC_USER: {
            user.user_id: {"name": user.user_name, "display_name": user.display_name, "email": user.email}
            for user in read.users
        },
        PrincipalKind.IC_GROUP: {
            group.group_id: {"name": group.display_name, "display_name": group.display_name, "email": ""}
            for group in read.groups
        },
    }
    for kind, found in people.items():
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
                        **facts,
                        "identity_center_id": instance.pk,
                        "present": True,
                    }
                    for principal_id, facts in found.items()
                },
            ),
        )
    counts["principals"] = principals
    _write_members(
        {group.group_id: group.member_ids for group in read.groups},
        groups=Principal.objects.filter(identity_center=instance, kind=PrincipalKind.IC_GROUP),
        members=Principal.objects.filter(identity_center=instance, kind=PrincipalKind.IC_USER),
        now=timezone.now(),
    )
    return counts


_KINDS = (
    "organizational_units",
    "accounts",
    "account_tags",
    "pipelines",
    "roles",
    "principals",
    "permission_sets",
    "identity_centers",
)


def summary_lines(result: Mapping[str, Any]) -> list[str]:
    """One line per catalog kind of a sync result: ``pipelines: 5 seen, 0 created, 0 updated, 0 gone``."""
    lines = []
    for kind in _KINDS:
        counts = result.get(kind)
        if counts:
            lines.append(f"{kind}: " + ", ".join(f"{value} {name}" for name, value in counts.items()))
    return lines
