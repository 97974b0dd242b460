"""Requester pages: file a request (form or pasted error), follow it, cancel it."""

from __future__ import annotations

import functools

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accessrequests.authz import permissions, recipients, selectors
from accessrequests.core import roles
from accessrequests.core.paging import paginate
from accessrequests.core.wording import counted
from accessrequests.intake.parse import parse_access_denied
from accessrequests.intake.resolve import resolve_denial
from accessrequests.models import Delivery, RequestStatus, Source
from accessrequests.policy import documents as policy
from accessrequests.views.forms import PasteForm, RequestForm
from accessrequests.views.grants import confirmation
from accessrequests.workflow import batches
from accessrequests.workflow.changes import how_to_use
from accessrequests.workflow.requests import (
    RequestError,
    check_extendable,
    plan_request,
    request_cancel,
    request_submit,
)
from portal.middleware import form_removes_nul_bytes

PAGE_SIZE = 25


def writer_required(view):
    """Auditors read everything and change nothing: their POSTs are refused before any form is read."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if request.method == "POST" and roles.is_auditor(request.user):
            raise PermissionDenied("Auditors have read-only access.")
        return view(request, *args, **kwargs)

    return wrapper


@login_required
@require_GET
def my_requests(request: HttpRequest) -> HttpResponse:
    status = request.GET.get("status") or None
    if status not in RequestStatus.values:
        status = None
    page = paginate(selectors.my_requests(request.user, status=status), request.GET.get("page"), PAGE_SIZE)
    return render(
        request,
        "accessrequests/my_requests.html",
        {"page": page, "status": status, "statuses": RequestStatus.choices},
    )


def draft_preview(draft, *, document: bool = True) -> dict:
    """What a prepared draft would grant, for ``_draft_preview.html``: the exact policy (``document``: of this one
    draft), how it is delivered, and who can use it once applied."""
    return {
        "draft": draft,
        "document": policy.pretty(draft.statements) if document else "",
        "allows": policy.in_words(draft.statements) if document else [],
        "delivery": Delivery(draft.delivery).label,
        "recipients": recipients.recipients_of(draft.as_unsaved_request()),
    }


def _render_form(
    request: HttpRequest,
    form: RequestForm,
    *,
    preview=None,
    error=None,
    intake=None,
    duplicates=(),
    submitted: bool = False,
) -> HttpResponse:
    """The form page. What stops the request (the service's refusal, each field's problem) is listed once, at the
    top, with a link to each field; a duplicate is said once, as a warning with its link (``submitted``: a
    Submit that filed nothing, which is a 400)."""
    not_filed = bool(error or (form.is_bound and form.errors) or (submitted and duplicates))
    draft = (preview or {}).get("draft")
    if draft is not None and draft.default_duration and draft.duration_hours:
        # Left empty, the duration shows what the rule makes of it.
        form.fields["duration_hours"].widget.attrs["placeholder"] = str(draft.duration_hours)
    return render(
        request,
        "accessrequests/new_request.html",
        {
            "form": form,
            "preview": preview,
            "error": error,
            "intake": intake,
            "duplicates": duplicates,
            "submitted": submitted,
            "step_one": form.chosen_account is None,
            "fold_fields": intake is not None and form.chosen_account is not None,
        },
        status=400 if not_filed else 200,
    )


def _extension_form(request: HttpRequest, grant_id: str) -> HttpResponse:
    """The request form filled in with a live grant's access, to extend it without a gap."""
    grant = selectors.get_own_grant(request.user, grant_id)
    try:
        check_extendable(grant, request.user)
    except permissions.NotAllowed as exc:
        messages.error(request, str(exc))
        return redirect("request_detail", pk=grant.request_id)
    return _preview(request, RequestForm.initial_to_extend(grant))


def _as_data(values: dict) -> QueryDict:
    data = QueryDict(mutable=True)
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            data.setlist(key, [str(v) for v in value])
        elif value not in (None, ""):
            data[key] = str(value)
    return data


def _preview(request: HttpRequest, values: dict, *, intake=None) -> HttpResponse:
    """The form filled with ``values`` and its preview at once (after pasting an error, or to extend)."""
    data = _as_data({"source": Source.FORM, **values, "intent": "preview"})
    return _handle(request, data, intake=intake)


def _handle(request: HttpRequest, data: QueryDict, *, intake=None) -> HttpResponse:
    form = RequestForm(data, user=request.user)
    data = form.data  # type: ignore[assignment]  # a QueryDict, less the hidden characters the form took out
    intent = data.get("intent")
    shown = data.get("shown_account")
    if shown and (
        form.chosen_account is None
        or shown not in (form.chosen_account.account_id, str(form.chosen_account.pk))
    ):
        intent = "continue"  # the account changed (without JavaScript): its own lists come first
    if form.chosen_account is None and data.get("account"):
        form.is_valid()  # an account that is not offered: say so, on step one (which shows no other field)
        on_step_one = {"account", "kind"} | {field.name for field in form.hidden_fields()}
        for name in [name for name in form.errors if name in form.fields and name not in on_step_one]:
            del form.errors[name]
        return _render_form(request, form, intake=intake)
    if form.chosen_account is None or intent == "continue":
        # Step one (choose the account), or the account just changed: show the lists for it, no errors yet.
        keep = set(data) - {
            "intent",
            "shown_account",
            "pipelines",
            "pass_role",
        }  # lists of the old account go
        initial = {k: data[k] for k in keep}
        return _render_form(request, RequestForm(user=request.user, initial=initial), intake=intake)
    submitting = intent == "submit"
    if not form.is_valid():
        return _render_form(request, form, intake=intake, submitted=submitting)
    draft = form.draft()
    also = [a for a in form.cleaned_data.get("also_accounts") or [] if a != draft.account]
    unit = form.cleaned_data.get("also_ou")
    if also or unit is not None:
        return _handle_batch(
            request, form, draft, [draft.account, *also], unit=unit, submitting=submitting, intake=intake
        )
    plan = plan_request(request.user, draft, preview=not submitting)
    if plan.problem:
        return _render_form(request, form, error=plan.problem, intake=intake, submitted=submitting)
    duplicates = plan.duplicates
    if submitting and duplicates:
        # The submit service would refuse it for the same reason: said once, with the way to the other one.
        return _render_form(
            request, form, preview=draft_preview(draft), intake=intake, duplicates=duplicates, submitted=True
        )
    if not submitting:
        if not draft.default_duration and draft.duration_hours != form.cleaned_data.get("duration_hours"):
            # The preview brought the duration down to the rule's maximum: the form shows what will be asked.
            data = data.copy()
            data["duration_hours"] = str(draft.duration_hours)
            data.pop("permanent", None)
            form = RequestForm(data, user=request.user)
            form.is_valid()
        return _render_form(request, form, preview=draft_preview(draft), intake=intake, duplicates=duplicates)
    try:
        req = request_submit(requester=request.user, plan=plan, http_request=request)
    except (RequestError, permissions.NotAllowed) as exc:
        return _render_form(request, form, error=str(exc), intake=intake, submitted=True)
    messages.success(request, f"{req.reference} filed; it is {req.get_status_display().lower()}.")
    return redirect("request_detail", pk=req.pk)


def _handle_batch(
    request: HttpRequest, form: RequestForm, draft, accounts, *, unit=None, submitting: bool, intake=None
):
    """The same access in several accounts: a preview of each account's routing, or the batch filed whole."""
    try:
        permissions.check(permissions.file_problem(request.user, principal=draft.principal))
        if not submitting:
            accounts = batches.with_unit(request.user, accounts, unit)
            members = batches.members_of(draft, accounts, requester=request.user, preview=True)
            preview = {**draft_preview(members[0], document=False), "members": members}
            return _render_form(request, form, preview=preview, intake=intake)
        batch = batches.batch_submit(
            requester=request.user, draft=draft, accounts=accounts, unit=unit, http_request=request
        )
    except (RequestError, permissions.NotAllowed) as exc:
        return _render_form(request, form, error=str(exc), intake=intake, submitted=submitting)
    messages.success(
        request, f"{batch.reference} filed: the same access in {counted(batch.members.count(), 'account')}."
    )
    return redirect("batch_detail", pk=batch.pk)


@form_removes_nul_bytes
@login_required
@writer_required
@require_http_methods(["GET", "POST"])
def new_request(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        if "extends" in request.GET:
            return _extension_form(request, request.GET["extends"])
        initial = {k: v for k, v in request.GET.items() if k in {"account", "kind", "principal", "level"}}
        return _render_form(request, RequestForm(user=request.user, initial=initial))
    return _handle(request, request.POST)


@form_removes_nul_bytes
@login_required
@writer_required
@require_http_methods(["GET", "POST"])
def paste_error(request: HttpRequest) -> HttpResponse:
    if request.method == "GET":
        return render(request, "accessrequests/paste.html", {"form": PasteForm()})
    form = PasteForm(request.POST)
    if not form.is_valid():
        return render(request, "accessrequests/paste.html", {"form": form}, status=400)
    text = form.cleaned_data["message"]
    result = parse_access_denied(text)
    context: dict = {"form": form, "result": result}
    if result.denial is None:
        context["error"] = result.error
        return render(request, "accessrequests/paste.html", context, status=400)
    if not result.denial.fixable:
        return render(request, "accessrequests/paste.html", context, status=200)
    resolution = resolve_denial(
        result.denial, region=form.cleaned_data.get("region") or None, user=request.user
    )
    context["resolution"] = resolution
    if resolution.error or resolution.region_choices:
        return render(request, "accessrequests/paste.html", context, status=400 if resolution.error else 200)
    values = {**resolution.initial, "source": Source.PASTED_ERROR, "pasted_text": text}
    if not resolution.complete:
        # The page says what was not matched; the form, filled with what was, waits for the requester's choice
        # instead of marking fields they have not touched yet as wrong.
        return _render_form(request, RequestForm(user=request.user, initial=values), intake=resolution)
    return _preview(request, values, intake=resolution)


@login_required
@require_GET
def request_detail(request: HttpRequest, pk: int) -> HttpResponse:
    req = selectors.get_request_for_user(request.user, pk)
    grant = getattr(req, "grant", None) if req.status == RequestStatus.APPROVED else None
    return render(
        request,
        "accessrequests/request_detail.html",
        {
            "req": req,
            "grant": grant,
            "document": policy.pretty(req.statements),
            "allows": policy.in_words(req.statements),
            "pipelines": list(req.pipelines.all()),
            "decisions": list(req.decisions.select_related("reviewer")),
            "timeline": list(selectors.request_timeline(req)),
            "usage": how_to_use(grant) if grant is not None else "",
            "access_end": selectors.access_end_of(grant),
            "can_cancel": permissions.allowed(permissions.cancel_problem, request.user, req),
            "can_extend": grant is not None
            and permissions.allowed(permissions.extend_problem, request.user, grant),
            "can_revoke": grant is not None
            and permissions.allowed(permissions.revoke_problem, request.user, grant),
        },
    )


@login_required
@writer_required
@require_POST
def cancel_request(request: HttpRequest, pk: int) -> HttpResponse:
    req = selectors.get_request_for_user(request.user, pk)
    if request.POST.get("confirm") != "yes" and permissions.allowed(
        permissions.cancel_problem, request.user, req
    ):
        return confirmation(
            request,
            title=f"Cancel {req.reference}?",
            explanation="Approvers stop seeing it, and it cannot be approved any more. You can file it again later.",
            action="Cancel the request",
            keep="Keep it pending",
            back=reverse("request_detail", args=[req.pk]),
        )
    try:
        request_cancel(request_id=req.pk, requester=request.user, http_request=request)
        messages.success(request, f"{req.reference} cancelled.")
    except (RequestError, permissions.NotAllowed) as exc:
        messages.error(request, str(exc))
    return redirect("request_detail", pk=req.pk)
