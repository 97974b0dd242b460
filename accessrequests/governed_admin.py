"""Admin pages that edit governed facts (``accessrequests.governance.governed``): they save everything else at once and only
propose the governed part, which takes effect when another admin approves it (``RuleChangeAdmin``).

Users and groups are registered here (Django's own pages would write roles and links directly). A user's page
proposes their superuser flag, their governed groups and their linked principals; a group's page proposes the
members of a governed group and edits any other group's members directly; a governed group keeps its name and
cannot be deleted here, since rules and roles name it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import FilteredSelectMultiple, ManyToManyRawIdWidget
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.contrib.auth.models import Group
from django.urls import reverse
from django.utils.html import format_html

from accessrequests.audit import trail as audit
from accessrequests.authz import permissions
from accessrequests.governance import governed
from accessrequests.governance.governed_changes import RuleChangeError, governed_change_propose
from accessrequests.models import GRANTABLE_KINDS, Principal, RuleChangeStatus, RuleTarget

User = get_user_model()


class ProposesGovernedFacts:
    """For a ModelAdmin whose form shows governed facts: ``governed_after`` reads what the form asks for, then
    ``keep_governed`` and ``keep_governed_m2m`` put the current values back so that the save writes only the
    rest, and the difference becomes a pending change. No form, inline or action of these pages writes a
    governed fact."""

    governed_target: str = ""
    governed_note = "Changes to governed fields wait for a second admin."

    def governed_after(self, form, obj) -> dict[str, Any]:
        raise NotImplementedError

    def keep_governed(self, obj, current, change: bool) -> None:
        """Put the governed plain fields of ``obj`` back as ``current`` has them (None when adding)."""

    def keep_governed_m2m(self, form, obj, change: bool) -> None:
        """Put the governed many-to-many values of ``form.cleaned_data`` back as ``obj`` has them."""

    def save_model(self, request, obj, form, change):
        current = type(obj)._default_manager.get(pk=obj.pk) if change else None
        request._gatehouse_governed_after = self.governed_after(form, current)
        self.keep_governed(obj, current, change)
        super().save_model(request, obj, form, change)  # type: ignore[misc]

    def save_related(self, request, form, formsets, change):
        self.keep_governed_m2m(form, form.instance, change)
        super().save_related(request, form, formsets, change)  # type: ignore[misc]
        self.propose_governed(request, form.instance, request._gatehouse_governed_after)

    def propose_governed(self, request, obj, after: dict[str, Any]) -> None:
        facts = governed.SUBJECTS[self.governed_target].facts(obj)
        if {key: after.get(key, value) for key, value in facts.items()} == facts:
            return
        try:
            proposal = governed_change_propose(
                user=request.user,
                target=self.governed_target,
                instance=obj,
                after=after,
                http_request=request,
            )
        except (RuleChangeError, permissions.NotAllowed) as exc:
            messages.error(request, f"Not changed: {exc}")
            return
        url = reverse("admin:accessrequests_rulechange_change", args=[proposal.pk])
        messages.warning(
            request,
            format_html(
                'Proposed: {}. It takes effect when another admin approves it (<a href="{}">the change</a>).',
                proposal.summary,
                url,
            ),
        )

    def governed_context(self, object_id=None) -> dict[str, Any]:
        from accessrequests.models import RuleChange

        pending = RuleChange.objects.filter(target=self.governed_target, status=RuleChangeStatus.PENDING)
        if object_id is not None and str(object_id).isdigit():
            pending = pending.filter(target_id=int(object_id))
        query = f"?status__exact=pending&target__exact={self.governed_target}"
        return {
            "governance_note": self.governed_note,
            "pending_changes": pending.count(),
            "pending_url": reverse("admin:accessrequests_rulechange_changelist") + query,
        }

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        context = {**(extra_context or {}), **self.governed_context(object_id)}
        return super().changeform_view(request, object_id, form_url, context)  # type: ignore[misc]


def principal_picker() -> ManyToManyRawIdWidget:
    """Principals by id with the admin's lookup pop-up: a list of every principal would be far too long. The
    widget wants a relation to Principal; ``Principal.members`` is one."""
    return ManyToManyRawIdWidget(Principal._meta.get_field("members").remote_field, admin.site)


class GovernedUserChangeForm(UserChangeForm):
    principals = forms.ModelMultipleChoiceField(
        # An outside party of a cross-account role is nobody here: it is never linked to a person.
        queryset=Principal.objects.filter(kind__in=GRANTABLE_KINDS),
        required=False,
        label="Linked principals",
        help_text="Ids of the principals (AWS identities) that are this person; use the magnifier to find them.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["principals"].widget = principal_picker()
        if self.instance.pk:
            self.initial["principals"] = list(self.instance.principals.values_list("pk", flat=True))


admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class GovernedUserAdmin(ProposesGovernedFacts, UserAdmin):
    """Roles, governed groups, superuser and linked principals are proposed; the rest is saved at once."""

    form = GovernedUserChangeForm
    governed_target = RuleTarget.USER_ACCESS
    governed_note = (
        "Superuser, membership of role groups and of groups a rule names, and linked principals wait for a second "
        "admin: a change to them is proposed, and takes effect when another admin approves it."
    )
    change_form_template = "admin/accessrequests/governed_change_form.html"
    fieldsets = (
        *(UserAdmin.fieldsets or ()),
        ("Linked principals", {"fields": ("principals",)}),
    )

    def governed_after(self, form, current) -> dict[str, Any]:
        data = form.cleaned_data
        if current is None:  # the add form asks for a name and a password only
            return {}
        ids = governed.governed_group_ids()
        return {
            "superuser": bool(data.get("is_superuser", current.is_superuser)),
            "groups": sorted(g.name for g in data.get("groups") or [] if g.pk in ids),
            "principals": sorted(governed.principal_ref(p) for p in data.get("principals") or []),
        }

    def keep_governed(self, obj, current, change: bool) -> None:
        if current is not None:
            obj.is_superuser = current.is_superuser

    def keep_governed_m2m(self, form, obj, change: bool) -> None:
        if "groups" not in form.cleaned_data:
            return
        ids = governed.governed_group_ids()
        chosen = [g for g in form.cleaned_data["groups"] if g.pk not in ids]
        held = list(obj.groups.filter(pk__in=ids)) if change else []
        form.cleaned_data["groups"] = chosen + held


class GovernedGroupForm(forms.ModelForm):
    members = forms.ModelMultipleChoiceField(
        queryset=User.objects.order_by("username"),
        required=False,
        widget=FilteredSelectMultiple("members", is_stacked=False),
    )

    class Meta:
        model = Group
        fields = ["name", "permissions", "members"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["members"] = list(self.instance.user_set.values_list("pk", flat=True))


@admin.register(Group)
class GovernedGroupAdmin(ProposesGovernedFacts, GroupAdmin):
    """A governed group's members are proposed; any other group's are saved at once (and audited)."""

    form = GovernedGroupForm
    governed_target = RuleTarget.GROUP_MEMBERS
    governed_note = (
        "Members of role groups and of groups a rule names wait for a second admin: a change to them is "
        "proposed, and takes effect when another admin approves it. Other groups change at once."
    )
    change_form_template = "admin/accessrequests/governed_change_form.html"
    list_display = ["name", "governed"]

    @admin.display(boolean=True, description="Governed (rules or roles name it)")
    def governed(self, obj: Group) -> bool:
        return obj.pk in self._governed_ids

    def get_queryset(self, request):
        self._governed_ids = governed.governed_group_ids()
        return super().get_queryset(request)

    def get_readonly_fields(self, request, obj=None):
        # Rules and roles name a governed group: renaming it would change them without a second admin.
        return ["name"] if obj is not None and governed.is_governed_group(obj) else []

    def has_delete_permission(self, request, obj=None):
        if obj is not None and governed.is_governed_group(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # would delete governed groups with the others
        return actions

    def governed_after(self, form, current) -> dict[str, Any]:
        return {"users": sorted(u.get_username() for u in form.cleaned_data.get("members") or [])}

    def save_related(self, request, form, formsets, change):
        group = form.instance
        if not governed.is_governed_group(group):
            super(ProposesGovernedFacts, self).save_related(request, form, formsets, change)
            before = governed.group_facts(group)
            group.user_set.set(form.cleaned_data.get("members") or [])
            after = governed.group_facts(group)
            if after != before:
                audit.record(
                    action="group.members_changed",
                    object_type="group",
                    object_id=group.pk,
                    actor=request.user,
                    before=before,
                    after={**after, "group": group.name},
                    http_request=request,
                )
            return
        super().save_related(request, form, formsets, change)
