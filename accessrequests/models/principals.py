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
    # Who a cross-account role trusts, outside the pipeline's account: the party such a request is for.
    OUTSIDE_ACCOUNT = "outside_account", "Outside account"
    OUTSIDE_PRINCIPAL = "outside_arn", "Outside principal"


IAM_KINDS = (PrincipalKind.IAM_USER, PrincipalKind.IAM_ROLE, PrincipalKind.IAM_GROUP)
IC_KINDS = (PrincipalKind.IC_USER, PrincipalKind.IC_GROUP)
OUTSIDE_KINDS = (PrincipalKind.OUTSIDE_ACCOUNT, PrincipalKind.OUTSIDE_PRINCIPAL)
# What people pick as "who receives access" (the outside party of a cross-account request is named, not picked).
GRANTABLE_KINDS = IAM_KINDS + IC_KINDS


class Principal(models.Model):
    """An IAM user/role/group in one account, an Identity Center user/group, or the outside party a cross-account
    role trusts (an account, or a principal's ARN, outside Gatehouse's catalog: the recipient of such a request,
    never offered as a choice and never linked to anyone).

    ``external_id`` is the IAM ARN, the identity store's principal id, or what the trust policy names
    (``arn:aws:iam::<account>:root`` for an outside account). A request for a principal that is not linked to the
    requester is shown to reviewers as "on behalf of".
    """

    kind = models.CharField(max_length=16, choices=PrincipalKind.choices)
    name = models.CharField(max_length=128)
    external_id = models.CharField(max_length=2048)
    account = models.ForeignKey(
        AwsAccount, null=True, blank=True, on_delete=models.PROTECT, related_name="principals"
    )
    identity_center = models.ForeignKey(
        IdentityCenter, null=True, blank=True, on_delete=models.PROTECT, related_name="principals"
    )
    display_name = models.CharField(
        max_length=256, blank=True, help_text="Identity Center's display name (people), when it has one."
    )
    email = models.EmailField(blank=True, help_text="Identity Center users: their primary e-mail address.")
    users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="principals")
    # Who is in a group (IAM or Identity Center), as the catalog sync last read it: a grant to a group reaches
    # every member, so the approval rules treat members as recipients (see accessrequests.authz.recipients).
    members = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="member_of")
    members_synced_at = models.DateTimeField(null=True, blank=True)
    present = models.BooleanField(default=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "external_id"], name="%(app_label)s_%(class)s_unique_identity"
            ),
            # IAM principals live in an account; Identity Center principals in an identity store; an outside party
            # in neither of Gatehouse's.
            models.CheckConstraint(
                condition=(Q(kind__in=IAM_KINDS) & Q(account__isnull=False))
                | (Q(kind__in=IC_KINDS) & Q(identity_center__isnull=False))
                | (Q(kind__in=OUTSIDE_KINDS) & Q(account__isnull=True) & Q(identity_center__isnull=True)),
                name="%(app_label)s_%(class)s_has_home",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.name}"

    @property
    def label(self) -> str:
        """How people recognise it: Identity Center's display name where there is one, else its name."""
        return self.display_name or self.name

    @property
    def is_group(self) -> bool:
        return self.kind in (PrincipalKind.IAM_GROUP, PrincipalKind.IC_GROUP)

    @property
    def is_iam(self) -> bool:
        return self.kind in IAM_KINDS

    @property
    def is_outside(self) -> bool:
        return self.kind in OUTSIDE_KINDS

    @staticmethod
    def outside_party_identity(
        *, trusted_account_id: str = "", trusted_principal_arn: str = ""
    ) -> tuple[str, str, str]:
        """The (kind, external id, name) the catalog keeps the outside party a cross-account role trusts under."""
        if trusted_principal_arn:
            return PrincipalKind.OUTSIDE_PRINCIPAL, trusted_principal_arn, trusted_principal_arn
        return PrincipalKind.OUTSIDE_ACCOUNT, f"arn:aws:iam::{trusted_account_id}:root", trusted_account_id

    @classmethod
    def outside_party(cls, *, trusted_account_id: str = "", trusted_principal_arn: str = "") -> Principal:
        """The outside party a cross-account role trusts, as the catalog holds it (unsaved the first time: the
        request that names it saves it, see ``workflow.requests.create_from_draft``)."""
        kind, external_id, name = cls.outside_party_identity(
            trusted_account_id=trusted_account_id, trusted_principal_arn=trusted_principal_arn
        )
        found = cls.objects.filter(kind=kind, external_id=external_id).first()
        return found or cls(kind=kind, external_id=external_id, name=name[:128])

    @property
    def iam_type(self) -> str:
        """'user' | 'role' | 'group', the key of the IAM inline size limits."""
        return self.kind.removeprefix("iam_")
