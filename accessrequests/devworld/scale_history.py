"""The scale world's database half: people, rules and a million historical requests over the synced catalog.

:func:`seed_requests` tops the database up to N requests with PostgreSQL's ``COPY`` (a realistic status mix,
their decisions, grants and pipelines), so a second run adds nothing. ``scale_world`` builds the AWS half.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

SCALE_JUSTIFICATION = "scale world"

Log = Callable[[str], None]


# Of every 100 historical requests: most were approved long ago and their grants ended; a few are pending.
CHUNK = 50_000
STATUS_MIX = (("approved", 62), ("denied", 12), ("cancelled", 9), ("expired", 15), ("pending", 2))


def _text(value: Any) -> str:
    """One value in ``COPY``'s text format."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, list):
        return "{" + ",".join(json.dumps(str(v)) for v in value) + "}"
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _columns(model: Any, given: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
    """The ``COPY`` column list for ``model``: the ``given`` columns, then every other NOT NULL column with the
    model's own default, read from the model each run, so a column added later with a default cannot break the
    seed; one without a default stops it with its name instead of a NotNullViolation halfway through."""
    from django.db import models
    from django.db.models import NOT_PROVIDED

    fields = {field.column: field for field in model._meta.concrete_fields}
    unknown = sorted(set(given) - set(fields))
    if unknown:
        raise RuntimeError(f"{model._meta.db_table} has no column {', '.join(unknown)}")
    extra: list[str] = []
    values: list[str] = []
    for column, field in fields.items():
        if column in given or field.null or field.primary_key or field.db_default is not NOT_PROVIDED:
            continue
        default = field.get_default()  # what the ORM writes when a row leaves the field out
        if default is None:
            raise RuntimeError(
                f"{model._meta.db_table}.{column} has no default: give it a value in seed_requests"
            )
        extra.append(column)
        values.append(json.dumps(default) if isinstance(field, models.JSONField) else _text(default))
    return [*given, *extra], tuple(values)


def _copy(cursor: Any, model: Any, given: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """``COPY table (columns) FROM STDIN`` in text format, the model's defaults for the columns not ``given``;
    returns the number of rows sent."""
    columns, tail = _columns(model, given)
    sent = 0
    with cursor.copy(f"COPY {model._meta.db_table} ({', '.join(columns)}) FROM STDIN") as copy:
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join([*(_text(v) for v in row), *tail]))
            buffer.write("\n")
            sent += 1
            if sent % 20_000 == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    return sent


def seed_people(*, requesters: int = 300, log: Log = print) -> dict[str, Any]:
    """Portal users linked to the synced Identity Center users, approvers, and two rules over every account."""
    from django.contrib.auth.models import Group, User

    from accessrequests.models import ApprovalRule, Environment, Principal, PrincipalKind

    approvers = Group.objects.get_or_create(name="approvers")[0]
    prod_approvers = Group.objects.get_or_create(name="production-approvers")[0]
    requester_group = Group.objects.get_or_create(name="requesters")[0]
    people = list(
        Principal.objects.filter(kind=PrincipalKind.IC_USER, present=True).order_by("name")[:requesters]
    )
    if not people:
        raise RuntimeError("no Identity Center users in the catalog: run the catalog sync first")
    for principal in people:
        user, created = User.objects.get_or_create(
            username=principal.name, defaults={"email": principal.email}
        )
        if created:
            user.set_password(principal.name)
            user.save(update_fields=["password"])
            user.groups.add(requester_group)
            principal.users.add(user)
    for name, group in (("scale-approver", approvers), ("scale-prod-approver", prod_approvers)):
        user, created = User.objects.get_or_create(username=name)
        if created:
            user.set_password(name)
            user.save(update_fields=["password"])
            user.groups.add(group)
    production = ApprovalRule.objects.get_or_create(
        name="Production (scale)", defaults={"priority": 10, "approvals_required": 1, "max_duration_hours": 8}
    )[0]
    production.approver_groups.add(prod_approvers)
    # By environment, as an organization's rules are written: no list of a thousand account ids.
    if production.environments != [Environment.PRODUCTION]:
        production.environments = [Environment.PRODUCTION.value]
        production.save(update_fields=["environments"])
    production.accounts.clear()
    everything = ApprovalRule.objects.get_or_create(
        name="Everything else (scale)", defaults={"priority": 900, "max_duration_hours": 24}
    )[0]
    everything.approver_groups.add(approvers)
    log(f"people: {len(people)} requesters linked to Identity Center users, 2 approvers, 2 rules")
    return {"requesters": len(people), "rules": {"production": production.pk, "everything": everything.pk}}


def seed_requests(*, total: int, seed: int = 13, log: Log = print) -> dict[str, Any]:
    """Top the request table up to ``total`` rows of scale history (PostgreSQL ``COPY``); idempotent."""
    from django.contrib.auth.models import User
    from django.db import connection

    from accessrequests.models import AccessRequest, ApprovalRule, Decision, Grant, Pipeline, Principal

    if connection.vendor != "postgresql":
        raise RuntimeError("seed_requests writes with COPY: PostgreSQL only")
    have = AccessRequest.objects.count()
    need = total - have
    if need <= 0:
        log(f"requests: {have:,} already (wanted {total:,})")
        return {"requests": have, "created": 0}
    rng = random.Random(seed + have)  # noqa: S311 - sample data, not secrets
    people = list(
        Principal.objects.filter(users__isnull=False, users__username__startswith="engineer")
        .values_list("pk", "users__pk")
        .order_by("pk")
    )
    pipelines = list(
        Pipeline.objects.filter(present=True, account__present=True).values_list(
            "pk", "account_id", "arn", "account__environment"
        )
    )
    rules = {r.name: r.pk for r in ApprovalRule.objects.filter(name__endswith="(scale)")}
    approver = User.objects.get(username="scale-approver").pk
    prod_approver = User.objects.get(username="scale-prod-approver").pk
    if not people or not pipelines or len(rules) != 2:
        raise RuntimeError("seed the people (seed_people) over a synced catalog first")
    statuses = [status for status, weight in STATUS_MIX for _ in range(weight)]
    now = datetime.now(UTC)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SELECT coalesce(max(id), 0) FROM accessrequests_accessrequest")
        first_id = cursor.fetchone()[0] + 1
        sent = decided_count = granted = 0
        for chunk in range(0, need, CHUNK):
            rows: list[tuple[Any, ...]] = []
            links: list[tuple[int, int]] = []
            decisions: list[tuple[Any, ...]] = []
            grants: list[tuple[Any, ...]] = []
            for n in range(chunk, min(need, chunk + CHUNK)):
                request_id = first_id + n
                principal_id, user_id = people[rng.randrange(len(people))]
                pipeline_id, account_id, arn, environment = pipelines[rng.randrange(len(pipelines))]
                production = environment == "production"
                status = statuses[rng.randrange(len(statuses))]
                # Spread over two years, newest last; pending ones are recent (they expire after three days).
                age = (
                    timedelta(hours=rng.randrange(1, 60))
                    if status == "pending"
                    else timedelta(minutes=rng.randrange(60 * 24 * 730))
                )
                created = now - age
                decided = None if status == "pending" else created + timedelta(minutes=rng.randrange(5, 600))
                statement = json.dumps(
                    [{"Effect": "Allow", "Action": ["codepipeline:GetPipeline"], "Resource": [arn]}],
                    separators=(",", ":"),
                )
                rows.append(
                    (
                        request_id, user_id, principal_id, "f", "pipeline", account_id, "viewer", "[]", "", "",
                        statement, f"{SCALE_JUSTIFICATION} #{request_id}", "", created.isoformat(), 4,
                        (created + timedelta(hours=4)).isoformat(), "identity_center", "form", "",
                        rules["Production (scale)" if production else "Everything else (scale)"], 1, status,
                        created.isoformat(), decided.isoformat() if decided else None, "", "", "",
                    )
                )  # fmt: skip
                links.append((request_id, pipeline_id))
                if status in ("approved", "denied"):
                    decisions.append(
                        (
                            request_id, prod_approver if production else approver,
                            "approve" if status == "approved" else "deny",
                            "" if status == "approved" else "not now", decided.isoformat(), "",  # type: ignore[union-attr]
                        )
                    )  # fmt: skip
                if status == "approved":
                    assert decided is not None
                    expires = decided + timedelta(hours=4)
                    live = expires > now
                    grants.append(
                        (
                            request_id, principal_id, account_id, "identity_center", statement,
                            "active" if live else "expired", "" if live else "expired", 1, "", "[]", "{}",
                            decided.isoformat(), expires.isoformat(), decided.isoformat(),
                            None if live else expires.isoformat(), decided.isoformat(), decided.isoformat(),
                        )
                    )  # fmt: skip
            sent += _copy(
                cursor,
                AccessRequest,
                [
                    "id", "requester_id", "principal_id", "on_behalf", "kind", "account_id", "level", "actions",
                    "stage", "action_name", "statements", "justification", "ticket", "starts_at", "duration_hours",
                    "ends_at", "delivery", "source", "pasted_text", "rule_id", "approvals_required", "status",
                    "created_at", "decided_at", "trusted_account_id", "trusted_principal_arn", "external_id",
                ],
                rows,
            )  # fmt: skip
            _copy(cursor, AccessRequest.pipelines.through, ["accessrequest_id", "pipeline_id"], links)
            _copy(
                cursor,
                Decision,
                ["request_id", "reviewer_id", "outcome", "comment", "created_at", "void_reason"],
                decisions,
            )
            _copy(
                cursor,
                Grant,
                [
                    "request_id", "principal_id", "account_id", "delivery", "statements", "status", "ending",
                    "attempts", "last_error", "aws_request_ids", "details", "starts_at", "expires_at",
                    "applied_at", "revoked_at", "created_at", "updated_at",
                ],
                grants,
            )  # fmt: skip
            decided_count += len(decisions)
            granted += len(grants)
            log(f"  {sent:,} of {need:,} requests written ({time.perf_counter() - started:.0f}s)")
        for table in ("accessrequests_accessrequest", "accessrequests_grant", "accessrequests_decision"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"  # noqa: S608 - constant names
            )
        cursor.execute("ANALYZE")
    seconds = time.perf_counter() - started
    log(
        f"requests: {sent:,} created ({decided_count:,} decisions, {granted:,} grants) in {seconds:.0f}s; "
        f"{have + sent:,} in all"
    )
    return {
        "requests": have + sent,
        "created": sent,
        "decisions": decided_count,
        "grants": granted,
        "seconds": seconds,
    }
