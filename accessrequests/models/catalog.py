"""The AWS catalog: accounts, pipelines, passable roles, Identity Center and its permission sets.

Synced from AWS by a periodic task (``sync_catalog``) and editable in Django admin; requests point at it.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class Environment(models.TextChoices):
    PRODUCTION = "production", "Production"
    STAGING = "staging", "Staging"
    DEVELOPMENT = "development", "Development"
    SANDBOX = "sandbox", "Sandbox"


class AwsAccount(models.Model):
    """An AWS account Gatehouse provisions into (through its provisioning role, when it has one)."""

    account_id = models.CharField(max_length=12, unique=True)
    name = models.CharField(max_length=100)
    environment = models.CharField(
        max_length=20, choices=Environment.choices, default=Environment.DEVELOPMENT
    )
    provisioning_role_arn = models.CharField(
        max_length=2048,
        blank=True,
        help_text="Role the worker assumes in this account; empty to use its own credentials.",
    )
    enabled = models.BooleanField(default=True)
    repair_drift = models.BooleanField(default=True, help_text="Repair drift found by the periodic check.")
    last_synced_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name"]
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

    class Meta:
        ordering = ["name", "region"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "region", "name"], name="%(app_label)s_%(class)s_unique_name"
            )
        ]

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

    Its risk class is computed from its policies at every catalog sync (``accessrequests.risk``): a privileged
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
