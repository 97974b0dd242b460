"""The admin dashboard: what waits, what is live, what is stuck, and how fast decisions come."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accessrequests import dashboard
from accessrequests.authz import permissions, selectors


@login_required
@require_GET
def dashboard_page(request: HttpRequest) -> HttpResponse:
    if permissions.read_audit_problem(request.user):
        raise Http404("No such page")
    context = dashboard.figures()
    context["can_act"] = permissions.operate_problem(request.user) is None
    context["integrity"] = selectors.audit_integrity_alert()
    return render(request, "accessrequests/dashboard.html", context)
