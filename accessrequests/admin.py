"""Admin pages for the catalog, principals and approval rules; every change lands in the audit trail.

Requests, grants and the audit trail are read-only here: their state changes only through the services.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.forms.models import model_to_dict

from accessrequests import audit
from accessrequests.models import (
    AccessLevel,
    AccessRequest,
    ApprovalRule,
    AuditEvent,
    AwsAccount,
    CatalogSyncRun,
    ChatApproval,
    Grant,
    IdentityCenter,
    Notification,
    OrganizationalUnit,
    PassableRole,
    PermissionSet,
    Pipeline,
    Principal,
    RequestKind,
    ScimGroup,
)

# Fields that hold secrets: stored, but never copied into the audit trail or shown back in full.
SECRET_FIELDS = {"slack_webhook_url"}


def redact_url(value: str) -> str:
    """A webhook URL is a credential: keep its scheme and host, so people can tell which one is set."""
    if not value:
        return ""
    scheme, _, rest = value.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}/…(redacted)"


def _snapshot(obj) -> dict:
    data = model_to_dict(obj)
    return {
        k: redact_url(str(v)) if k in SECRET_FIELDS else
        (sorted(str(getattr(i, "pk", i)) for i in v) if isinstance(v, list) else v)
        for k, v in data.items()
    }  # fmt: skip


class AuditedAdmin(admin.ModelAdmin):
    """Records who changed which catalog object or rule, with before and after.

    The "before" snapshot travels on the object being saved, never on this admin instance: one instance
    serves every request of the process, so two concurrent saves would swap each other's snapshots.
    """

    def save_model(self, request, obj, form, change):
        before = _snapshot(type(obj).objects.get(pk=obj.pk)) if change else None
        super().save_model(request, obj, form, change)
        obj._gatehouse_audit_before = before

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        obj = form.instance
        audit.record(
            action=f"{obj._meta.model_name}.{'changed' if change else 'created'}",
            object_type=obj._meta.model_name,
            object_id=obj.pk,
            actor=request.user,
            before=getattr(obj, "_gatehouse_audit_before", None),
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


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AwsAccount)
class AwsAccountAdmin(AuditedAdmin):
    list_display = [
        "name",
        "account_id",
        "ou",
        "environment",
        "enabled",
        "present",
        "repair_drift",
        "last_synced_at",
    ]
    list_filter = ["environment", "enabled", "present"]
    list_select_related = ["ou"]
    search_fields = ["name", "account_id", "ou__path"]
    readonly_fields = ["ou", "present", "removed_at", "last_synced_at", "sync_error", "org_fingerprint"]
    actions = ["list_again"]

    @admin.action(description="List these accounts again at the next catalog sync")
    def list_again(self, request, queryset):
        # The next sync (beat's incremental one included) takes accounts never listed first.
        count = queryset.update(last_synced_at=None)
        audit.record(
            action="catalog.relist_requested",
            object_type="aws_account",
            actor=request.user,
            after={"accounts": count},
            http_request=request,
        )
        self.message_user(request, f"{count} account(s) will be listed again at the next catalog sync.")


@admin.register(OrganizationalUnit)
class OrganizationalUnitAdmin(ReadOnlyAdmin):
    list_display = ["path", "ou_id", "present", "last_seen_at"]
    list_filter = ["present"]
    search_fields = ["path", "ou_id"]


@admin.register(CatalogSyncRun)
class CatalogSyncRunAdmin(ReadOnlyAdmin):
    """Progress of the running catalog sync (and the history): how many planned accounts are listed."""

    list_display = [
        "started_at",
        "mode",
        "status",
        "phase",
        "progress",
        "resumed",
        "heartbeat_at",
        "finished_at",
    ]
    list_filter = ["status", "mode"]
    exclude = ["pending"]


@admin.register(Pipeline)
class PipelineAdmin(AuditedAdmin):
    list_display = ["name", "region", "account", "present", "last_seen_at"]
    list_select_related = ["account"]
    autocomplete_fields = ["account"]  # a select of every account is thousands of options
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
    list_display = ["name", "risk", "portal_owned", "present"]
    list_filter = ["risk", "portal_owned", "present"]
    search_fields = ["name", "arn"]
    # Computed from the set's policies at every catalog sync; an edit here would only be overwritten.
    readonly_fields = [
        "risk",
        "risk_reasons",
        "managed_policies",
        "customer_managed_policies",
        "inline_policy",
    ]


@admin.register(Principal)
class PrincipalAdmin(AuditedAdmin):
    list_display = ["name", "kind", "account", "present"]
    list_filter = ["kind", "present"]
    search_fields = ["name", "external_id", "users__username"]
    filter_horizontal = ["users"]
    list_select_related = ["account"]


class ApprovalRuleForm(forms.ModelForm):
    """Kinds and levels as checkboxes of the valid values; the Slack webhook (a secret) is never shown back:
    leave it empty to keep the one that is set, or tick "remove" to clear it."""

    kinds = forms.MultipleChoiceField(
        choices=RequestKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Request kinds this rule covers; none ticked means all kinds.",
    )
    levels = forms.MultipleChoiceField(
        choices=AccessLevel.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Access levels this rule covers; none ticked means all levels.",
    )
    slack_webhook_url = forms.URLField(
        required=False,
        assume_scheme="https",
        widget=forms.PasswordInput(render_value=False),
        label="Slack webhook URL",
    )
    remove_slack_webhook = forms.BooleanField(required=False, label="Remove the Slack webhook")
    chat_approval = forms.ChoiceField(
        choices=ChatApproval.choices,
        required=False,
        initial=ChatApproval.OFF,
        help_text="Off unless chosen: a click in Slack then opens the portal, which asks for the second factor.",
    )

    class Meta:
        model = ApprovalRule
        fields = [
            "name", "priority", "enabled", "accounts", "pipelines", "kinds", "levels", "approver_groups",
            "approver_users", "approvals_required", "max_duration_hours", "allow_permanent",
            "auto_approve_low_risk", "allow_privileged_permission_sets", "contact", "slack_webhook_url",
            "slack_channel", "chat_approval",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.instance.slack_webhook_url if self.instance.pk else ""
        field = self.fields["slack_webhook_url"]
        field.help_text = f"Set: {redact_url(current)}. Leave empty to keep it." if current else "Not set."

    def clean_chat_approval(self) -> str:
        return self.cleaned_data.get("chat_approval") or ChatApproval.OFF

    def clean_slack_webhook_url(self) -> str:
        value = self.cleaned_data.get("slack_webhook_url") or ""
        if self.data.get("remove_slack_webhook"):
            return ""
        return value or (self.instance.slack_webhook_url if self.instance.pk else "")


@admin.register(ApprovalRule)
class ApprovalRuleAdmin(AuditedAdmin):
    form = ApprovalRuleForm
    readonly_fields = ["what_it_does"]

    @admin.display(description="What this rule does")
    def what_it_does(self, obj: ApprovalRule) -> str:
        return obj.describe() if obj.pk else "Save the rule to see what it does."

    list_display = [
        "name",
        "what_it_does",
        "priority",
        "enabled",
        "approvals_required",
        "max_duration_hours",
        "auto_approve_low_risk",
        "allow_privileged_permission_sets",
    ]
    list_filter = ["enabled"]
    filter_horizontal = ["accounts", "pipelines", "approver_groups", "approver_users"]


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


@admin.register(ScimGroup)
class ScimGroupAdmin(AuditedAdmin):
    """Groups come from the identity provider (SCIM); an admin only says which principals their members get."""

    list_display = ["display_name", "external_id", "updated_at"]
    search_fields = ["display_name", "external_id"]
    fields = ["display_name", "external_id", "members", "principals"]
    readonly_fields = ["display_name", "external_id", "members"]
    filter_horizontal = ["principals"]

    def has_add_permission(self, request):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["event_key", "channel", "recipient", "status", "attempts", "sent_at"]
    list_filter = ["channel", "status"]
    search_fields = ["event_key", "recipient"]
