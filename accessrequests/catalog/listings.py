"""Catalog sync: make the portal's catalog match what AWS says exists, at the size of an organization.

This module reads one account and writes a batch of them, and Identity Center; ``catalog.sync`` runs a
sync in three steps:

1. **Organization**: walk the roots and units once (each account with its unit), write units and accounts
   (joined, left, moved) in one short transaction, and plan which accounts to list: all of them (``full``), or
   (``incremental``, what beat runs) only those new, changed in Organizations, failed last time or overdue.
2. **Accounts**: list each planned account's pipelines (in each region of ``GATEHOUSE_REGIONS``), roles, IAM users
   and groups, ``GATEHOUSE_CATALOG_CONCURRENCY`` accounts at a time with no transaction open (network calls take
   seconds; SQLite admits one writer), and write the listings as they arrive, whatever has arrived (up to
   ``GATEHOUSE_CATALOG_WRITE_BATCH`` accounts) in one short transaction with each account's ``last_synced_at``
   and the run's progress. A sync killed here is resumed by the next one from the ``CatalogSyncRun`` row: only
   the planned accounts not yet written are listed. A pipeline is read in full (GetPipeline, its tags) only when
   ``ListPipelines`` shows it changed since its last full reading (its version, creation and update time), or
   that reading is older than ``GATEHOUSE_CATALOG_PIPELINE_REFRESH_HOURS``.
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
  routing fails closed on it (``accessrequests.core.scope``).
- Running it twice changes nothing the second time (apart from timestamps and one more audit event).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import models
from django.utils import timezone

from accessrequests.audit import trail as audit
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
from accessrequests.policy import risk

logger = logging.getLogger(__name__)

# Serialises concurrent syncs on PostgreSQL (beat and a manual `manage.py sync_catalog`), so two writers never
# both insert the same new pipeline and one of them fails on the unique constraint. SQLite's IMMEDIATE
# transactions already admit one writer at a time.
SYNC_LOCK_KEY = 0x67617465_73796E63  # "gatesync"

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


def configured_regions() -> list[str]:
    configured = getattr(settings, "GATEHOUSE_REGIONS", None) or [default_region()]
    return list(dict.fromkeys(region.strip() for region in configured if region.strip()))


def describe_failure(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        code, message = error_details(exc)
        return f"{code}: {message}"
    return f"{type(exc).__name__}: {exc}"


# --- phase 1: read AWS ---


@dataclass
class AccountRead:
    """What one account looked like in AWS; ``None`` lists mean "could not be read"."""

    account_id: str
    pipelines: dict[str, aws_catalog.PipelineListing] = field(default_factory=dict)  # region -> its listing
    roles: list[aws_catalog.Role] | None = None
    users: list[aws_catalog.IamIdentity] | None = None
    groups: list[aws_catalog.IamIdentity] | None = None
    tags: dict[str, str] | None = (
        None  # its tags in Organizations; None: not read (no organization, or failed)
    )
    errors: list[str] = field(default_factory=list)


@dataclass
class IdentityCenterRead:
    instance: aws_catalog.IdentityCenter | None
    region: str
    permission_sets: list[aws_catalog.PermissionSet] = field(default_factory=list)
    users: list[aws_catalog.IdentityCenterUser] = field(default_factory=list)
    groups: list[aws_catalog.IdentityCenterGroup] = field(default_factory=list)


def known_pipelines(account_ids: Iterable[int], *, read_since: Any) -> dict[int, dict[str, dict[str, str]]]:
    """What the sync may leave unread: per account (pk) and region, each present pipeline's name and what
    ``ListPipelines`` said of it at its last full reading, if that reading is not older than ``read_since``
    (``None``: nothing is known, every pipeline is read in full). One query."""
    known: dict[int, dict[str, dict[str, str]]] = {}
    if read_since is None:
        return known
    rows = (
        Pipeline.objects.filter(account_id__in=list(account_ids), present=True, read_at__gte=read_since)
        .exclude(listed_as="")
        .values_list("account_id", "region", "name", "listed_as")
    )
    for account_pk, region, name, listed_as in rows.iterator(chunk_size=5000):
        known.setdefault(account_pk, {}).setdefault(region, {})[name] = listed_as
    return known


def read_account(
    account: AwsAccount,
    regions: list[str],
    *,
    organization: bool = True,
    known: Mapping[str, Mapping[str, str]] | None = None,
) -> AccountRead:
    """List one account (no database access: this runs in the listing threads). ``known`` (region -> name ->
    listed as, from :func:`known_pipelines`) names the pipelines that need no full reading if still unchanged."""
    # An empty provisioning role means "the conventional role", which the client factory derives (or the
    # hub's own credentials when this is the hub's account).
    where: dict[str, Any] = {
        "account_id": account.account_id,
        "role_arn": account.provisioning_role_arn or None,
    }
    read = AccountRead(account_id=account.account_id)

    def attempt(what: str, call: Callable[[], Any]) -> Any:
        try:
            return call()
        except (ClientError, BotoCoreError, ValueError) as exc:
            # ValueError: the client factory refusing a provisioning role outside the account (an admin typo).
            read.errors.append(f"account {account.account_id} {what}: {describe_failure(exc)}")
            logger.warning("catalog sync: %s", read.errors[-1])
            return None

    # Each client (CodePipeline per region, IAM, Organizations) is made once for the account's listing.
    with aws_catalog.one_client_each():
        for region in regions:
            found = attempt(
                f"pipelines in {region}",
                partial(
                    aws_catalog.list_pipeline_changes, region=region, known=(known or {}).get(region), **where
                ),
            )
            if found is not None:
                read.pipelines[region] = found
        read.roles = attempt("roles", partial(aws_catalog.list_roles, **where))
        read.users = attempt("users", partial(aws_catalog.list_iam_users, **where))
        read.groups = attempt("groups", partial(aws_catalog.list_iam_groups, **where))
        if organization:
            # From the hub, not the account: Organizations is the management account's (or its delegate's).
            read.tags = attempt("tags", partial(aws_catalog.account_tags, account.account_id))
    return read


def read_identity_center() -> IdentityCenterRead:
    region = default_region()
    instance = aws_catalog.identity_center(region=region)
    read = IdentityCenterRead(instance=instance, region=region)
    if instance is not None:
        read.permission_sets = aws_catalog.list_permission_sets(instance.instance_arn, region=region)
        read.users = aws_catalog.list_ic_users(instance.identity_store_id, region=region)
        read.groups = aws_catalog.list_ic_groups(instance.identity_store_id, region=region)
    return read


# --- phase 2: write ---


def reconcile_rows(
    model: type[M],
    *,
    existing: Iterable[M],
    key: Callable[[M], Hashable],
    wanted: Mapping[Hashable, dict[str, Any]],
    vouched: Callable[[M], bool] = lambda row: True,
    merge: Callable[[M, dict[str, Any]], dict[str, Any]] | None = None,
    unchanged: Iterable[Hashable] = (),
) -> dict[str, int]:
    """Create the wanted rows that are missing, update the changed ones, mark unseen vouched rows absent.

    ``wanted`` maps a natural key to the row's field values (attribute names, e.g. ``account_id``);
    ``vouched`` says which existing rows this sync has read the truth about; ``merge`` lets a model keep
    values an admin set; ``unchanged`` are keys of existing rows AWS still shows as they were (seen, not read
    again: neither written nor gone). Returns counts of seen/created/updated/gone rows.
    """
    rows = {key(row): row for row in existing}
    kept = {row_key for row_key in unchanged if row_key in rows}
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
        if row_key in kept:
            continue
        if row_key not in wanted and getattr(row, "present", False) and vouched(row):
            row.present = False  # type: ignore[attr-defined]  # every synced model has it
            changed.setdefault(row.pk, row)
            changed_fields.add("present")
            gone += 1
    model._default_manager.bulk_create(created)
    if changed:
        model._default_manager.bulk_update(list(changed.values()), sorted(changed_fields))
    return {
        "seen": len(wanted) + len(kept),
        "created": len(created),
        "updated": len(changed) - gone,
        "gone": gone,
    }


def add_counts(total: dict[str, int], counts: dict[str, int]) -> None:
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


def write_accounts(
    listed: Sequence[tuple[AwsAccount, AccountRead]], regions: list[str], now: Any
) -> dict[str, Any]:
    """Write the listings of several accounts (the caller's transaction): a handful of queries per batch, not per
    account. Each account is reconciled exactly as on its own (rows keyed by account); see the module docstring."""
    counts: dict[str, Any] = {}
    account_pks = [account.pk for account, _ in listed]

    # Pipelines: vouch for the regions read now, and for regions no longer configured (the sync no longer
    # stands behind those rows, so they must not stay requestable).
    read_regions = {account.pk: set(read.pipelines) for account, read in listed}
    wanted: dict[Hashable, dict[str, Any]] = {}
    unchanged: list[Hashable] = []
    read_arns: list[str] = []
    for account, read in listed:
        for region, listing in read.pipelines.items():
            unchanged.extend((account.pk, region, name) for name in listing.unchanged)
            for pipeline in listing.read:
                read_arns.append(pipeline.arn)
                wanted[(account.pk, pipeline.region, pipeline.name)] = {
                    "account_id": account.pk,
                    "region": pipeline.region,
                    "name": pipeline.name,
                    "arn": pipeline.arn,
                    "role_arn": pipeline.role_arn,
                    "stages": _stages(pipeline),
                    "tags": dict(pipeline.tags),
                    "listed_as": pipeline.listed_as,
                    "present": True,
                }
    counts["pipelines"] = reconcile_rows(
        Pipeline,
        existing=Pipeline.objects.filter(account_id__in=account_pks),
        key=lambda row: (row.account_id, row.region, row.name),
        wanted=wanted,
        vouched=lambda row: row.region in read_regions[row.account_id] or row.region not in regions,
        unchanged=unchanged,
    ) | {"read": len(wanted)}
    by_regions: dict[frozenset[str], list[int]] = {}
    for pk, read_in in read_regions.items():
        if read_in:
            by_regions.setdefault(frozenset(read_in), []).append(pk)
    for same_regions, pks in by_regions.items():
        Pipeline.objects.filter(account_id__in=pks, region__in=sorted(same_regions), present=True).update(
            last_seen_at=now
        )
    for start in range(0, len(read_arns), 1000):
        Pipeline.objects.filter(arn__in=read_arns[start : start + 1000]).update(read_at=now)

    with_roles = [(account, read.roles) for account, read in listed if read.roles is not None]
    if with_roles:
        counts["roles"] = reconcile_rows(
            PassableRole,
            existing=PassableRole.objects.filter(account_id__in=[account.pk for account, _ in with_roles]),
            key=lambda row: (row.account_id, row.arn),
            wanted={
                (account.pk, role.arn): {
                    "account_id": account.pk,
                    "arn": role.arn,
                    "name": role.name,
                    "trusts_codepipeline": role.trusts_codepipeline,
                    "sensitive": role.sensitive,
                    "present": True,
                }
                for account, roles in with_roles
                for role in roles
            },
            merge=_keep_sensitive,
        )
        PassableRole.objects.filter(
            account_id__in=[account.pk for account, _ in with_roles], present=True
        ).update(last_seen_at=now)

    # (ARN, name) per kind and account; an account whose listing of a kind could not be read is left out of that
    # kind, so nothing of that kind is marked gone in it.
    principals: dict[str, int] = {}
    kinds = {
        PrincipalKind.IAM_USER: "users",
        PrincipalKind.IAM_ROLE: "roles",
        PrincipalKind.IAM_GROUP: "groups",
    }
    existing: dict[str, list[Principal]] = {kind: [] for kind in kinds}
    for row in Principal.objects.filter(account_id__in=account_pks, kind__in=list(kinds)):
        existing[row.kind].append(row)
    for kind, attribute in kinds.items():
        readable = [(account, getattr(read, attribute)) for account, read in listed]
        readable = [(account, items) for account, items in readable if items is not None]
        if not readable:
            continue
        read_accounts = {account.pk for account, _ in readable}
        add_counts(
            principals,
            reconcile_rows(
                Principal,
                existing=[row for row in existing[kind] if row.account_id in read_accounts],
                key=lambda row: (row.account_id, row.external_id),
                wanted={
                    (account.pk, item.arn): {
                        "kind": kind,
                        "external_id": item.arn,
                        "name": item.name,
                        "account_id": account.pk,
                        "present": True,
                    }
                    for account, items in readable
                    for item in items
                },
            ),
        )
    counts["principals"] = principals
    with_groups = [(account, read.groups) for account, read in listed if read.groups is not None]
    if with_groups:
        people = Principal.objects.filter(
            account_id__in=[account.pk for account, _ in with_groups],
            kind__in=[PrincipalKind.IAM_GROUP, PrincipalKind.IAM_USER],
        )
        rows = list(people)  # after the writes above: with the principals just created
        _write_members(
            {group.arn: group.members for _, groups in with_groups for group in groups or ()},
            groups=[row for row in rows if row.kind == PrincipalKind.IAM_GROUP],
            members=[row for row in rows if row.kind == PrincipalKind.IAM_USER],
            now=now,
        )
    return counts


def organization_facts_write(read: Mapping[int, Mapping[str, str]]) -> list[dict[str, Any]]:
    """Store the Organizations tags just read for some accounts (pk -> tags) and the environment they give each
    (:func:`environment_for`), under a lock on their rows (an admin may be setting the environment of an untagged
    account at this moment): one locking read for all of them. Each change is audited with before and after
    (``awsaccount.environment_changed``, or ``.tags_changed`` when the environment stays) and returned for the
    admins' notice; accounts whose tags and environment stayed are neither written nor returned.
    """
    changes = []
    for row in AwsAccount.objects.select_for_update().filter(pk__in=list(read)).order_by("pk"):
        before_tags, tags = dict(row.tags or {}), dict(read[row.pk])
        environment = environment_for(tags, before_tags=before_tags, current=row.environment)
        if tags == before_tags and environment == row.environment:
            continue
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
        changes.append(
            {
                "account_id": row.account_id,
                "name": row.name,
                "environment": [row.environment, environment],
                "tag": f"{tag[0]}={tag[1]}" if tag else "",
            }
        )
    return changes


def _write_members(
    listed: Mapping[str, Iterable[str]],
    *,
    groups: Iterable[Principal],
    members: Iterable[Principal],
    now: Any,
) -> None:
    """Make each group's ``members`` what AWS listed (by external id); members the catalog does not know yet
    are skipped (they are not linked to anyone in the portal either). One read of every listed group's members
    and one write of their ``members_synced_at``; only a group whose members changed is written further."""
    by_id = {member.external_id: member.pk for member in members}
    targets = {
        group.pk: (group, {by_id[m] for m in listed[group.external_id] if m in by_id})
        for group in groups
        if group.external_id in listed
    }
    if not targets:
        return
    have: dict[int, set[int]] = {pk: set() for pk in targets}
    through = Principal.members.through
    for group_pk, member_pk in through.objects.filter(from_principal_id__in=list(targets)).values_list(
        "from_principal_id", "to_principal_id"
    ):
        have[group_pk].add(member_pk)
    for pk, (group, wanted) in targets.items():
        if wanted != have[pk]:
            group.members.set(wanted)
    Principal.objects.filter(pk__in=list(targets)).update(members_synced_at=now)


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
        logger.warning(
            "members of %s not refreshed (%s); using the catalog's", principal, describe_failure(exc)
        )
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


def write_identity_center(read: IdentityCenterRead) -> dict[str, Any]:
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
    counts["permission_sets"] = reconcile_rows(
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
        add_counts(
            principals,
            reconcile_rows(
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
