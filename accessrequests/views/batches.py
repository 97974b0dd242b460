"""A multi-account request as one page: each account's request, rule, progress and change, decided together."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from accessrequests.authz import permissions, selectors
from accessrequests.models import RequestStatus
from accessrequests.views import step_up
from accessrequests.views.forms import DecisionForm
from accessrequests.workflow.batches import batch_approve, batch_deny
from accessrequests.workflow.changes import change_for
from accessrequests.workflow.requests import RequestError


@step_up.resumable("batch")
def decide_batch(request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
    """Approve or deny every request of a batch the reviewer may decide, with the session's second factor."""
    pk = int(data["pk"])
    decide = batch_approve if data["decision"] == "approve" else batch_deny
    try:
        outcome = decide(
            batch_id=pk, reviewer=request.user, second_factor=permissions.second_factor_from_session(request),
            comment=data["comment"], http_request=request,
        )  # fmt: skip
    except (RequestError, permissions.NotAllowed) as exc:
        messages.error(request, str(exc))
        return redirect("batch_detail", pk=pk)
    decided = ", ".join(r.reference for r in outcome.decided)
    left = f" Left for their own approvers: {', '.join(outcome.left)}." if outcome.left else ""
    messages.success(request, f"Decided {decided}.{left}")
    return redirect("batch_detail", pk=pk)


@login_required
@require_http_methods(["GET", "POST"])
def batch_detail(request: HttpRequest, pk: int) -> HttpResponse:
    batch, members = selectors.get_batch_for_user(request.user, pk)
    typed = step_up.held(request, reverse("batch_detail", args=[batch.pk])) if request.method == "GET" else {}
    form = DecisionForm(request.POST or None, initial={"comment": typed["comment"]} if typed else None)
    decidable = [m for m in members if permissions.decide_problem(request.user, m) is None]
    if request.method == "POST" and form.is_valid():
        if not decidable:
            messages.error(request, "There is nothing here you can decide.")
            return redirect("batch_detail", pk=batch.pk)
        data = {"pk": batch.pk, **form.cleaned_data}
        if permissions.second_factor_problem(request.user, permissions.second_factor_from_session(request)):
            verb = "approve" if data["decision"] == "approve" else "deny"
            return step_up.ask(
                request, decision="batch", data=data, back=reverse("batch_detail", args=[batch.pk]),
                what=f"{verb} {batch.reference}", button=verb.capitalize(),
            )  # fmt: skip
        return decide_batch(request, data)
    show_changes = (
        bool(decidable) and len(members) <= 10
    )  # each change reads AWS; beyond ten, on each request
    return render(
        request,
        "accessrequests/batch.html",
        {
            "batch": batch,
            "rows": [
                (m, change_for(m) if show_changes and m.status == RequestStatus.PENDING else None)
                for m in members
            ],
            "decidable": decidable,
            "form": form,
        },
    )
