"""Forms: they parse and validate input; the services decide."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.db.models import Q
from django.http import Http404

from accessrequests import arns, permissions, roles, selectors
from accessrequests.ids import ID_DIGITS, IdChoiceField, IdMultipleChoiceField, parse_id
from accessrequests.intake import MAX_MESSAGE_CHARS
from accessrequests.models import (
    AccessLevel,
    AwsAccount,
    Grant,
    OrganizationalUnit,
    PassableRole,
    PermissionSet,
    Pipeline,
    Principal,
    RequestKind,
    Source,
)
from accessrequests.services.requests import RequestDraft, check_extendable, extension_fields

MAX_DURATION_HOURS = 24 * 365
PIPELINE_CHECKBOXES = 40  # beyond this many pipelines in an account the form offers a search instead


class PrincipalChoiceField(IdChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        where = f" in {obj.account.account_id}" if obj.account_id else ""
        name = f"{obj.label} ({obj.name})" if obj.display_name and obj.display_name != obj.name else obj.name
        return f"{obj.get_kind_display()} {name}{where}"


_GONE = "That choice is no longer offered for the chosen account; choose again."


class AccountField(forms.CharField):
    """An account typed or picked by its 12-digit id (or its exact name); the form resolves it once, in
    ``RequestForm.__init__``, and this field only shows the id of what was resolved."""

    shown: str = ""

    def prepare_value(self, value: Any) -> Any:
        return self.shown or value


def picker_attrs(kind: str, placeholder: str, **extra: str) -> dict[str, str]:
    """A text input the picker script turns into a combobox over ``/catalog/search/?kind=...``."""
    return {
        "data-picker": kind,
        "autocomplete": "off",
        "spellcheck": "false",
        "placeholder": placeholder,
        **extra,
    }


def resolve_account(user, raw: str | None) -> tuple[AwsAccount | None, str]:
    """The account ``raw`` names (a 12-digit id, an id of the catalog row, or an exact name) if ``user`` may ask
    for access in it; else None and what to tell them."""
    raw = (raw or "").strip()
    if not raw:
        return None, ""
    if len(raw) > 100:
        return None, "That is not an account; type part of its name or its 12-digit id."
    account = None
    if re.fullmatch(r"\d{12}", raw):
        account = AwsAccount.objects.filter(account_id=raw).first()
    elif (pk := parse_id(raw)) is not None:
        account = AwsAccount.objects.filter(pk=pk).first()
    else:
        named = list(selectors.requestable_accounts(user).filter(name__iexact=raw)[:2])
        account = named[0] if len(named) == 1 else None
    if account is None:
        return None, (
            f"Gatehouse knows no account {raw[:40]}; choose one from the list (type part of its name) or give "
            "its 12-digit id."
        )
    problem = permissions.account_problem(user, account)
    return (None, problem) if problem else (account, "")


class RequestForm(forms.Form):
    kind = forms.ChoiceField(choices=RequestKind.choices, initial=RequestKind.PIPELINE)
    account = AccountField(
        max_length=100,
        widget=forms.TextInput(attrs=picker_attrs("account", "Account name or 12-digit id")),
    )
    principal = PrincipalChoiceField(
        queryset=Principal.objects.none(),
        label="Who receives access",
        empty_label="Choose a principal",
        error_messages={"invalid_choice": _GONE},
    )
    pipelines = IdMultipleChoiceField(
        queryset=Pipeline.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": _GONE},
    )
    pipeline_names = forms.CharField(
        required=False,
        max_length=4000,
        label="Pipelines",
        help_text="Their names, separated by spaces or commas (type to search this account's pipelines).",
        widget=forms.TextInput(attrs=picker_attrs("pipeline", "Pipeline names", **{"data-multiple": "1"})),
    )
    level = forms.ChoiceField(
        choices=[("", "—"), *AccessLevel.choices],
        required=False,
        help_text="Viewer: read pipelines and executions. Operator: also start, stop, retry, approve. "
        "Editor: also change the pipeline (and pass its service role).",
    )
    actions = forms.CharField(
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Custom level only: CodePipeline actions separated by spaces or commas.",
    )
    stage = forms.CharField(
        required=False, max_length=100, help_text="Optional: limit stage actions to one stage."
    )
    action_name = forms.CharField(
        required=False, max_length=100, help_text="Optional: one action within the stage."
    )
    pass_role = IdChoiceField(
        queryset=PassableRole.objects.none(),
        required=False,
        label="Role to pass to CodePipeline",
        error_messages={"invalid_choice": _GONE},
    )
    permission_set = IdChoiceField(
        queryset=PermissionSet.objects.none(), required=False, error_messages={"invalid_choice": _GONE}
    )
    trusted_account_id = forms.RegexField(
        regex=r"^\d{12}$",
        required=False,
        label="Outside account id",
        error_messages={"invalid": "An AWS account id is 12 digits, e.g. 123456789012."},
    )
    trusted_principal_arn = forms.RegexField(
        regex=rf"^{arns.IAM_ROLE_OR_USER_ARN}$",
        required=False,
        label="Outside principal ARN",
        error_messages={"invalid": "An IAM role or user ARN, e.g. arn:aws:iam::210987654321:role/Deployer."},
    )
    external_id = forms.RegexField(
        regex=r"^[\w+=,.@:/-]{2,1224}$", required=False, label="External ID (third parties)"
    )
    # Not required by the form: the preview works before it is typed; submitting needs it (the service says so).
    justification = forms.CharField(
        required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 3}), label="Why you need it"
    )
    ticket = forms.CharField(required=False, max_length=100, label="Ticket reference")
    duration_hours = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_DURATION_HOURS,
        initial=8,
        label="Duration (hours)",
        help_text="Counted from approval. Brought down to the approval rule's maximum in the preview.",
    )
    also_accounts = forms.CharField(
        required=False,
        max_length=2000,
        label="Also in these accounts (optional)",
        help_text="The same access in more accounts: their 12-digit ids, separated by spaces or commas. For an "
        "Identity Center user or group; each account's own approval rule decides it.",
        widget=forms.TextInput(attrs=picker_attrs("account", "12-digit ids", **{"data-multiple": "1"})),
    )
    also_ou = forms.CharField(
        required=False,
        max_length=68,
        label="Also every account in this organizational unit (optional)",
        help_text="Its accounts (and those of the units below it) are looked up when you file the request.",
        widget=forms.TextInput(attrs=picker_attrs("ou", "Unit name or ou-… id")),
    )
    starts_at = forms.DateTimeField(
        required=False,
        label="Start (optional, UTC)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
        help_text="Leave empty to start as soon as it is approved; at most 90 days ahead.",
    )
    permanent = forms.BooleanField(required=False, help_text="Only where the approval rule allows it.")
    source = forms.ChoiceField(choices=Source.choices, initial=Source.FORM, widget=forms.HiddenInput)
    pasted_text = forms.CharField(required=False, max_length=MAX_MESSAGE_CHARS, widget=forms.HiddenInput)
    extends = forms.IntegerField(
        required=False, min_value=1, max_value=10**ID_DIGITS - 1, widget=forms.HiddenInput
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        principals = Principal.objects.filter(present=True).select_related("account")
        if not roles.is_admin(user):
            principals = principals.filter(users=user)
        raw = self.data.get("account") if self.is_bound else self.initial.get("account")
        self.chosen_account, self.account_error = resolve_account(user, None if raw is None else str(raw))
        account_field = self.fields["account"]
        assert isinstance(account_field, AccountField)
        account_field.shown = self.chosen_account.account_id if self.chosen_account else ""
        account_filter = Q(account=self.chosen_account) if self.chosen_account is not None else Q(pk__in=[])
        # IAM principals only in their own account (their policies work nowhere else); Identity Center people
        # and groups in any account. What is left out is said, with the way forward (``principal_notes``).
        chosen = self.chosen_account
        grantable = (
            principals.filter(Q(account=chosen) | Q(account__isnull=True)) if chosen else principals.none()
        )
        self.principal_notes: list[str] = []
        if not principals.exists():
            self.principal_notes.append(
                "No AWS principal is linked to your Gatehouse account yet, so there is no one to give access to. "
                "Ask a Gatehouse admin to link your IAM user or Identity Center user to you."
            )
        if chosen is not None:
            for elsewhere in principals.exclude(account=chosen).filter(account__isnull=False)[:5]:
                home = elsewhere.account.account_id if elsewhere.account else "another account"
                self.principal_notes.append(
                    f"Your {elsewhere.get_kind_display()} {elsewhere.name} lives in account {home}: IAM access is "
                    "granted in the principal's own account. Here, choose your Identity Center user, or ask for "
                    "a cross-account role."
                )
        querysets = {
            "principal": grantable,
            "pipelines": Pipeline.objects.filter(account_filter, present=True).select_related("account"),
            "pass_role": PassableRole.objects.filter(
                account_filter, present=True, trusts_codepipeline=True, sensitive=False
            ),
            # Portal-owned permission sets carry other people's approved policies; nobody requests them directly.
            "permission_set": PermissionSet.objects.filter(present=True, portal_owned=False),
        }
        for name, queryset in querysets.items():
            field = self.fields[name]
            assert isinstance(field, forms.ModelChoiceField)
            field.queryset = queryset
        # An account with more pipelines than fit as checkboxes gets a picker of names instead (the search
        # endpoint, scoped to the account); the checkboxes stay for the usual handful.
        self.many_pipelines = (
            chosen is not None
            and len(querysets["pipelines"].values_list("pk", flat=True)[: PIPELINE_CHECKBOXES + 1])
            > PIPELINE_CHECKBOXES
        )
        if chosen is not None:
            self.fields["pipeline_names"].widget.attrs["data-account"] = chosen.account_id
        self._offer_only_eligible(querysets["permission_set"])

    def _offer_only_eligible(self, permission_sets) -> None:
        """Offer only the accounts, kinds and permission sets the eligibility rules let this user ask for. The
        fields still accept the others, so that whoever sends one anyway (a pasted error, the API, an old page)
        is told by the service which eligibility rule leaves them out, instead of "not a valid choice"."""
        rules = permissions.eligibility_rules()
        if not rules:
            return
        # The account is a search, not a list (``/catalog/search/``): what is offered is judged for the chosen
        # account, and an account where nothing is open is refused with the rule's reason when chosen.
        chosen = self.chosen_account
        if chosen is None:
            return
        eligible = permissions.eligible_choices(self.user, [chosen], list(permission_sets), rules=rules)
        kinds, sets = eligible.get(chosen.pk, (set(), set()))

        def keep(name: str, allowed: set) -> None:
            field = self.fields[name]
            field.widget.choices = [  # type: ignore[attr-defined]
                (value, label)
                for value, label in field.choices  # type: ignore[attr-defined]
                if value in ("", None) or str(value) in {str(a) for a in allowed}
            ]

        keep("kind", kinds)
        keep("permission_set", sets)

    def clean_extends(self) -> Grant | None:
        pk = self.cleaned_data.get("extends")
        if pk is None:
            return None
        try:
            grant = selectors.get_own_grant(self.user, pk)
        except Http404:  # the same answer whether it does not exist or is someone else's
            raise forms.ValidationError("You have no grant with that number to extend.") from None
        try:
            return check_extendable(grant, self.user)
        except permissions.NotAllowed as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_account(self) -> AwsAccount:
        if self.chosen_account is None:
            raise forms.ValidationError(self.account_error or "Choose an account.")
        return self.chosen_account

    def clean_also_accounts(self) -> list[AwsAccount]:
        ids = [a for a in re.split(r"[\s,]+", self.cleaned_data.get("also_accounts") or "") if a]
        wrong = [a for a in ids if not re.fullmatch(r"\d{12}", a)]
        if wrong:
            raise forms.ValidationError(
                f"Not account ids (12 digits): {', '.join(w[:20] for w in wrong[:5])}."
            )
        if len(ids) > 200:
            raise forms.ValidationError("Name at most 200 accounts.")
        found = {a.account_id: a for a in AwsAccount.objects.filter(account_id__in=ids)}
        unknown = [a for a in ids if a not in found]
        if unknown:
            raise forms.ValidationError(f"Gatehouse does not provision into {', '.join(unknown[:5])}.")
        refused = [
            problem
            for a in dict.fromkeys(ids)
            if (problem := permissions.account_problem(self.user, found[a]))
        ]
        if refused:
            raise forms.ValidationError(refused[:3])
        return [found[a] for a in dict.fromkeys(ids)]

    def clean_also_ou(self) -> OrganizationalUnit | None:
        raw = (self.cleaned_data.get("also_ou") or "").strip()
        if not raw:
            return None
        unit = OrganizationalUnit.objects.filter(Q(ou_id=raw) | Q(path__iexact=raw), present=True).first()
        if unit is None:
            raise forms.ValidationError(
                f"There is no organizational unit {raw[:70]}; choose one from the list or give its ou-… id."
            )
        return unit

    def clean_pipeline_names(self) -> list[Pipeline]:
        """Pipelines named (or picked: the picker fills in names) in the chosen account, in the order given."""
        names = list(
            dict.fromkeys(n for n in re.split(r"[\s,]+", self.cleaned_data.get("pipeline_names") or "") if n)
        )
        if not names or self.chosen_account is None:
            return []
        if len(names) > 100:
            raise forms.ValidationError("Name at most 100 pipelines.")
        field = self.fields["pipelines"]
        assert isinstance(field, forms.ModelChoiceField) and field.queryset is not None
        found: dict[str, Pipeline] = {}
        for pipeline in field.queryset.filter(name__in=names):
            found.setdefault(pipeline.name, pipeline)
        unknown = [n for n in names if n not in found]
        if unknown:
            raise forms.ValidationError(
                f"Account {self.chosen_account.account_id} has no pipeline {', '.join(u[:100] for u in unknown[:5])}."
            )
        return [found[n] for n in names]

    def clean_actions(self) -> list[str]:
        return [a for a in re.split(r"[\s,]+", self.cleaned_data.get("actions") or "") if a]

    def clean(self):
        data = super().clean() or {}
        if data.get("permanent"):
            data["duration_hours"] = None
        elif not data.get("duration_hours"):
            self.add_error("duration_hours", "Say for how many hours, or tick permanent where allowed.")
        if data.get("kind") in (RequestKind.PIPELINE, RequestKind.CROSS_ACCOUNT) and not data.get("level"):
            self.add_error("level", "Choose an access level.")
        return data

    def draft(self) -> RequestDraft:
        d = self.cleaned_data
        return RequestDraft(
            principal=d["principal"],
            kind=d["kind"],
            account=d["account"],
            pipelines=list(dict.fromkeys([*(d.get("pipelines") or []), *(d.get("pipeline_names") or [])])),
            level=d.get("level") or "",
            actions=d.get("actions") or [],
            stage=d.get("stage") or "",
            action_name=d.get("action_name") or "",
            pass_role=d.get("pass_role"),
            permission_set=d.get("permission_set"),
            trusted_account_id=d.get("trusted_account_id") or "",
            trusted_principal_arn=d.get("trusted_principal_arn") or "",
            external_id=d.get("external_id") or "",
            justification=d.get("justification") or "",
            ticket=d.get("ticket") or "",
            duration_hours=d.get("duration_hours"),
            starts_at=d.get("starts_at"),
            source=d.get("source") or Source.FORM,
            pasted_text=d.get("pasted_text") or "",
            extends=d.get("extends"),
        )

    @classmethod
    def initial_to_extend(cls, grant: Grant) -> dict[str, Any]:
        """The form's initial values for extending ``grant``: the same access, for its requester to confirm."""
        same = extension_fields(grant)
        initial: dict[str, Any] = {name: value for name, value in same.items() if value not in (None, "", [])}
        initial.update(
            account=same["account"].account_id,
            principal=same["principal"].pk,
            pipelines=[p.pk for p in same["pipelines"]],
            actions=" ".join(same["actions"]),
            duration_hours=grant.request.duration_hours or 8,
            extends=grant.pk,
        )
        for name in ("pass_role", "permission_set"):
            if same[name] is not None:
                initial[name] = same[name].pk
        return initial


class PasteForm(forms.Form):
    message = forms.CharField(
        label="The error AWS gave you",
        max_length=MAX_MESSAGE_CHARS,
        widget=forms.Textarea(
            attrs={
                "rows": 6,
                "placeholder": "User: arn:aws:iam::123456789012:user/… is not authorized to perform: …",
            }
        ),
        error_messages={"max_length": f"Paste only the error (at most {MAX_MESSAGE_CHARS:,} characters)."},
    )
    region = forms.CharField(required=False, max_length=32, widget=forms.HiddenInput)


class DecisionForm(forms.Form):
    comment = forms.CharField(required=False, max_length=2000, widget=forms.Textarea(attrs={"rows": 2}))
    decision = forms.ChoiceField(choices=[("approve", "Approve"), ("deny", "Deny")])


class AuditFilterForm(forms.Form):
    since = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(required=False, widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    actor = forms.CharField(required=False, max_length=150)
    principal = forms.CharField(required=False, max_length=2048)
    account = forms.RegexField(
        regex=r"^\d{12}$",
        required=False,
        error_messages={"invalid": "An AWS account id is 12 digits, e.g. 123456789012."},
    )
    pipeline = forms.CharField(required=False, max_length=100)
    action = forms.CharField(required=False, max_length=64, help_text="e.g. request. or grant.applied")
    request_ref = forms.CharField(required=False, max_length=20, label="Request", help_text="e.g. GH-000042")

    def filters(self) -> dict:
        return {k: v for k, v in self.cleaned_data.items() if v not in (None, "")}


class AccessReportForm(forms.Form):
    since = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    until = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))
    account = forms.RegexField(
        regex=r"^\d{12}$",
        required=False,
        error_messages={"invalid": "An AWS account id is 12 digits, e.g. 123456789012."},
    )
    pipeline = forms.CharField(required=False, max_length=100)
    principal = forms.CharField(required=False, max_length=2048)


class ReviewItemForm(forms.Form):
    decision = forms.ChoiceField(choices=[("keep", "Keep"), ("revoke", "Revoke")])
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say why you keep or revoke this access (the reason is required)."},
    )


class BreakGlassForm(RequestForm):
    """Break-glass: pipeline access for one principal, now, for at most the rule's break-glass hours."""

    incident = forms.CharField(
        required=False,
        max_length=100,
        label="Incident reference",
        help_text="The incident this is for, as your incident tool or ticket system names it (required).",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].widget = forms.HiddenInput()
        self.fields["kind"].initial = RequestKind.PIPELINE
        self.fields["source"].required = False
        self.fields["justification"].label = "What is broken and why you need this now"
        self.fields["duration_hours"].initial = 1
        self.fields[
            "duration_hours"
        ].help_text = "From now; at most what the rule allows for break-glass (1 hour by default)."

    def clean(self):
        # Not RequestForm.clean: break-glass is never permanent, and is always pipeline access.
        data = forms.Form.clean(self) or {}
        data.update(kind=RequestKind.PIPELINE, source=Source.FORM, permanent=False)
        if not data.get("duration_hours") and "duration_hours" not in self.errors:
            self.add_error("duration_hours", "Say for how many hours (1 unless the rule allows more).")
        if not data.get("level") and "level" not in self.errors:
            self.add_error("level", "Choose an access level.")
        return data


class PostReviewForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[("justified", "Justified"), ("not_justified", "Not justified: revoke what is still live")]
    )
    comment = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say what you checked (the comment is required)."},
    )
