"""Auditor pages: the filtered event log, its streamed exports, and the access report. Read-only."""

from __future__ import annotations

import functools
from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accessrequests import audit, exports, permissions, selectors
from accessrequests.forms import AccessReportForm, AuditFilterForm
from accessrequests.paging import paginate


def auditor_required(view):
    """Auditors and admins only; everyone else gets 404, as for any object they may not see."""

    @functools.wraps(view)
    @login_required
    @require_GET
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if permissions.read_audit_problem(request.user):
            raise Http404("No such page")
        return view(request, *args, **kwargs)

    return wrapper


def _filtered(request: HttpRequest):
    form = AuditFilterForm(request.GET or None)
    filters = form.filters() if form.is_valid() else {}
    return form, filters, selectors.audit_events(**filters)


@auditor_required
def audit_log(request: HttpRequest) -> HttpResponse:
    form, filters, qs = _filtered(request)
    page = paginate(qs.select_related("actor").order_by("-id"), request.GET.get("page"), 50)
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "accessrequests/audit_log.html",
        {"form": form, "page": page, "query": query.urlencode(), "filtered": bool(filters)},
        status=400 if form.is_bound and form.errors else 200,
    )


@auditor_required
def audit_export(request: HttpRequest, fmt: str) -> HttpResponse | StreamingHttpResponse:
    if fmt not in exports.FORMATS:
        raise Http404("No such format")
    form, filters, qs = _filtered(request)
    if form.is_bound and form.errors:
        return HttpResponse(
            "Fix the filters first: " + form.errors.as_text(), status=400, content_type="text/plain"
        )
    # The export itself is an event: who took what out of the system.
    audit.record(
        action="audit.exported",
        object_type="audit_export",
        actor=request.user,
        after={"format": fmt, "filters": {k: str(v) for k, v in filters.items()}},
        http_request=request,
    )
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(exports.stream(qs, fmt), content_type=exports.FORMATS[fmt])
    response["Content-Disposition"] = f'attachment; filename="gatehouse-audit-{stamp}.{fmt}"'
    response["X-Accel-Buffering"] = "no"  # let a proxy pass the stream through instead of buffering it
    return response


@auditor_required
def access_report(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    data = request.GET.copy() if "since" in request.GET else None
    form = AccessReportForm(data, initial={"since": now - timedelta(days=90), "until": now})
    grants = None
    if form.is_bound and form.is_valid():
        d = form.cleaned_data
        grants = list(
            selectors.access_report(
                since=d["since"],
                until=d["until"],
                account=d["account"],
                pipeline=d["pipeline"],
                principal=d["principal"],
            )[:500]
        )
    return render(
        request,
        "accessrequests/access_report.html",
        {"form": form, "grants": grants},
        status=400 if form.is_bound and form.errors else 200,
    )
