"""Forms: they parse and validate input; the services decide."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from django import forms
from django.db.models import Q

from accessrequests.authz import permissions
from accessrequests.core import plain_text
from accessrequests.core.ids import ID_DIGITS, IdChoiceField, IdMultipleChoiceField
from accessrequests.intake.parse import MAX_MESSAGE_CHARS
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
from accessrequests.workflow import drafts
from accessrequests.workflow.drafts import (
    CHOICE_GONE,
    MAX_DURATION_HOURS,
    DraftError,
    DraftInput,
    split_names,
)
from accessrequests.workflow.requests import DEFAULT_DURATION_HOURS, RequestDraft, extension_fields

PIPELINE_CHECKBOXES = 40  # beyond this many pipelines in an account the form offers a search instead


class PrincipalChoiceField(IdChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        where = f" in {obj.account.account_id}" if obj.account_id else ""
        name = f"{obj.label} ({obj.name})" if obj.display_name and obj.display_name != obj.name else obj.name
        return f"{obj.get_kind_display()} {name}{where}"


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


class PlainTextForm(forms.Form):
    """What was typed comes back as it was typed, and what is wrong with it is said:

    - the characters Gatehouse does not store (``plain_text``: a NUL byte, a right-to-left override, ...) are taken
      out of the text fields, the rest is shown back with a message on the field saying what was taken out, and
      the form is not valid until it is sent again (views of these forms are marked ``form_removes_nul_bytes``, so
      the NUL check before every other form lets them through);
    - text is never cut by the browser: the fields carry no ``maxlength``, and one too long is said to be, with
      its length, instead of pasting only its first part without a word.
    """

    # Text nobody typed (a pasted error, as a terminal or a web page printed it): cleaned without a word.
    CLEANED_SILENTLY: tuple[str, ...] = ()

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for field in self.fields.values():
            if isinstance(field, forms.CharField) and field.max_length is not None:
                field.widget.attrs.pop("maxlength", None)
                if isinstance(field.widget, forms.Textarea):  # a count beside it (request-form.js)
                    field.widget.attrs["data-limit"] = str(field.max_length)
                field.error_messages.setdefault(
                    "max_length",
                    "At most %(limit_value)d characters: this has %(show_value)d. Shorten it; nothing was cut.",
                )
        self.removed: dict[str, str] = {}  # the fields' values as sent, by name
        if not self.is_bound:
            return
        for name, field in self.fields.items():
            value = self.data.get(name)
            if (
                isinstance(field, forms.CharField)
                and isinstance(value, str)
                and plain_text.hidden_characters(value)
            ):
                self.removed[name] = value
        if self.removed:
            data: Any = self.data.copy()  # type: ignore[attr-defined]  # a QueryDict (or a dict in tests)
            for name, value in self.removed.items():
                data[name] = plain_text.without_hidden_characters(value)
            self.data = data
            for name in self.CLEANED_SILENTLY:
                self.removed.pop(name, None)

    def clean(self):
        data = super().clean()
        for name, value in self.removed.items():
            self.add_error(name, plain_text.removed_problem(f"“{self[name].label}”", value))
        return data


class RequestForm(PlainTextForm):
    kind = forms.ChoiceField(choices=RequestKind.choices, initial=RequestKind.PIPELINE)
    account = AccountField(
        max_length=100,
        widget=forms.TextInput(attrs=picker_attrs("account", "Account name or 12-digit id")),
    )
    principal = PrincipalChoiceField(
        queryset=Principal.objects.none(),
        label="Who receives access",
        empty_label="Choose a principal",
        error_messages={"invalid_choice": CHOICE_GONE},
    )
    NOT_FOR_CROSS_ACCOUNT = "Not for cross-account access: the outside party you name there receives it."
    pipelines = IdMultipleChoiceField(
        queryset=Pipeline.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"invalid_choice": CHOICE_GONE},
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
        error_messages={"invalid_choice": CHOICE_GONE},
    )
    permission_set = IdChoiceField(
        queryset=PermissionSet.objects.none(), required=False, error_messages={"invalid_choice": CHOICE_GONE}
    )
    trusted_account_id = forms.RegexField(
        regex=drafts.ACCOUNT_ID,
        required=False,
        label="Outside account id",
        help_text="Its administrators choose who there may assume the role.",
        error_messages={"invalid": drafts.ACCOUNT_ID_INVALID},
    )
    trusted_principal_arn = forms.RegexField(
        regex=drafts.TRUSTED_PRINCIPAL_ARN,
        required=False,
        label="Or: outside principal ARN",
        help_text="Only this IAM role or user may assume the role. Name the account or the ARN, not both.",
        error_messages={"invalid": drafts.TRUSTED_PRINCIPAL_ARN_INVALID},
    )
    external_id = forms.RegexField(
        regex=drafts.EXTERNAL_ID,
        required=False,
        label="External ID (third parties)",
        error_messages={"invalid": drafts.EXTERNAL_ID_INVALID},
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
        label="Duration (hours)",
        widget=forms.NumberInput(attrs={"placeholder": str(DEFAULT_DURATION_HOURS)}),
        error_messages={
            "min_value": "At least 1 hour.",
            "max_value": f"At most {MAX_DURATION_HOURS:,} hours (a year); the rule's maximum is usually less.",
            "invalid": "A whole number of hours, e.g. 4.",
        },
        help_text=f"Counted from approval. Left empty: {DEFAULT_DURATION_HOURS} hours, or the approval rule's "
        "maximum where that is less. More than the rule allows is brought down to it in the preview.",
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

    CLEANED_SILENTLY = ("pasted_text",)

    # Folded away on the page (new_request.html) until used: what most requests never need, so a phone shows the
    # proposal, the reason and the Submit button without scrolling past them.
    MORE_OPTIONS = ("ticket", "permanent", "starts_at", "also_accounts", "also_ou")
    NARROWER_SCOPE = ("actions", "stage", "action_name")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user
        self._draft: RequestDraft | None = None
        if self.cross_account:
            # Its outside party receives it. Without JavaScript every section is sent: a principal chosen before
            # the kind changed is not what the role trusts, so it is dropped rather than judged.
            self.fields["principal"].required = False
            if self.is_bound and "principal" in self.data:
                data: Any = self.data.copy()  # type: ignore[attr-defined]  # a QueryDict (or a dict in tests)
                data.pop("principal")
                self.data = data
        principals = drafts.principal_choices(user)
        raw = self.data.get("account") if self.is_bound else self.initial.get("account")
        self.chosen_account, problem = drafts.resolve_account(user, None if raw is None else str(raw))
        self.account_resolved = (self.chosen_account, problem)
        self.account_error = problem.message if problem else ""
        account_field = self.fields["account"]
        assert isinstance(account_field, AccountField)
        account_field.shown = self.chosen_account.account_id if self.chosen_account else ""
        # IAM principals only in their own account (their policies work nowhere else); Identity Center people
        # and groups in any account. What is left out is said, with the way forward (``principal_notes``).
        chosen = self.chosen_account
        grantable = drafts.grantable_principals(user, chosen) if chosen else principals.none()
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
            "pipelines": drafts.pipeline_choices(chosen) if chosen else Pipeline.objects.none(),
            "pass_role": drafts.pass_role_choices(chosen) if chosen else PassableRole.objects.none(),
            "permission_set": drafts.permission_set_choices(),
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

    @property
    def cross_account(self) -> bool:
        """Cross-account access is asked for: its outside party receives it, and no principal is asked."""
        kind = self.data.get("kind") if self.is_bound else self.initial.get("kind")
        return kind == RequestKind.CROSS_ACCOUNT

    def clean_account(self) -> AwsAccount:
        if self.chosen_account is None:
            raise forms.ValidationError(self.account_error or "Choose an account.")
        return self.chosen_account

    def clean_also_accounts(self) -> list[AwsAccount]:
        ids = split_names(self.cleaned_data.get("also_accounts"))
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

    def clean(self):
        """The field checks, then the one draft builder (``workflow.drafts.build_draft``) over what they let
        through; a problem it finds in a field that already has one is not said twice."""
        data = super().clean() or {}
        if self.removed:
            return data
        if (
            self.data.get("intent") == "submit"
            and "justification" not in self.errors
            and not (data.get("justification") or "").strip()
        ):
            # The submit services refuse it too; said here, it is said on the field and in the list at the top.
            self.add_error(
                "justification", "Say why you need it: the approvers decide on it (required to submit)."
            )
        if data.get("permanent"):
            data["duration_hours"] = None
        self._draft = None
        try:
            self._draft = drafts.build_draft(
                user=self.user, data=self.draft_input(data), resolved=self.account_resolved
            )
        except DraftError as exc:
            for name, problems in exc.problems.items():
                if name not in self.errors:
                    self.add_error(name if name in self.fields else None, [p.message for p in problems])
        return data

    def _in_use(self, names: tuple[str, ...]) -> bool:
        """Does any of these fields hold a value or an error (so its folded section opens)?"""
        errors = self.errors if self.is_bound else {}
        return any(name in errors or self[name].value() not in (None, "", False, []) for name in names)

    @property
    def more_options_open(self) -> bool:
        return self._in_use(self.MORE_OPTIONS)

    @property
    def narrower_scope_open(self) -> bool:
        return self["level"].value() == AccessLevel.CUSTOM or self._in_use(self.NARROWER_SCOPE)

    def draft_input(self, data: dict[str, Any]) -> DraftInput:
        """The cleaned fields as the builder's input (chosen rows by their catalog id)."""

        def pk(name: str) -> str:
            return str(data[name].pk) if data.get(name) is not None else ""

        return DraftInput(
            account=self.chosen_account.account_id if self.chosen_account else "",
            kind=data.get("kind") or "",
            principal=data["principal"].pk if data.get("principal") is not None else None,
            pipelines=[p.pk for p in data.get("pipelines") or []],
            pipeline_names=split_names(data.get("pipeline_names")),
            level=data.get("level") or "",
            actions=split_names(data.get("actions")),
            stage=data.get("stage") or "",
            action_name=data.get("action_name") or "",
            pass_role=pk("pass_role"),
            permission_set=pk("permission_set"),
            trusted_account_id=data.get("trusted_account_id") or "",
            trusted_principal_arn=data.get("trusted_principal_arn") or "",
            external_id=data.get("external_id") or "",
            justification=data.get("justification") or "",
            ticket=data.get("ticket") or "",
            duration_hours=data.get("duration_hours"),
            permanent=bool(data.get("permanent")),
            starts_at=data.get("starts_at"),
            source=data.get("source") or Source.FORM,
            pasted_text=data.get("pasted_text") or "",
            extends=data.get("extends"),
        )

    def draft(self) -> RequestDraft:
        """The draft the builder made while the form was cleaned (after ``is_valid()`` said yes)."""
        assert self._draft is not None, "draft() of a form that is not valid"
        return self._draft

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
            duration_hours=grant.request.duration_hours or DEFAULT_DURATION_HOURS,
            extends=grant.pk,
        )
        for name in ("pass_role", "permission_set"):
            if same[name] is not None:
                initial[name] = same[name].pk
        return initial


class PasteForm(PlainTextForm):
    CLEANED_SILENTLY = ("message", "region")

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
    """Break-glass: access for one of your own principals, now, for at most the rule's break-glass hours. It
    offers the ``kinds`` the rules naming you give (pipeline access unless a rule names more); the service
    (``permissions.break_glass_shape_problem``) refuses any other shape, whatever is posted."""

    incident = forms.CharField(
        required=False,
        max_length=100,
        label="Incident reference",
        help_text="The incident this is for, as your incident tool or ticket system names it (required).",
    )

    def __init__(self, *args, kinds: Sequence[str] = (RequestKind.PIPELINE,), **kwargs):
        super().__init__(*args, **kwargs)
        kind = self.fields["kind"]
        kind.initial = RequestKind.PIPELINE
        offered = [(v, label) for v, label in kind.widget.choices if v in kinds]  # type: ignore[attr-defined]
        if len(offered) > 1:
            kind.widget.choices = offered  # type: ignore[attr-defined]
            kind.label = "What you need"
        else:
            kind.widget = forms.HiddenInput()
        self.fields["source"].required = False
        self.fields["principal"].help_text = (
            "One of your own principals: break-glass never gives access on someone's behalf, nor to a principal "
            "other people share."
        )
        self.fields["justification"].label = "What is broken and why you need this now"
        duration = self.fields["duration_hours"]
        duration.initial = 1
        duration.required = True
        duration.error_messages["required"] = "Say for how many hours (1 unless the rule allows more)."
        duration.help_text = "From now; at most what the rule allows for break-glass (1 hour by default)."

    def draft_input(self, data: dict[str, Any]) -> DraftInput:
        # Break-glass is for now and never permanent; whatever the page posts as its source, it is the form.
        return replace(super().draft_input(data), permanent=False, starts_at=None, source=Source.FORM)


class PostReviewForm(forms.Form):
    outcome = forms.ChoiceField(
        choices=[("justified", "Justified"), ("not_justified", "Not justified: revoke what is still live")]
    )
    comment = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 2}),
        error_messages={"required": "Say what you checked (the comment is required)."},
    )
