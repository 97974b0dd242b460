"""The identity provider's view of people and groups (SCIM 2.0 resources), beside the portal's own users."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from accessrequests.models.principals import Principal


class ScimUser(models.Model):
    """One portal user as the identity provider provisions it (a SCIM ``User``).

    The portal user is never deleted (requests and decisions point at it); a SCIM DELETE deactivates it and marks
    this row deleted, so the resource is gone for the provider and its ``userName`` may be provisioned again.
    """

    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="scim")
    user_name = models.CharField(max_length=254)
    external_id = models.CharField(max_length=255, blank=True)
    display_name = models.CharField(max_length=256, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user_name"],
                condition=Q(deleted_at__isnull=True),
                name="%(app_label)s_%(class)s_live_user_name",
            )
        ]

    def __str__(self) -> str:
        return self.user_name


class ScimGroup(models.Model):
    """A group at the identity provider (a SCIM ``Group``). Its display name maps to portal roles through
    GATEHOUSE_OIDC_GROUP_ROLES, and its members are linked to ``principals`` (set by an admin) while they are
    in it."""

    scim_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    display_name = models.CharField(max_length=256, unique=True)
    external_id = models.CharField(max_length=255, blank=True)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="scim_groups")
    principals = models.ManyToManyField(
        Principal,
        blank=True,
        related_name="scim_groups",
        help_text="Members of this group are linked to these principals (and unlinked when they leave it).",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["display_name"]

    def __str__(self) -> str:
        return self.display_name
