"""Admin pages for the catalog, principals and approval rules; every change lands in the audit trail.

Requests, grants and the audit trail are read-only here: their state changes only through the services.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.forms.models import model_to_dict
from django.http import HttpResponseNotAllowed
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions, selectors
from accessrequests.core.wording import counted
from accessrequests.governance import governed
from accessrequests.governance import rules_file as governance
from accessrequests.governance.rule_changes import (
    RuleChangeError,
    rule_change_approve,
    rule_change_propose,
    rule_change_reject,
    rule_change_routing,
    rule_change_set_approve,
)
from accessrequests.governed_admin import ProposesGovernedFacts  # registers User and Group too
from accessrequests.models import (
    KNOWN_ENVIRONMENTS,
    AccessLevel,
    AccessRequest,
    ApprovalRule,
    AuditEvent,
    AwsAccount,
    CatalogSyncRun,
    ChatApproval,
    EligibilityRule,
    Environment,
    Grant,
    IdentityCenter,
    Notification,
    OrganizationalUnit,
    PassableRole,
    PermissionSet,
    Pipeline,
    Principal,
    RequestKind,
    RuleChange,
    RuleChangeStatus,
    RuleTarget,
    ScimGroup,
    pipeline_only,
)
from accessrequests.views import step_up

# Fields that hold secrets: stored, but never copied into the audit trail or shown back in full.
SECRET_FIELDS = {"slack_webhook_url"}
# Accounts a pending change's page lists per kind of move (`manage.py rules plan` lists all of them).
ROUTING_LINES = 50


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


# An account added here counts as production (the most careful routing: no auto-approval, no chat approval)
# until a second admin approves the environment chosen for it.
NEW_ACCOUNT_ENVIRONMENT = Environment.PRODUCTION


@admin.register(AwsAccount)
class AwsAccountAdmin(ProposesGovernedFacts, AuditedAdmin):
    """The environment (``governed.ACCOUNT_FIELDS``) is proposed; the rest of an account is saved at once."""

    governed_target = RuleTarget.ACCOUNT
    governed_note = (
        "The environment waits for a second admin: a change to it is proposed, and takes effect when another "
        "admin approves it. Other fields change at once."
    )
    change_form_template = "admin/accessrequests/governed_change_form.html"
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
    readonly_fields = [
        "environment_set_by", "ou", "tags", "present", "removed_at", "last_synced_at", "sync_error",
        "org_fingerprint",
    ]  # fmt: skip
    actions = ["list_again"]

    def governed_context(self, object_id=None) -> dict[str, Any]:
        context = super().governed_context(object_id)
        account = self.model.objects.filter(pk=object_id).first() if str(object_id or "").isdigit() else None
        if account is not None and account.environment_tag is not None:
            context["governance_note"] = (
                "Organizations sets this account's environment (its environment tag); other fields change at once."
            )
        return context

    @admin.display(description="Environment set by")
    def environment_set_by(self, obj: AwsAccount) -> str:
        tag = obj.environment_tag if obj.pk else None
        if tag is None:
            return "An admin: the account has no environment tag in Organizations."
        return f"Organizations: its tag {tag[0]}={tag[1]}. Change the tag there; the catalog sync reads it."

    def get_readonly_fields(self, request, obj=None):
        # Organizations owns the environment of an account that has an environment tag: the sync sets it from the
        # tag, and an edit here would be overwritten at the next listing. An admin sets it only where no tag does.
        found = list(super().get_readonly_fields(request, obj))
        if obj is not None and permissions.account_environment_problem(request.user, obj):
            found.insert(0, "environment")
        return found

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change, **kwargs)
        field = form.base_fields.get("environment")
        if field is not None:
            field.help_text = (
                "The account has no environment tag in Organizations, so an admin sets it (another admin approves "
                "the change). Unknown: only rules that name the account (by id, unit or tag) route its requests. "
                "A tag `environment=…` in Organizations, once the catalog sync reads it, decides instead."
            )
        return form

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
        self.message_user(
            request, f"{counted(count, 'account')} will be listed again at the next catalog sync."
        )

    def governed_after(self, form, current) -> dict[str, Any]:
        return {f: form.cleaned_data[f] for f in governed.ACCOUNT_FIELDS if f in form.cleaned_data}

    def keep_governed(self, obj, current, change: bool) -> None:
        for field in governed.ACCOUNT_FIELDS:
            setattr(obj, field, getattr(current, field) if current is not None else NEW_ACCOUNT_ENVIRONMENT)


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


def _keep_m2m(form, obj, field: str, change: bool) -> None:
    """Put a governed many-to-many field of the form back as the object has it (nothing, when adding)."""
    if field in form.cleaned_data:
        form.cleaned_data[field] = list(getattr(obj, field).all()) if change else []


@admin.register(Principal)
class PrincipalAdmin(ProposesGovernedFacts, AuditedAdmin):
    """The users linked to a principal are proposed; the rest is saved at once."""

    list_display = ["name", "kind", "account", "present"]
    list_filter = ["kind", "present"]
    search_fields = ["name", "external_id", "users__username"]
    filter_horizontal = ["users"]
    list_select_related = ["account"]
    governed_target = RuleTarget.PRINCIPAL_LINKS
    governed_note = (
        "Linked users wait for a second admin (they decide whose access a request is, and who may not approve "
        "it): a change to them is proposed, and takes effect when another admin approves it."
    )
    change_form_template = "admin/accessrequests/governed_change_form.html"

    def governed_after(self, form, current) -> dict[str, Any]:
        return {"users": sorted(u.get_username() for u in form.cleaned_data.get("users") or [])}

    def keep_governed_m2m(self, form, obj, change: bool) -> None:
        _keep_m2m(form, obj, "users", change)


def tags_text(tags: dict[str, list[str]]) -> str:
    return "\n".join(f"{key} = {', '.join(values)}" for key, values in sorted((tags or {}).items()))


class AccountScopeFields(forms.ModelForm):
    """The accounts a rule covers, besides the accounts it names: units, Organizations tags and environments,
    for approval and eligibility rules alike."""

    account_tags = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        label="Account tags",
        help_text="One tag per line: key = value, value (e.g. team = payments, billing). An account must carry "
        "every key listed, with one of its values, as Organizations holds them. Empty: any tags.",
    )
    environments = forms.MultipleChoiceField(
        choices=[(value, label) for value, label in Environment.choices if value in KNOWN_ENVIRONMENTS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Account environments; none ticked means any. An account whose environment is unknown is never "
        "covered by its environment, only by its id, unit or a tag.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "account_tags" in self.fields:  # read-only under a rules file
            self.initial["account_tags"] = tags_text(self.instance.account_tags if self.instance.pk else {})

    def clean_account_tags(self) -> dict[str, list[str]]:
        tags: dict[str, list[str]] = {}
        for number, line in enumerate((self.cleaned_data.get("account_tags") or "").splitlines(), start=1):
            if not line.strip():
                continue
            key, equals, values = line.partition("=")
            key = key.strip()
            found = [v.strip() for v in values.split(",") if v.strip()]
            if not equals or not key or not found:
                raise forms.ValidationError(
                    f"Line {number} ({line.strip()!r}): write a tag as key = value, value (e.g. team = payments)."
                )
            if key in tags:
                raise forms.ValidationError(
                    f"Line {number}: the tag {key!r} is listed twice; put its values on one line."
                )
            if len(key) > 128 or any(len(v) > 256 for v in found):
                raise forms.ValidationError(
                    f"Line {number}: tag keys are at most 128 characters, values 256."
                )
            tags[key] = found
        return tags

    def scope_entry(self) -> dict[str, Any]:
        """The scope as a rules file entry names it."""
        d = self.cleaned_data
        catalog = governance.Catalog.load()
        return {
            "accounts": [a.account_id for a in d.get("accounts") or []],
            "units": [catalog.unit_ref(u) for u in d.get("units") or []],
            "account_tags": d.get("account_tags") or {},
            "environments": list(d.get("environments") or []),
        }


class ApprovalRuleForm(AccountScopeFields):
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
    break_glass_kinds = forms.MultipleChoiceField(
        choices=RequestKind.choices,
        required=False,
        initial=pipeline_only,
        widget=forms.CheckboxSelectMultiple,
        help_text="What break-glass may give under this rule; none ticked means pipeline access only (the "
        "default). The other kinds reach further (a role to pass, a permission set, a role outside principals "
        "assume): tick them only where an incident needs them. Break-glass never reaches anyone but the person "
        "who uses it.",
    )

    class Meta:
        model = ApprovalRule
        fields = [
            "name", "priority", "enabled", "accounts", "units", "account_tags", "environments", "pipelines", "kinds",
            "levels", "approver_groups",
            "approver_users", "approvals_required", "max_duration_hours", "allow_permanent",
            "auto_approve_low_risk", "allow_privileged_permission_sets", "contact", "slack_webhook_url",
            "slack_channel", "chat_approval", "break_glass_users", "break_glass_groups", "break_glass_max_hours",
            "break_glass_kinds",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        current = self.instance.slack_webhook_url if self.instance.pk else ""
        field = self.fields["slack_webhook_url"]
        field.help_text = f"Set: {redact_url(current)}. Leave empty to keep it." if current else "Not set."
        if "break_glass_max_hours" in self.fields:  # read-only under a rules file
            self.fields["break_glass_max_hours"].required = False

    def clean_break_glass_max_hours(self) -> int:
        return self.cleaned_data.get("break_glass_max_hours") or 1

    def clean_break_glass_kinds(self) -> list[str]:
        return list(self.cleaned_data.get("break_glass_kinds") or pipeline_only())

    def clean_chat_approval(self) -> str:
        return self.cleaned_data.get("chat_approval") or ChatApproval.OFF

    def clean_slack_webhook_url(self) -> str:
        value = self.cleaned_data.get("slack_webhook_url") or ""
        if self.data.get("remove_slack_webhook"):
            return ""
        return value or (self.instance.slack_webhook_url if self.instance.pk else "")


class GovernedAdmin(admin.ModelAdmin):
    """Rules change only with four eyes. A save or a delete here stores a pending ``RuleChange`` (the diff in
    words); it takes effect when another admin approves it with a fresh second factor. With
    GATEHOUSE_RULES_FILE set the rules are the file's, and these pages only show them."""

    target: str = ""
    change_list_template = "admin/accessrequests/governed_change_list.html"
    change_form_template = "admin/accessrequests/governed_change_form.html"

    def _from_file(self) -> bool:
        return bool(settings.GATEHOUSE_RULES_FILE)

    def has_add_permission(self, request):
        return not self._from_file() and super().has_add_permission(request)

    def has_change_permission(self, request, obj=None):
        return not self._from_file() and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return not self._from_file() and super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # a bulk delete would skip the second admin
        return actions

    def _note(self) -> dict[str, Any]:
        problem = permissions.rules_file_problem()
        pending = RuleChange.objects.filter(target=self.target, status=RuleChangeStatus.PENDING).count()
        return {
            "governance_note": problem
            or "A change saved here waits for a second admin: it takes effect when another admin approves it.",
            "pending_changes": pending,
            "pending_url": reverse("admin:accessrequests_rulechange_changelist") + "?status__exact=pending",
        }

    def changelist_view(self, request, extra_context=None):
        return super().changelist_view(request, {**(extra_context or {}), **self._note()})

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        return super().changeform_view(
            request, object_id, form_url, {**(extra_context or {}), **self._note()}
        )

    def entry_from_form(self, form) -> dict[str, Any]:
        raise NotImplementedError

    def webhook_from_form(self, form) -> str | None:
        return None

    def _propose(self, request, instance, after, webhook: str | None = None) -> None:
        try:
            request._gatehouse_proposal = rule_change_propose(
                user=request.user,
                target=self.target,
                instance=instance,
                after=after,
                slack_webhook_url=webhook,
                http_request=request,
            )
        except (RuleChangeError, permissions.NotAllowed) as exc:
            request._gatehouse_proposal_error = str(exc)

    def save_model(self, request, obj, form, change):
        current = type(obj).objects.get(pk=obj.pk) if change else None
        self._propose(request, current, self.entry_from_form(form), self.webhook_from_form(form))

    def save_related(self, request, form, formsets, change):
        """The related rows travel in the proposal; nothing is saved before the second admin approves."""

    def log_addition(self, request, obj, message):
        """The proposal is audited (``rulechange.proposed``); Django's log would record a change that did not
        happen."""

    def log_change(self, request, obj, message):
        pass

    def log_deletions(self, request, queryset):
        pass

    def delete_model(self, request, obj):
        self._propose(request, obj, None)

    def _after_proposal(self, request):
        error = getattr(request, "_gatehouse_proposal_error", None)
        if error:
            messages.error(request, error)
            return redirect(reverse(f"admin:accessrequests_{self.model._meta.model_name}_changelist"))
        proposal = request._gatehouse_proposal
        messages.success(
            request,
            f"Proposed: {proposal.summary}. It takes effect when another admin approves it.",
        )
        return redirect(reverse("admin:accessrequests_rulechange_change", args=[proposal.pk]))

    def response_add(self, request, obj, post_url_continue=None):
        return self._after_proposal(request)

    def response_change(self, request, obj):
        return self._after_proposal(request)

    def response_delete(self, request, obj_display, obj_id):
        return self._after_proposal(request)


@admin.register(ApprovalRule)
class ApprovalRuleAdmin(GovernedAdmin):
    form = ApprovalRuleForm
    target = RuleTarget.APPROVAL_RULE
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
    filter_horizontal = [
        "accounts", "units", "pipelines", "approver_groups", "approver_users", "break_glass_users",
        "break_glass_groups",
    ]  # fmt: skip

    def entry_from_form(self, form) -> dict[str, Any]:
        d = form.cleaned_data
        return governance.approval_spec_from_entry(
            {
                "name": d["name"],
                "priority": d["priority"],
                "enabled": d["enabled"],
                **form.scope_entry(),
                "pipelines": [p.arn for p in d.get("pipelines") or []],
                "kinds": list(d.get("kinds") or []),
                "levels": list(d.get("levels") or []),
                "approver_groups": [g.name for g in d.get("approver_groups") or []],
                "approver_users": [u.get_username() for u in d.get("approver_users") or []],
                "approvals": d["approvals_required"],
                "max_duration_hours": d["max_duration_hours"],
                "allow_permanent": d["allow_permanent"],
                "auto_approve_low_risk": d["auto_approve_low_risk"],
                "allow_privileged_permission_sets": d["allow_privileged_permission_sets"],
                "contact": d.get("contact") or "",
                "slack_channel": d.get("slack_channel") or "",
                "chat_approval": d.get("chat_approval") or ChatApproval.OFF,
                "break_glass_groups": [g.name for g in d.get("break_glass_groups") or []],
                "break_glass_users": [u.get_username() for u in d.get("break_glass_users") or []],
                "break_glass_max_hours": d.get("break_glass_max_hours") or 1,
                "break_glass_kinds": list(d.get("break_glass_kinds") or pipeline_only()),
            },
            governance.Catalog.load(),
        )

    def webhook_from_form(self, form) -> str | None:
        return form.cleaned_data.get("slack_webhook_url") or ""


class EligibilityRuleForm(AccountScopeFields):
    kinds = forms.MultipleChoiceField(
        choices=RequestKind.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Request kinds it covers; none ticked means all kinds.",
    )

    class Meta:
        model = EligibilityRule
        fields = [
            "name", "description", "kinds", "accounts", "units", "account_tags", "environments", "permission_sets",
            "groups", "users",
        ]  # fmt: skip

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        field = self.fields["permission_sets"]
        assert isinstance(field, forms.ModelMultipleChoiceField)
        field.queryset = PermissionSet.objects.filter(portal_owned=False)
        field.help_text = "Only these permission sets (none: the rule is not about particular sets)."


@admin.register(EligibilityRule)
class EligibilityRuleAdmin(GovernedAdmin):
    form = EligibilityRuleForm
    target = RuleTarget.ELIGIBILITY_RULE
    readonly_fields = ["what_it_does"]
    list_display = ["name", "what_it_does"]
    filter_horizontal = ["accounts", "units", "permission_sets", "groups", "users"]

    @admin.display(description="What this rule does")
    def what_it_does(self, obj: EligibilityRule) -> str:
        return obj.describe() if obj.pk else "Save the rule to see what it does."

    def entry_from_form(self, form) -> dict[str, Any]:
        d = form.cleaned_data
        catalog = governance.Catalog.load()
        return governance.eligibility_spec_from_entry(
            {
                "name": d["name"],
                "description": d.get("description") or "",
                "kinds": list(d.get("kinds") or []),
                **form.scope_entry(),
                "permission_sets": [catalog.permission_set_ref(p) for p in d.get("permission_sets") or []],
                "groups": [g.name for g in d.get("groups") or []],
                "users": [u.get_username() for u in d.get("users") or []],
            },
            catalog,
        )


def _plan_row(line: str) -> tuple[str, str]:
    """A line of the routing plan as a list row: an account indented under its heading, a move to fewer
    approvals in red (what the second admin must not miss)."""
    if line.startswith("  "):
        return "margin:0 0 .25em 1.5em", line.strip()
    if line.startswith("⚠"):
        return "color:var(--error-fg);font-weight:bold;margin-top:.5em", line
    return "margin-top:.5em", line


@admin.register(RuleChange)
class RuleChangeAdmin(admin.ModelAdmin):
    """Governed changes waiting for a second admin (rules, account environments, principal links, governed
    groups), with the change in words; another admin approves (second factor) or rejects, one change or the
    whole set a rules file proposed."""

    change_form_template = "admin/accessrequests/rulechange_change_form.html"
    list_display = ["__str__", "summary", "status", "proposer", "proposed_at", "decided_by"]
    list_filter = ["status", "target"]
    list_select_related = ["proposed_by", "decided_by"]
    fields = (
        "summary", "routing", "status", "target", "operation", "rule_name", "proposer", "origin", "proposed_at",
        "decided_by", "decided_at", "comment", "rule_before", "rule_after",
    )  # fmt: skip
    readonly_fields = fields

    @admin.display(description="What it does to routing")
    def routing(self, obj: RuleChange) -> str:
        """The same plan as `manage.py rules plan`: every account whose requests another rule would route."""
        if obj.status != RuleChangeStatus.PENDING:
            return "—"
        found = rule_change_routing(obj)
        if found is None:
            return "No request moves to another rule: this change is not about which rule routes a request."
        return format_html(
            '<ul class="routing-plan" style="list-style:none;padding:0;margin:0;overflow-wrap:anywhere">{}</ul>',
            format_html_join(
                "", '<li style="{}">{}</li>', (_plan_row(line) for line in found.lines(ROUTING_LINES))
            ),
        )

    @staticmethod
    def _shown(obj: RuleChange, spec) -> str:
        if spec is None:
            return "—"
        text = governance.dump_rule(spec) if obj.is_rule else governed.as_lines(spec)
        return format_html("<pre>{}</pre>", text)

    @admin.display(description="Before")
    def rule_before(self, obj: RuleChange) -> str:
        return self._shown(obj, obj.before)

    @admin.display(description="After")
    def rule_after(self, obj: RuleChange) -> str:
        return self._shown(obj, obj.after)

    @admin.display(description="Proposed by")
    def proposer(self, obj: RuleChange) -> str:
        return obj.proposer

    def lookup_allowed(self, lookup, value, request=None):
        # The link `rules apply` prints lists the changes of its set.
        return lookup == "change_set" or super().lookup_allowed(lookup, value, request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_urls(self):
        view = self.admin_site.admin_view
        return [
            path("<int:pk>/approve/", view(self.approve_view), name="accessrequests_rulechange_approve"),
            path(
                "<int:pk>/approve-set/",
                view(self.approve_set_view),
                name="accessrequests_rulechange_approve_set",
            ),
            path("<int:pk>/reject/", view(self.reject_view), name="accessrequests_rulechange_reject"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        change = self.get_object(request, object_id)
        extra = dict(extra_context or {})
        if change is not None:
            problem = permissions.rule_change_decide_problem(request.user, change)
            in_set = (
                list(RuleChange.objects.filter(change_set=change.change_set).order_by("pk"))
                if change.change_set
                else []
            )
            extra.update(
                can_decide=problem is None,
                decide_problem=problem if change.status == RuleChangeStatus.PENDING else None,
                approve_url=reverse("admin:accessrequests_rulechange_approve", args=[change.pk]),
                approve_set_url=reverse("admin:accessrequests_rulechange_approve_set", args=[change.pk]),
                reject_url=reverse("admin:accessrequests_rulechange_reject", args=[change.pk]),
                change_set=in_set,
                set_pending=sum(c.status == RuleChangeStatus.PENDING for c in in_set),
                typed_comment=step_up.held(request, request.path).get("comment", ""),
            )
        return super().change_view(request, object_id, form_url, extra)

    def _back(self, pk: int):
        return redirect(reverse("admin:accessrequests_rulechange_change", args=[pk]))

    def _decide(self, request, pk: int, *, whole_set: bool = False):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        change = get_object_or_404(RuleChange, pk=pk)
        data = {"pk": change.pk, "comment": request.POST.get("comment", ""), "whole_set": whole_set}
        if permissions.second_factor_problem(request.user, permissions.second_factor_from_session(request)):
            what = "the changes of its set" if whole_set else f"the rule change “{change.summary}”"
            return step_up.ask(
                request, decision="rule_change", data=data,
                back=reverse("admin:accessrequests_rulechange_change", args=[pk]),
                what=f"approve {what}", button="Approve",
            )  # fmt: skip
        return approve_rule_change(request, data)

    def approve_view(self, request, pk: int):
        return self._decide(request, pk)

    def approve_set_view(self, request, pk: int):
        return self._decide(request, pk, whole_set=True)

    def reject_view(self, request, pk: int):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        change = get_object_or_404(RuleChange, pk=pk)
        try:
            rule_change_reject(
                change_id=change.pk,
                user=request.user,
                comment=request.POST.get("comment", ""),
                http_request=request,
            )
        except (RuleChangeError, permissions.NotAllowed) as exc:
            messages.error(request, str(exc))
        else:
            messages.success(request, f"Rejected: {change.summary}.")
        return self._back(pk)


@step_up.resumable("rule_change")
def approve_rule_change(request, data: dict[str, Any]):
    """A second admin approves a rule change, or every change of its set, with the session's second factor (the
    admin page, or after the step-up)."""
    pk = int(data["pk"])
    factor = permissions.second_factor_from_session(request)
    try:
        if data.get("whole_set"):
            change = get_object_or_404(RuleChange, pk=pk)
            done = rule_change_set_approve(
                change_set=change.change_set,
                user=request.user,
                second_factor=factor,
                comment=data["comment"],
                http_request=request,
            )
        else:
            done = [
                rule_change_approve(
                    change_id=pk,
                    user=request.user,
                    second_factor=factor,
                    comment=data["comment"],
                    http_request=request,
                )
            ]
    except (RuleChangeError, permissions.NotAllowed) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, "Approved and applied: " + "; ".join(c.summary for c in done) + ".")
    return redirect(reverse("admin:accessrequests_rulechange_change", args=[pk]))


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
    readonly_fields = ["end_in_aws"]

    @admin.display(description="End in AWS")
    def end_in_aws(self, obj: Grant) -> str:
        """The same words as the request page: ended, confirmed in AWS, older sessions."""
        if obj.revoked_at is None:
            return "-"
        return render_to_string(
            "accessrequests/_access_end.html", {"grant": obj, "end": selectors.access_end_of(obj)}
        )


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["id", "created_at", "actor_label", "action", "object_type", "object_id"]
    list_filter = ["action"]


@admin.register(ScimGroup)
class ScimGroupAdmin(ProposesGovernedFacts, AuditedAdmin):
    """Groups come from the identity provider (SCIM); an admin only says which principals their members get, and
    that waits for a second admin (members are linked to those principals at their next membership change)."""

    list_display = ["display_name", "external_id", "updated_at"]
    search_fields = ["display_name", "external_id"]
    fields = ["display_name", "external_id", "members", "principals"]
    readonly_fields = ["display_name", "external_id", "members"]
    filter_horizontal = ["principals"]
    governed_target = RuleTarget.SCIM_PRINCIPALS
    governed_note = (
        "The principals this group links its members to wait for a second admin: a change is proposed, and takes "
        "effect when another admin approves it. Members come from the identity provider."
    )
    change_form_template = "admin/accessrequests/governed_change_form.html"

    def governed_after(self, form, current) -> dict[str, Any]:
        principals = form.cleaned_data.get("principals") or []
        return {"principals": sorted(governed.principal_ref(p) for p in principals)}

    def keep_governed_m2m(self, form, obj, change: bool) -> None:
        _keep_m2m(form, obj, "principals", change)

    def has_add_permission(self, request):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    list_display = ["event_key", "channel", "recipient", "status", "attempts", "sent_at"]
    list_filter = ["channel", "status"]
    search_fields = ["event_key", "recipient"]
