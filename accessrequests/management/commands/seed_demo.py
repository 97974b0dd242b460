"""manage.py seed_demo: the demo AWS world on the moto server at AWS_ENDPOINT_URL, plus demo portal users.

One idempotent command (``make demo`` runs it on every start):

1. ``seed_demo_world()``: accounts, pipelines, roles, IAM users ``mateojackson`` and ``marymajor`` with access
   keys, an Identity Center instance with users, groups and permission sets. Refuses without an endpoint.
2. ``catalog_sync()``: the portal's catalog now shows that world.
3. Portal users, all with the password ``gatehouse-demo``: ``requester`` (linked to IAM user mateojackson and
   Identity Center user paulo.santos), ``marymajor`` (linked to IAM user marymajor), ``approver`` and
   ``approver2``, ``admin`` (superuser), ``auditor``.
4. Approval rules, reviewed by the ``approvers`` group, contact platform-team@example.com, routing by the
   accounts' environment tags: "Production" (environment production, any kind: 2 approvals, at most 4 h),
   "PassRole" (iam:PassRole in any other account whose environment is known: 1 approval, 8 h), "Non-production
   pipelines" (staging, development and sandbox accounts: 1 approval, 8 h). Auto-approval of low-risk requests
   is off in the demo, so even a viewer request waits for a reviewer and the whole review flow can be seen.
5. The demo IAM users' access keys go to ``var/demo-aws-keys.json`` (mode 0600) when AWS reveals them, which
   is only when they are created (the first run against a fresh moto server).
6. A database that Gatehouse already used keeps its demo: moto keeps nothing across restarts, so the world is
   built again with the same ids (``seed_demo_world`` seeds moto's random generator), and the drift check puts
   back in AWS every access Gatehouse holds as live (audited as drift found and repaired). A database made
   against another world (other ids: an older Gatehouse, another moto version) is refused with exit status 3
   before anything is written: what it says is live cannot be made true there. ``make demo`` then starts clean.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.migrations.executor import MigrationExecutor

from accessrequests.audit import trail as audit
from accessrequests.aws.client import endpoint_url
from accessrequests.catalog.listings import summary_lines
from accessrequests.catalog.sync import catalog_sync
from accessrequests.core.roles import ADMINS, APPROVERS, AUDITORS, REQUESTERS
from accessrequests.core.wording import counted
from accessrequests.devworld.demo_world import PRIMARY_REGION, seed_demo_world, world_fingerprint
from accessrequests.models import (
    ApprovalRule,
    AuditEvent,
    AwsAccount,
    Environment,
    Grant,
    Principal,
    PrincipalKind,
    RequestKind,
)
from accessrequests.provisioning.engine import drift_check

DEMO_PASSWORD = "gatehouse-demo"  # noqa: S105 - documented in the README; demo users only
CONTACT = "platform-team@example.com"
KEYS_FILE = "demo-aws-keys.json"
FOREIGN_WORLD = 3  # exit status: the database belongs to another demo AWS world
MATEO_ERROR = (
    "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
    "codepipeline:GetPipeline on resource: my-pipeline"
)

# username -> (groups, extra fields)
DEMO_USERS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "requester": ((REQUESTERS,), {"first_name": "Mateo", "last_name": "Jackson"}),
    "marymajor": ((REQUESTERS,), {"first_name": "Mary", "last_name": "Major"}),
    "approver": ((APPROVERS,), {"first_name": "Ana", "last_name": "Approver"}),
    "approver2": ((APPROVERS,), {"first_name": "Ben", "last_name": "Approver"}),
    "admin": ((ADMINS,), {"is_staff": True, "is_superuser": True}),
    "auditor": ((AUDITORS,), {}),
}
ROLE_LABELS = {
    "requester": "requester; IAM user mateojackson, Identity Center user paulo.santos",
    "marymajor": "requester; IAM user marymajor",
    "approver": "approver (sets up TOTP on first review)",
    "approver2": "approver (second approval for production)",
    "admin": "admin, Django admin at /admin/",
    "auditor": "auditor, read-only",
}

# Rules route by what accounts are (their environment, from the environment tag in Organizations), never by
# lists of account ids: a production account that joins the organization later is covered by "Production" as soon
# as the catalog sync reads its tag. Lower priority numbers are tried first (see rules.match_rule), so production is
# caught before the PassRole rule, and a PassRole request for a production role needs the two production approvals.
# No rule is a catch-all for every account: an account whose environment is unknown (untagged) is refused with
# the reason, never routed to the one-approval rules.
DEMO_RULES: tuple[dict[str, Any], ...] = (
    {
        "name": "Production",
        "priority": 10,
        "environments": [Environment.PRODUCTION.value],
        "kinds": [],
        "approvals_required": 2,
        "max_duration_hours": 4,
    },
    {
        "name": "PassRole",
        "priority": 20,
        "environments": [],
        "kinds": [RequestKind.PASS_ROLE.value],
        "approvals_required": 1,
        "max_duration_hours": 8,
    },
    {
        "name": "Non-production pipelines",
        "priority": 30,
        "environments": [Environment.STAGING.value, Environment.DEVELOPMENT.value, Environment.SANDBOX.value],
        "kinds": [],
        "approvals_required": 1,
        "max_duration_hours": 8,
        "break_glass": ["requester"],
    },
)


def tips(url: str) -> str:
    """The "what to try first" block, printed by seed_demo and again by ``manage.py demo`` once it is up."""
    url = url.rstrip("/")
    return "\n".join(
        [
            "What to try first",
            f"  1. Open {url}/ and sign in as requester / {DEMO_PASSWORD}.",
            '  2. Choose "Paste an error" and paste:',
            f"       {MATEO_ERROR}",
            "     Gatehouse finds mateojackson and my-pipeline and proposes viewer access; submit it.",
            f"  3. In a private window sign in as approver / {DEMO_PASSWORD}, set up TOTP when asked, open Review,",
            "     read the policy diff and approve. (Auto-approval is off in the demo, so every request waits",
            "     for a reviewer.) The worker then writes the policy to mateojackson in the moto account.",
            f"  4. admin / {DEMO_PASSWORD} manages accounts, pipelines and rules at {url}/admin/;",
            f"     auditor / {DEMO_PASSWORD} reads and exports the audit trail at {url}/audit/.",
        ]
    )


def logins() -> str:
    lines = [f"Demo logins (password for all: {DEMO_PASSWORD})"]
    lines += [f"  {name:<10} {ROLE_LABELS[name]}" for name in DEMO_USERS]
    return "\n".join(lines)


def _write_private(path: Path, content: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Created 0600 from the start (no window where another user could read it), and re-chmodded in case an
    # older file had looser permissions.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(content)


class Command(BaseCommand):
    help = (
        "Seed the demo AWS world (moto at AWS_ENDPOINT_URL), sync the catalog, create demo users and rules."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url", default=None, help="Portal URL to print in the tips (default: the SITE_URL setting)."
        )
        parser.add_argument("--no-tips", action="store_true", help="Do not print the what-to-try block.")

    def handle(self, *args: Any, **options: Any) -> None:
        endpoint = endpoint_url()
        if not endpoint:
            raise CommandError(
                "AWS_ENDPOINT_URL is not set. seed_demo writes a demo world and only runs against a moto "
                "server: use `make demo`, or start one (python -m accessrequests.aws.motoserver) and set "
                "AWS_ENDPOINT_URL to its URL."
            )
        # Check before touching AWS: a run that seeds the world and then fails on the database would have
        # consumed the access keys' secrets, which AWS shows only once.
        executor = MigrationExecutor(connections[DEFAULT_DB_ALIAS])
        if executor.migration_plan(executor.loader.graph.leaf_nodes()):
            raise CommandError("The database has unapplied migrations: run `manage.py migrate` first.")

        world = seed_demo_world()
        created = world["created"]
        self.stdout.write(
            f"Demo AWS world at {endpoint}: "
            + (
                f"created {counted(len(created), 'object')}."
                if created
                else "already seeded, nothing created."
            )
        )
        self._keys(world)
        fingerprint = world_fingerprint(world)
        self._refuse_another_world(fingerprint)

        result = catalog_sync()
        if result["errors"]:
            raise CommandError("catalog sync could not read the demo world: " + "; ".join(result["errors"]))
        self.stdout.write("Catalog synced: " + "; ".join(summary_lines(result)))

        with transaction.atomic():
            retired = self._retire_earlier_worlds(world)
            new_users = self._users(world)
            new_rules = self._rules()
            audit.record(
                action="demo.seeded",
                object_type="demo",
                after={
                    "endpoint_url": endpoint,
                    "world": fingerprint,
                    "users_created": new_users,
                    "rules_created": new_rules,
                    "accounts_disabled": retired,
                },
            )
        if retired:
            self.stdout.write(
                f"Disabled {counted(len(retired), 'account')} of an earlier demo world: {', '.join(retired)}."
            )
        self.stdout.write(f"Portal users: {len(new_users)} created, {len(DEMO_USERS) - len(new_users)} kept.")
        self.stdout.write(f"Approval rules: {', '.join(rule['name'] for rule in DEMO_RULES)}.")
        self._put_back()

        self.stdout.write("")
        self.stdout.write(logins())
        if not options["no_tips"]:
            self.stdout.write("")
            self.stdout.write(tips(options["url"] or settings.SITE_URL))

    def _refuse_another_world(self, fingerprint: str) -> None:
        """Stop before the database is touched when it was seeded against a world with other ids."""
        last = AuditEvent.objects.filter(action="demo.seeded").order_by("-seq").first()
        if last is None or (last.after or {}).get("world") == fingerprint:
            return
        raise CommandError(
            "this database was seeded against another demo AWS world (other account and Identity Center ids: "
            "an older Gatehouse or another moto version), so what it holds as live cannot be made true in this "
            "one. Start with an empty database: `DEMO_FRESH=1 make demo`, or point DATABASE_URL at an empty one.",
            returncode=FOREIGN_WORLD,
        )

    def _put_back(self) -> None:
        """Make AWS hold what the database says is live: after a restart the moto server is a new, empty one."""
        if not Grant.objects.filter(applied_at__isnull=False).exists():
            return
        counts = drift_check()
        line = (
            f"Gatehouse's access in the demo AWS world: {counted(counts['checked'], 'principal')} compared, "
            f"{counts['repaired']} put back (drift repaired)"
        )
        if counts["skipped"]:
            line += f", {counts['skipped']} with work in flight left to the worker"
        if counts["errors"]:
            line += f"; {counts['errors']} could not be written (see the dashboard)"
        self.stdout.write(line + ".")

    def _retire_earlier_worlds(self, world: dict[str, Any]) -> list[str]:
        """Disable accounts the demo world does not have; returns their ids.

        Each ``make demo`` starts a fresh moto server, whose production account gets a new random id, while
        the database persists; the previous run's account would otherwise stay in the request form. Only
        seed_demo may do this: it alone knows the demo world is all of "AWS".
        """
        current = {account["id"] for account in world["accounts"]}
        stale = AwsAccount.objects.filter(enabled=True).exclude(account_id__in=current)
        retired = sorted(stale.values_list("account_id", flat=True))
        stale.update(enabled=False)
        return retired

    def _users(self, world: dict[str, Any]) -> list[str]:
        user_model = get_user_model()
        created_names = []
        for username, (groups, extra) in DEMO_USERS.items():
            user, created = user_model.objects.get_or_create(
                username=username, defaults={"email": f"{username}@example.com", **extra}
            )
            # The printed logins must be true after every run, even if someone changed a password.
            if created or not user.check_password(DEMO_PASSWORD):
                user.set_password(DEMO_PASSWORD)
                user.save(update_fields=["password"])
            user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in groups))
            if created:
                created_names.append(username)

        management_arns = {arn.rsplit("/", 1)[1]: arn for arn in world["iam_users"]}
        ic_users = world["identity_center"]["users"]
        links = {
            "requester": [
                (PrincipalKind.IAM_USER, management_arns["mateojackson"]),
                (PrincipalKind.IC_USER, ic_users["paulo.santos"]),
            ],
            "marymajor": [(PrincipalKind.IAM_USER, management_arns["marymajor"])],
        }
        for username, principals in links.items():
            user = user_model.objects.get(username=username)
            for kind, external_id in principals:
                Principal.objects.get(kind=kind, external_id=external_id).users.add(user)
        return created_names

    def _rules(self) -> list[str]:
        approvers = Group.objects.get_or_create(name=APPROVERS)[0]
        created_names = []
        for spec in DEMO_RULES:
            rule, created = ApprovalRule.objects.get_or_create(
                name=spec["name"],
                defaults={
                    "priority": spec["priority"],
                    "kinds": spec["kinds"],
                    "environments": spec["environments"],
                    "approvals_required": spec["approvals_required"],
                    "max_duration_hours": spec["max_duration_hours"],
                    "allow_permanent": False,
                    "auto_approve_low_risk": False,
                    "contact": CONTACT,
                },
            )
            if created:
                rule.approver_groups.add(approvers)
                created_names.append(rule.name)
                if spec.get("break_glass"):
                    # The demo's requester may break the glass outside production (one hour, no approver).
                    rule.break_glass_users.add(
                        *get_user_model().objects.filter(username__in=spec["break_glass"])
                    )
        return created_names

    def _keys(self, world: dict[str, Any]) -> None:
        path = Path(settings.VAR_DIR) / KEYS_FILE
        secrets = {
            name: key
            for name, key in world["access_keys"].items()
            if key.get("secret_access_key") is not None
        }
        if not secrets:
            where = f"kept in {path}" if path.exists() else "not shown again (AWS reveals a secret only once)"
            self.stdout.write(f"Demo IAM access keys: {where}.")
            return
        document = {
            "endpoint_url": world["endpoint_url"],
            "region": PRIMARY_REGION,
            "note": "Access keys of the demo IAM users on the demo's moto server; not real AWS credentials.",
            "users": {
                name: {
                    "aws_access_key_id": key["access_key_id"],
                    "aws_secret_access_key": key["secret_access_key"],
                }
                for name, key in sorted(secrets.items())
            },
        }
        _write_private(path, json.dumps(document, indent=2) + "\n")
        self.stdout.write(f"Demo IAM access keys (mateojackson, marymajor): written to {path} (mode 0600).")
