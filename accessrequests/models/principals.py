"""Principals: who receives access in AWS, and which portal users they belong to."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from accessrequests.models.catalog import AwsAccount, IdentityCenter


class PrincipalKind(models.TextChoices):
    IAM_USER = "iam_user", "IAM user"
    IAM_ROLE = "iam_role", "IAM role"
    IAM_GROUP = "iam_group", "IAM group"
    IC_USER = "ic_user", "Identity Center user"
    IC_GROUP = "ic_group", "Identity Center group"


IAM_KINDS = (PrincipalKind.IAM_USER, PrincipalKind.IAM_ROLE, PrincipalKind.IAM_GROUP)
IC_KINDS = (PrincipalKind.IC_USER, PrincipalKind.IC_GROUP)


class Principal(models.Model):
    """An IAM user/role/group in one account, or an Identity Center user/group.

    ``external_id`` is the IAM ARN or the identity store's principal id. A request for a principal that is not
    linked to the requester is shown to reviewers as "on behalf of".
    """

    kind = models.CharField(max_length=16, choices=PrincipalKind.choices)
    name = models.CharField(max_length=128)
    display_name = models.CharField(
        max_length=256, blank=True, help_text="A person's name as Identity Center shows it (synced from AWS)."
    )
    external_id = models.CharField(max_length=2048)
    account = models.ForeignKey(
        AwsAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="principals"
    )
    identity_center = models.ForeignKey(
        IdentityCenter, null=True, blank=True, on_delete=models.PROTECT, related_name="principals"
    )
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="principals")
    present = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "external_id"], name="%(app_label)s_%(class)s_unique_identity"
            ),
            # IAM principals live in an account; Identity Center principals in an identity store.
            models.CheckConstraint(
                condition=(Q(kind__in=IAM_KINDS) & Q(account__isnull=False))
                | (Q(kind__in=IC_KINDS) & Q(identity_center__isnull=False)),
                name="%(app_label)s_%(class)s_has_home",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name}"

    @property
    def label(self) -> str:
        """How people recognise it: an Identity Center user's display name, else the name."""
        return self.display_name or self.name

    @property
    def is_iam(self) -> bool:
        return self.kind in IAM_KINDS

    @property
    def iam_type(self) -> str:
        """'user' | 'role' | 'group', the key of the IAM inline size limits."""
        return self.kind.removeprefix("iam_")
