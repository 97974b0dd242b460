"""Admin pages for the catalog, principals and approval rules; every change lands in the audit trail.

Requests, grants and the audit trail are read-only here: their state changes only through the services.
"""

from __future__ import annotations

from django.contrib import admin
from django.forms.models import model_to_dict

from accessrequests import audit
from accessrequests.models import (
    AccessRequest,
    ApprovalRule,
    AuditEvent,
    AwsAccount,
    Grant,
    IdentityCenter,
    Notification,
    PassableRole,
    PermissionSet,
    Pipeline,
    Principal,
)


def _snapshot(obj) -> dict:
    data = model_to_dict(obj)
    return {
        k: (sorted(str(getattr(i, "pk", i)) for i in v) if isinstance(v, list) else v)
        for k, v in data.items()
    }


class AuditedAdmin(admin.ModelAdmin):
    """Records who changed which catalog object or rule, with before and after."""

    def save_model(self, request, obj, form, change):
        before = _snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        self._before = before

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        obj = form.instance
        audit.record(
            action=f"{obj._meta.model_name}.{'changed' if change else 'created'}",
            object_type=obj._meta.model_name,
            object_id=obj.pk,
            actor=request.user,
            before=getattr(self, "_before", None),
            after=_snapshot(obj),
            http_request=request,
        )

    def delete_model(self, request, obj):
        before = _snapshot(obj)
        pk = obj.pk
        super().delete_model(request, obj)
        audit.record(
            action=f"{obj._meta.model_name}.deleted",
            object_type=obj._meta.model_name,
            object_id=pk,
            actor=request.user,
            before=before,
            http_request=request,
        )


@admin.register(AwsAccount)
class AwsAccountAdmin(AuditedAdmin):
    list_display = ["name", "account_id", "environment", "enabled", "repair_drift", "last_synced_at"]
    list_filter = ["environment", "enabled"]
    search_fields = ["name", "account_id"]


@admin.register(Pipeline)
class PipelineAdmin(AuditedAdmin):
    list_display = ["name", "region", "account", "present", "last_seen_at"]
    list_filter = ["region", "present", "account"]
    search_fields = ["name", "arn"]
    list_select_related = ["account"]


@admin.register(PassableRole)
class PassableRoleAdmin(AuditedAdmin):
    list_display = ["name", "account", "trusts_codepipeline", "sensitive", "present"]
    list_filter = ["trusts_codepipeline", "sensitive", "present"]
    search_fields = ["name", "arn"]
    list_select_related = ["account"]


@admin.register(IdentityCenter)
class IdentityCenterAdmin(AuditedAdmin):
    list_display = ["instance_arn", "identity_store_id", "region"]


@admin.register(PermissionSet)
class PermissionSetAdmin(AuditedAdmin):
    list_display = ["name", "portal_owned", "present"]
    search_fields = ["name", "arn"]


@admin.register(Principal)
class PrincipalAdmin(AuditedAdmin):
    list_display = ["name", "kind", "account", "present"]
    list_filter = ["kind", "present"]
    search_fields = ["name", "external_id", "users__username"]
    filter_horizontal = ["users"]
    list_select_related = ["account"]


@admin.register(ApprovalRule)
class ApprovalRuleAdmin(AuditedAdmin):
    list_display = [
        "name",
        "priority",
        "enabled",
        "approvals_required",
        "max_duration_hours",
        "auto_approve_low_risk",
    ]
    list_filter = ["enabled"]
    filter_horizontal = ["accounts", "pipelines", "approver_groups", "approver_users"]


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AccessRequest)
class AccessRequestAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "requester", "principal", "kind", "level", "status", "created_at"]
    list_filter = ["status", "kind", "account"]
    list_select_related = ["requester", "principal"]


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "principal", "account", "status", "attempts", "expires_at"]
    list_filter = ["status", "delivery"]
    list_select_related = ["request", "principal", "account"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "actor_label", "action", "object_type", "object_id"]
    list_filter = ["action"]


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["event_key", "channel", "recipient", "status", "attempts", "sent_at"]
    list_filter = ["channel", "status"]
    search_fields = ["event_key", "recipient"]
