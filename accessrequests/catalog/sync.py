"""The catalog sync's run: the organization first, then the accounts to list, each written as it arrives.

``catalog_sync`` is what beat, ``manage.py sync_catalog`` and the demo call; the reads and writes of one account
and of Identity Center live in ``catalog.listings`` (see its docstring for the rules the writes keep).
"""

from __future__ import annotations

import hashlib
import queue
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from accessrequests.audit import trail as audit
from accessrequests.aws import catalog as aws_catalog
from accessrequests.catalog.listings import (
    SYNC_LOCK_KEY,
    AccountRead,
    IdentityCenterRead,
    add_counts,
    configured_regions,
    describe_failure,
    known_pipelines,
    logger,
    organization_facts_write,
    read_account,
    read_identity_center,
    reconcile_rows,
    summary_lines,
    write_accounts,
    write_identity_center,
)
from accessrequests.models import (
    AwsAccount,
    CatalogSyncRun,
    CatalogSyncStatus,
    OrganizationalUnit,
)
from accessrequests.notify import hooks as notify

FULL = "full"
INCREMENTAL = "incremental"
# Changes of accounts' tags or environments one sync tells the admins in detail (a first sync of a large
# organization sets thousands; the count says how many there were, the audit trail has each).
MAX_CHANGES_TOLD = 200


def _fingerprint(item: aws_catalog.Account) -> str:
    # What makes an account's own listings worth reading again: a new name or status (SUSPENDED -> ACTIVE).
    # A move between units changes only its ``ou``, which the organization phase writes without listing.
    return hashlib.sha256(f"{item.name}\0{item.status}".encode()).hexdigest()[:32]


def _write_units(tree: aws_catalog.OrgTree, now: Any) -> dict[str, int]:
    """Upsert every root and unit with its parent and path; units no longer found are marked not present."""
    by_id = {unit.id: unit for unit in tree.units}

    def path(unit_id: str) -> str:
        names, seen = [], set()
        while unit_id in by_id and unit_id not in seen:
            seen.add(unit_id)
            names.append(by_id[unit_id].name)
            unit_id = by_id[unit_id].parent_id
        return " / ".join(reversed(names))[:1024]

    counts = reconcile_rows(
        OrganizationalUnit,
        existing=OrganizationalUnit.objects.all(),
        key=lambda row: row.ou_id,
        wanted={
            unit.id: {"ou_id": unit.id, "name": unit.name[:128], "path": path(unit.id), "present": True}
            for unit in tree.units
        },
    )
    rows = {row.ou_id: row for row in OrganizationalUnit.objects.all()}
    moved = []
    for unit in tree.units:
        row, parent = rows[unit.id], rows.get(unit.parent_id)
        if row.parent_id != (parent.pk if parent else None):
            row.parent_id = parent.pk if parent else None
            moved.append(row)
    OrganizationalUnit.objects.bulk_update(moved, ["parent"])
    OrganizationalUnit.objects.filter(ou_id__in=list(by_id)).update(last_seen_at=now)
    return counts


def _plan(tree: aws_catalog.OrgTree, mode: str, now: Any) -> tuple[list[str], dict[str, Any]]:
    """Write the organization (units, accounts joining, leaving, moving) and say which accounts to list.

    A new account starts with an unknown environment: its tags are read with its listing, right after.

    Full: every enabled account in the organization. Incremental: accounts new to the catalog, changed in
    Organizations (name, status, back after leaving), never listed, whose last listing failed, plus the
    ``GATEHOUSE_CATALOG_STALE_PER_RUN`` longest unlisted of those older than ``GATEHOUSE_CATALOG_RELIST_HOURS``
    (changes inside an account, a new pipeline, are not visible in Organizations; this bounds how late they show).
    """
    known = {account.account_id: account for account in AwsAccount.objects.select_related("ou")}
    units = {row.ou_id: row.pk for row in OrganizationalUnit.objects.only("pk", "ou_id")}
    listed_ids = {item.id for item in tree.accounts}
    created, changed, moved, returned = [], [], [], []
    to_list: set[str] = set()
    for item in tree.accounts:
        ou_id = units.get(tree.parent_of.get(item.id, ""))
        fingerprint = _fingerprint(item)
        account = known.get(item.id)
        if account is None:
            account = AwsAccount(
                account_id=item.id,
                name=item.name[:100],
                # A suspended account cannot be provisioned into; an admin enables it when it is back. The
                # accounts named unmanaged (the management and Gatehouse accounts: no provisioning role there)
                # are recorded but never listed or offered, so Gatehouse does not even try them.
                enabled=item.status == "ACTIVE" and item.id not in settings.GATEHOUSE_UNMANAGED_ACCOUNTS,
                ou_id=ou_id,
                org_fingerprint=fingerprint,
            )
            created.append(account)
            to_list.add(item.id)
            continue
        if not account.present:
            account.present, account.removed_at = True, None
            returned.append(item.id)
            to_list.add(item.id)
        if account.org_fingerprint != fingerprint:
            account.org_fingerprint = fingerprint
            to_list.add(item.id)
            changed.append(item.id)
        if account.ou_id != ou_id:
            account.ou_id = ou_id
            moved.append(item.id)
    AwsAccount.objects.bulk_create(created)
    dirty = [known[i] for i in dict.fromkeys(changed + moved + returned)]
    AwsAccount.objects.bulk_update(dirty, ["present", "removed_at", "org_fingerprint", "ou"])
    # Left the organization: kept (grants in it still need revoking) but no longer offered. Only said when an
    # organization was read; outside one, the accounts an admin added by hand are not the sync's to judge.
    removed = (
        [a.account_id for a in known.values() if a.present and a.account_id not in listed_ids]
        if tree.organization
        else []
    )
    if removed:
        AwsAccount.objects.filter(account_id__in=removed).update(present=False, removed_at=now)

    candidates = AwsAccount.objects.filter(enabled=True, present=True)
    if mode == FULL:
        to_list = set(candidates.values_list("account_id", flat=True))
    else:
        to_list |= set(
            candidates.filter(Q(last_synced_at__isnull=True) | ~Q(sync_error="")).values_list(
                "account_id", flat=True
            )
        )
        stale_before = now - timedelta(hours=settings.GATEHOUSE_CATALOG_RELIST_HOURS)
        to_list |= set(
            candidates.filter(last_synced_at__lt=stale_before)
            .order_by("last_synced_at")
            .values_list("account_id", flat=True)[: settings.GATEHOUSE_CATALOG_STALE_PER_RUN]
        )
        to_list &= set(candidates.values_list("account_id", flat=True))
    summary = {
        "seen": len(tree.accounts),
        "created": len(created),
        "changed": len(changed),
        "moved": len(moved),
        "returned": len(returned),
        "removed": len(removed),
    }
    return sorted(to_list), summary


def _start_or_resume(mode: str, resume: bool) -> tuple[CatalogSyncRun | None, bool]:
    """The run to work on: an unfinished one (crashed: its heartbeat is older than
    ``GATEHOUSE_CATALOG_SYNC_STALE_SECONDS``, or ``resume`` says its process is gone), else a new one. None when
    another sync is alive."""
    now = timezone.now()
    with transaction.atomic():
        running = CatalogSyncRun.objects.select_for_update().filter(status=CatalogSyncStatus.RUNNING).first()
        if running is not None:
            stale = now - timedelta(seconds=settings.GATEHOUSE_CATALOG_SYNC_STALE_SECONDS)
            if not resume and (running.heartbeat_at or running.started_at) > stale:
                return None, False
            running.resumed += 1
            running.heartbeat_at = now
            running.save(update_fields=["resumed", "heartbeat_at"])
            return running, True
        try:
            with transaction.atomic():
                return CatalogSyncRun.objects.create(mode=mode, heartbeat_at=now), False
        except IntegrityError:  # another sync started between our look and our insert
            return None, False


def _beat(run: CatalogSyncRun, **fields: Any) -> None:
    fields["heartbeat_at"] = timezone.now()
    CatalogSyncRun.objects.filter(pk=run.pk).update(**fields)
    for name, value in fields.items():
        setattr(run, name, value)


def catalog_sync(
    *,
    mode: str = FULL,
    resume: bool = False,
    progress: Callable[[CatalogSyncRun], None] | None = None,
    read_all: bool = False,
) -> dict[str, Any]:
    """Read the AWS catalog and upsert it into the database; return what changed (also audited).

    1. Organization: walk the roots and units (accounts with their unit), write units and accounts (joined,
       left: marked not present, moved), and plan which accounts to list (``mode``; see :func:`_plan`). The plan
       is saved on the run (``CatalogSyncRun.pending``).
    2. Accounts: list each planned account's pipelines, roles, users and groups, ``GATEHOUSE_CATALOG_CONCURRENCY``
       at a time, and write the listings in short transactions as they arrive, up to
       ``GATEHOUSE_CATALOG_WRITE_BATCH`` accounts each (an account's ``last_synced_at`` moves in the same
       transaction: that is the cursor a resumed run reads). A pipeline ``ListPipelines`` shows unchanged since
       its last full reading (version, update time) is not read again (no GetPipeline, no tags) unless that
       reading is older than ``GATEHOUSE_CATALOG_PIPELINE_REFRESH_HOURS``; ``read_all`` reads every one.
    3. Identity Center, then the ``catalog.synced`` audit event with the counts.

    A run that crashed is resumed by the next sync (see :func:`_start_or_resume`): it skips the organization
    phase and lists only the planned accounts not yet written. The result has ``accounts`` / ``pipelines`` /
    ``roles`` / ``principals`` / ``permission_sets`` / ``identity_centers`` counts, the ``regions`` read,
    ``errors`` (one line per listing that could not be read; those rows were left untouched) and the ``run``.
    """
    regions = configured_regions()
    run, resumed = _start_or_resume(mode, resume)
    if run is None:
        logger.info("catalog sync: another sync is running; nothing to do")
        return {"regions": regions, "skipped": "another catalog sync is running", "errors": []}
    try:
        return _run(run, resumed, regions, progress, read_all)
    except (ClientError, BotoCoreError) as exc:
        # Organizations or Identity Center could not be read at all: this run cannot finish; the next starts over.
        _beat(
            run,
            status=CatalogSyncStatus.FAILED,
            finished_at=timezone.now(),
            errors=[*run.errors, describe_failure(exc)],
        )
        raise


def _run(
    run: CatalogSyncRun,
    resumed: bool,
    regions: list[str],
    progress: Callable[[CatalogSyncRun], None] | None,
    read_all: bool,
) -> dict[str, Any]:
    result: dict[str, Any] = dict(run.result or {})
    errors: list[str] = list(run.errors or [])
    if not resumed or run.phase == "organization":
        tree = aws_catalog.organization_tree()
        now = timezone.now()
        with transaction.atomic():
            _sync_lock()
            result["organizational_units"] = _write_units(tree, now)
            pending, result["accounts"] = _plan(tree, run.mode, now)
            # Kept with the run, so that a resumed run also knows whether there are tags to read, and whether
            # it reads every pipeline in full.
            result["organization"] = tree.organization
            if read_all:
                result["read_all"] = True
            _beat(
                run,
                phase="accounts",
                pending=pending,
                accounts_total=len(pending),
                accounts_done=0,
                result=result,
            )
        run.started_at = run.started_at or now
    # Resumed: what the crashed run had planned, less what it already wrote (listed since the run began).
    planned = list(run.pending)
    done = (
        set(
            AwsAccount.objects.filter(
                account_id__in=planned, last_synced_at__gte=run.started_at, sync_error=""
            ).values_list("account_id", flat=True)
        )
        if resumed
        else set()
    )
    accounts = {
        a.account_id: a
        for a in AwsAccount.objects.filter(account_id__in=[i for i in planned if i not in done])
    }
    # A pipeline ListPipelines shows as it was at its last full reading is not read again, unless that reading
    # is older than the refresh period (a tag change alone does not show in the listing) or the run reads all.
    read_since = (
        None
        if result.get("read_all")
        else timezone.now() - timedelta(hours=settings.GATEHOUSE_CATALOG_PIPELINE_REFRESH_HOURS)
    )
    known = known_pipelines([a.pk for a in accounts.values()], read_since=read_since)
    if progress:
        progress(run)
    batch_size = max(1, settings.GATEHOUSE_CATALOG_WRITE_BATCH)
    arrived: queue.SimpleQueue[Future[AccountRead]] = queue.SimpleQueue()
    with ThreadPoolExecutor(max_workers=max(1, settings.GATEHOUSE_CATALOG_CONCURRENCY)) as pool:
        in_organization = bool(result.get("organization", True))
        reads = []
        for account in accounts.values():
            future = pool.submit(
                read_account, account, regions, organization=in_organization, known=known.get(account.pk)
            )
            future.add_done_callback(arrived.put)
            reads.append(future)
        try:
            left = len(reads)
            while left:
                # Whatever has arrived while the last batch was written goes into the next one: one transaction
                # and a handful of queries for up to GATEHOUSE_CATALOG_WRITE_BATCH accounts.
                batch = [arrived.get()]
                while len(batch) < batch_size:
                    try:
                        batch.append(arrived.get_nowait())
                    except queue.Empty:
                        break
                left -= len(batch)
                listed = []
                for done_future in batch:
                    read = done_future.result()
                    errors.extend(read.errors)
                    listed.append((accounts[read.account_id], read))
                _write_batch(run, listed, regions, result)
                if progress:
                    progress(run)
        except BaseException:
            for future in reads:
                future.cancel()  # a crash stops the listing; the run stays "running" for the next sync
            raise

    _beat(run, phase="identity_center")
    ic_read: IdentityCenterRead | None
    try:
        ic_read = read_identity_center()
    except (ClientError, BotoCoreError) as exc:
        ic_read = None
        errors.append(f"identity center: {describe_failure(exc)}")
        logger.warning("catalog sync: %s", errors[-1])
    with transaction.atomic():
        _sync_lock()
        if ic_read is not None:
            for name, counts in write_identity_center(ic_read).items():
                add_counts(result.setdefault(name, {}), counts)
        result["regions"] = regions
        result["errors"] = errors
        result["run"] = {"id": run.pk, "mode": run.mode, "listed": run.accounts_done, "resumed": run.resumed}
        audit.record(action="catalog.synced", object_type="catalog", after=result)
        if result.get("organization_changes"):
            notify.on_accounts_changed(run)
        _beat(
            run,
            status=CatalogSyncStatus.FINISHED,
            phase="done",
            finished_at=timezone.now(),
            result=result,
            errors=errors,
            pending=[],
        )
    logger.info("catalog sync: %s", "; ".join(summary_lines(result)) + (" (with errors)" if errors else ""))
    return result


def _sync_lock() -> None:
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [SYNC_LOCK_KEY])


def _write_batch(
    run: CatalogSyncRun,
    listed: list[tuple[AwsAccount, AccountRead]],
    regions: list[str],
    result: dict[str, Any],
) -> None:
    """Some accounts' listings, each one's ``last_synced_at`` (or why it failed) and the run's progress, in one
    transaction: a crash leaves each account either written with its cursor or not at all."""
    now = timezone.now()
    with transaction.atomic():
        _sync_lock()
        for name, counts in write_accounts(listed, regions, now).items():
            add_counts(result.setdefault(name, {}), counts)
        tagged = {account.pk: read.tags for account, read in listed if read.tags is not None}
        if tagged:
            changes = organization_facts_write(tagged)
            add_counts(
                result.setdefault("account_tags", {}),
                {
                    "read": len(tagged),
                    "changed": len(changes),
                    "environments_changed": sum(len(set(change["environment"])) > 1 for change in changes),
                },
            )
            # What the admins are told at the end of the run (the audit trail has every change in full).
            told = result.setdefault("organization_changes", []) if changes else []
            told.extend(changes[: max(0, MAX_CHANGES_TOLD - len(told))])
        read_well = [account.pk for account, read in listed if not read.errors]
        if read_well:
            AwsAccount.objects.filter(pk__in=read_well).update(sync_error="", last_synced_at=now)
        for account, read in listed:
            if read.errors:
                AwsAccount.objects.filter(pk=account.pk).update(sync_error="; ".join(read.errors)[:2000])
        _beat(run, accounts_done=run.accounts_done + len(listed), result=result)
