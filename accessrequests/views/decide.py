"""Approver pages: the queue of what they may decide, and the one-screen review with the exact policy diff."""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods

from accessrequests.authz import inbox, permissions, selectors
from accessrequests.core import roles
from accessrequests.models import RequestKind, RequestStatus
from accessrequests.views import step_up
from accessrequests.views.forms import DecisionForm
from accessrequests.views.step_up import AFTER_MFA, has_mfa
from accessrequests.workflow.changes import change_for
from accessrequests.workflow.requests import RequestError, request_approve, request_deny


def approver_required(view):
    """Approvers only (404 for everyone else). Without TOTP the pages show read-only, with one banner to set it
    up that comes back here afterwards (deciding itself needs the second factor: the services say so)."""

    @functools.wraps(view)
    @login_required
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not roles.is_approver(request.user):
            raise Http404("No such page")
        request.needs_mfa = not has_mfa(request.user)  # type: ignore[attr-defined]
        if request.needs_mfa:  # type: ignore[attr-defined]
            request.session[AFTER_MFA] = request.get_full_path()
        elif AFTER_MFA in request.session:
            del request.session[AFTER_MFA]  # set up, and back at the review pages: the way back is not needed
        return view(request, *args, **kwargs)

    return wrapper


@approver_required
def queue(request: HttpRequest) -> HttpResponse:
    """Needs your review: every request, break-glass post-review and access-review item the approver may decide,
    the one due first on top, with filters."""
    account = (request.GET.get("account") or "").strip() or None
    account_error = ""
    if account is not None and not (account.isascii() and account.isdigit() and len(account) == 12):
        # Not an account id: said beside the filter, and no filter rather than one that silently matches nothing.
        account_error = "An AWS account id is 12 digits; choose one from the list."
        account = None
    kind = request.GET.get("kind") or None
    if kind not in RequestKind.values:
        kind = None
    work = request.GET.get("work") or None
    if work not in inbox.KINDS:
        work = None
    age = request.GET.get("older_than_hours")
    # Bounded: a timedelta of more hours than a few centuries overflows (a 500), and no request is that old.
    older_than = (
        timezone.now() - timedelta(hours=int(age)) if age and age.isdigit() and len(age) <= 6 else None
    )
    number = request.GET.get("page") or ""
    found = inbox.review_inbox(
        request.user,
        filters=inbox.Filters(account=account, kind=kind, work=work, older_than=older_than),
        page=min(int(number), 10_000) if number.isdigit() else 1,
    )
    inbox.show_in_menu(request, found.menu_counts)
    return render(
        request,
        "accessrequests/queue.html",
        {
            "page": found.page,
            "counts": found.counts,
            "account_error": account_error,
            "kinds": RequestKind.choices,
            "works": inbox.KINDS.items(),
            "filters": {
                "account": account or "",
                "kind": kind or "",
                "work": work or "",
                "older_than_hours": age or "",
            },
        },
    )


@step_up.resumable("request")
def decide_request(request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
    """Approve or deny a request with the session's second factor (the review page, or after the step-up)."""
    pk = int(data["pk"])
    decide = request_approve if data["decision"] == "approve" else request_deny
    try:
        done = decide(
            request_id=pk,
            reviewer=request.user,
            second_factor=permissions.second_factor_from_session(request),
            comment=data["comment"],
            http_request=request,
        )
    except (RequestError, permissions.NotAllowed) as exc:
        messages.error(request, str(exc))
        return redirect("review", pk=pk)
    if done.status == RequestStatus.PENDING:
        messages.success(
            request, f"Your approval of {done.reference} is recorded: {done.approval_progress()}."
        )
    else:
        messages.success(request, f"{done.reference} is now {done.get_status_display().lower()}.")
    return redirect("queue")


@approver_required
@require_http_methods(["GET", "POST"])
def review(request: HttpRequest, pk: int) -> HttpResponse:
    req = selectors.get_request_for_user(request.user, pk)
    page = reverse("review", args=[req.pk])
    typed = step_up.held(request, page) if request.method == "GET" else {}
    form = DecisionForm(request.POST or None, initial={"comment": typed["comment"]} if typed else None)
    factor = permissions.second_factor_from_session(request)
    if request.method == "POST" and request.needs_mfa:  # type: ignore[attr-defined]
        messages.error(request, "Set up two-factor authentication first: deciding on access needs it.")
        return redirect("review", pk=req.pk)
    if request.method == "POST" and form.is_valid():
        data = {"pk": req.pk, **form.cleaned_data}
        if permissions.second_factor_problem(request.user, factor):
            verb = "approve" if data["decision"] == "approve" else "deny"
            return step_up.ask(
                request, decision="request", data=data, back=page, what=f"{verb} {req.reference}",
                button=verb.capitalize(),
            )  # fmt: skip
        return decide_request(request, data)
    return render(
        request,
        "accessrequests/review.html",
        {
            "req": req,
            "form": form,
            "blocked": (
                "Set up two-factor authentication to decide: the banner above takes you there and back."
                if request.needs_mfa  # type: ignore[attr-defined]
                else permissions.decide_problem(request.user, req)
            ),
            "needs_step_up": permissions.second_factor_problem(request.user, factor) is not None,
            "change": change_for(req),
            "pipelines": list(req.pipelines.all()),
            "decisions": list(req.decisions.select_related("reviewer")),
        },
        status=400 if form.errors else 200,
    )
