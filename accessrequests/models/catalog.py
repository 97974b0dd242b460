"""The AWS catalog: accounts, pipelines, passable roles, Identity Center and its permission sets.

Synced from AWS by a periodic task (``sync_catalog``) and editable in Django admin; requests point at it.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import models
from django.db.models import Q

from accessrequests.core.wording import counted


class Environment(models.TextChoices):
    PRODUCTION = "production", "Production"
    STAGING = "staging", "Staging"
    DEVELOPMENT = "development", "Development"
    SANDBOX = "sandbox", "Sandbox"
    # Neither an environment tag in Organizations nor an admin said what the account is. Routing fails closed on
    # it: only a rule that names the account (by id, unit or tag) routes its requests, and none is low risk.
    UNKNOWN = "unknown", "Unknown"


# The environments a rule may name (an unknown environment is never a rule's: see ``accessrequests.core.scope``).
KNOWN_ENVIRONMENTS = [value for value in Environment.values if value != Environment.UNKNOWN]

# The Organizations tags that say an account's environment, the more specific first, and the short values
# people use for them. A tag whose value is none of these leaves the environment unknown.
ENVIRONMENT_TAGS = ("gatehouse:environment", "environment")
ENVIRONMENT_ALIASES = {
    "prod": Environment.PRODUCTION,
    "prd": Environment.PRODUCTION,
    "stage": Environment.STAGING,
    "stg": Environment.STAGING,
    "dev": Environment.DEVELOPMENT,
}


def environment_tag(tags: Mapping[str, str]) -> tuple[str, str] | None:
    """The environment tag among an account's tags, as (key, value): the first key of ``ENVIRONMENT_TAGS`` whose
    value names an environment, else the first present at all (its value then names none). None: untagged."""
    present = [(key, str(tags[key])) for key in ENVIRONMENT_TAGS if key in tags]
    for key, value in present:
        if environment_from_tag(value) != Environment.UNKNOWN:
            return key, value
    return present[0] if present else None


def environment_from_tag(value: str) -> str:
    """The environment a tag value names (``Prod`` and ``prd`` are production), or unknown."""
    value = value.strip().lower()
    if value in KNOWN_ENVIRONMENTS:
        return value
    return ENVIRONMENT_ALIASES.get(value, Environment.UNKNOWN)


class OrganizationalUnit(models.Model):
    """An Organizations root or organizational unit, as the catalog sync last read it.

    ``path`` is the names from the root down ("Root / Workloads / Payments"): what people search and read; the
    tree itself is ``parent``. A unit the sync no longer finds is kept (accounts and rules may point at it) with
    ``present=False``.
    """

    ou_id = models.CharField(max_length=68, unique=True, help_text="r-… for a root, ou-… for a unit.")
    name = models.CharField(max_length=128)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    path = models.CharField(max_length=1024, blank=True)
    present = models.BooleanField(default=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["path"]
        verbose_name = "organizational unit"

    def __str__(self) -> str:
        return self.path or self.name


class AwsAccount(models.Model):
    """An AWS account Gatehouse provisions into (through its provisioning role, when it has one).

    ``present`` follows the Organization: an account that left it is kept (its grants still need revoking) but
    is no longer offered for new requests. ``tags`` are its tags in Organizations as the catalog sync read them
    at its last listing; Organizations owns them, and with them the environment of an account that has an
    environment tag. An admin sets the environment of an untagged account; with neither it is unknown.
    """

    account_id = models.CharField(max_length=12, unique=True)
    name = models.CharField(max_length=100)
    environment = models.CharField(max_length=20, choices=Environment.choices, default=Environment.UNKNOWN)
    tags = models.JSONField(
        default=dict, blank=True, help_text="Its tags in Organizations, as read at its last listing."
    )
    provisioning_role_arn = models.CharField(
        max_length=2048,
        blank=True,
        help_text="Role the worker assumes in this account; empty to use its own credentials.",
    )
    enabled = models.BooleanField(default=True)
    repair_drift = models.BooleanField(default=True, help_text="Repair drift found by the periodic check.")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    ou = models.ForeignKey(
        OrganizationalUnit,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="accounts",
        verbose_name="organizational unit",
    )
    present = models.BooleanField(
        default=True, help_text="False once the account is no longer in the Organization: not requestable."
    )
    removed_at = models.DateTimeField(null=True, blank=True)
    # What Organizations said last time (name, status, parent): the incremental sync re-lists an account's
    # pipelines, roles and principals only when this changed, or when its last listing is old or failed.
    org_fingerprint = models.CharField(max_length=64, blank=True)
    sync_error = models.TextField(blank=True, help_text="Why its last listing failed (retried next sync).")

    class Meta:
        ordering = ["name"]
        indexes = [
            # The pickers: enabled accounts in name order, optionally within one unit.
            models.Index(fields=["enabled", "present", "name"], name="account_requestable_name"),
            models.Index(fields=["ou", "name"], name="account_ou_name"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(account_id__regex=r"^[0-9]{12}$"), name="%(app_label)s_%(class)s_twelve_digits"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.account_id})"

    @property
    def is_production(self) -> bool:
        return self.environment == Environment.PRODUCTION

    @property
    def environment_tag(self) -> tuple[str, str] | None:
        """Its environment tag in Organizations, as (key, value); None when it has none (an admin's to set)."""
        return environment_tag(self.tags or {})


class Pipeline(models.Model):
    """A CodePipeline pipeline seen in an account and region."""

    account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="pipelines")
    region = models.CharField(max_length=32)
    name = models.CharField(max_length=100)
    arn = models.CharField(max_length=2048, unique=True)
    role_arn = models.CharField(max_length=2048, blank=True, help_text="The pipeline's service role.")
    stages = models.JSONField(default=list, blank=True, help_text="Stage names and their action names.")
    tags = models.JSONField(default=dict, blank=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    present = models.BooleanField(default=True, help_text="False once a sync no longer finds it in AWS.")
    # What ListPipelines said of it (version, created, updated) when the sync last read it in full, and when: the
    # sync reads it again (GetPipeline, its tags) only when the listing says otherwise or the reading is older
    # than GATEHOUSE_CATALOG_PIPELINE_REFRESH_HOURS (tagging a pipeline changes nothing in the listing).
    listed_as = models.CharField(max_length=64, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "region"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "region", "name"], name="%(app_label)s_%(class)s_unique_name"
            )
        ]
        indexes = [models.Index(fields=["name", "id"], name="pipeline_name_id")]

    def __str__(self) -> str:
        return f"{self.name} ({self.region}, {self.account.account_id})"


class PassableRole(models.Model):
    """An IAM role that may be the subject of a PassRole request (only if it trusts CodePipeline)."""

    account = models.ForeignKey(AwsAccount, on_delete=models.PROTECT, related_name="roles")
    arn = models.CharField(max_length=2048, unique=True)
    name = models.CharField(max_length=64)
    trusts_codepipeline = models.BooleanField(default=False)
    sensitive = models.BooleanField(default=False, help_text="Sensitive roles can never be requested.")
    present = models.BooleanField(default=True)
    last_seen_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.arn

    @property
    def requestable(self) -> bool:
        return self.trusts_codepipeline and not self.sensitive and self.present


class IdentityCenter(models.Model):
    """An IAM Identity Center instance and its identity store."""

    instance_arn = models.CharField(max_length=2048, unique=True)
    identity_store_id = models.CharField(max_length=64)
    region = models.CharField(max_length=32)

    def __str__(self) -> str:
        return self.instance_arn


class PermissionSetRisk(models.TextChoices):
    STANDARD = "standard", "Standard"
    PRIVILEGED = "privileged", "Privileged"


class PermissionSet(models.Model):
    """An Identity Center permission set that can be assigned through a request.

    Its risk class is computed from its policies at every catalog sync (``accessrequests.policy.risk``): a privileged
    set (any action ``*``, a whole sensitive service, an admin-equivalent AWS managed policy, a policy the
    portal cannot read) is requestable only under an approval rule that opts in to privileged sets.
    """

    identity_center = models.ForeignKey(
        IdentityCenter, on_delete=models.PROTECT, related_name="permission_sets"
    )
    arn = models.CharField(max_length=2048, unique=True)
    name = models.CharField(max_length=32)
    description = models.CharField(max_length=700, blank=True)
    portal_owned = models.BooleanField(
        default=False, help_text="Created by Gatehouse to carry an approved policy."
    )
    # Until a sync has read its policies, a set counts as privileged: unknown access is not low risk.
    risk = models.CharField(
        max_length=12, choices=PermissionSetRisk.choices, default=PermissionSetRisk.PRIVILEGED
    )
    risk_reasons = models.JSONField(default=list, blank=True, help_text="Why it is privileged, if it is.")
    managed_policies = models.JSONField(
        default=list, blank=True, help_text="ARNs of the AWS managed policies attached to it."
    )
    customer_managed_policies = models.JSONField(
        default=list,
        blank=True,
        help_text="Names (paths included) of customer managed policies it references.",
    )
    inline_policy = models.TextField(blank=True, help_text="Its inline policy document, as AWS holds it.")
    present = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_privileged(self) -> bool:
        return self.risk == PermissionSetRisk.PRIVILEGED


class CatalogSyncStatus(models.TextChoices):
    RUNNING = "running", "Running"
    FINISHED = "finished", "Finished"
    FAILED = "failed", "Failed"


class CatalogSyncRun(models.Model):
    """One catalog sync and how far it got: the cursor a crashed sync resumes from.

    ``pending`` holds the account ids still to list; each account's listing is written (and removed from
    ``pending``) in its own transaction, so a sync killed half-way loses at most the accounts in flight, and the
    next sync carries on with the rest instead of starting over.
    """

    mode = models.CharField(max_length=12, default="incremental")
    status = models.CharField(
        max_length=10, choices=CatalogSyncStatus.choices, default=CatalogSyncStatus.RUNNING
    )
    phase = models.CharField(max_length=32, default="organization")
    started_at = models.DateTimeField(auto_now_add=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    accounts_total = models.PositiveIntegerField(default=0)
    accounts_done = models.PositiveIntegerField(default=0)
    pending = models.JSONField(default=list, blank=True)
    resumed = models.PositiveIntegerField(default=0, help_text="How many times a crashed run was resumed.")
    result = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        verbose_name = "catalog sync"
        constraints = [
            # At most one sync runs (or waits to be resumed) at a time.
            models.UniqueConstraint(
                fields=["status"],
                condition=Q(status="running"),
                name="%(app_label)s_%(class)s_one_running",
            )
        ]

    def __str__(self) -> str:
        return f"{self.mode} sync {self.started_at:%Y-%m-%d %H:%M} ({self.status})"

    @property
    def progress(self) -> str:
        return f"{self.accounts_done} of {counted(self.accounts_total, 'account')}"
