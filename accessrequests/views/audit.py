"""Auditor pages: the filtered event log, its streamed exports with their manifests, and the access report.
Read-only. Every page shows a red banner while the periodic verification finds the trail broken."""

from __future__ import annotations

import functools
from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from accessrequests.audit import access_report as report
from accessrequests.audit import exports
from accessrequests.audit.export_events import export_recorded
from accessrequests.authz import permissions, selectors
from accessrequests.core.paging import paginate
from accessrequests.models import AuditEvent
from accessrequests.views.downloads import export_download, manifest_download
from accessrequests.views.forms import AccessReportForm, AuditFilterForm


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
    """The filter form and the events it selects. A filter with an error selects nothing (and says why): listing
    everything under a filter that did not apply would look like an answer."""
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return form, {}, AuditEvent.objects.none()
    filters = form.filters() if form.is_bound else {}
    return form, filters, selectors.audit_events(**filters)


def _bad_request(message: str) -> HttpResponse:
    return HttpResponse(message, status=400, content_type="text/plain; charset=utf-8")


@auditor_required
def audit_log(request: HttpRequest) -> HttpResponse:
    form, filters, qs = _filtered(request)
    page = paginate(qs.select_related("actor").order_by("-seq"), request.GET.get("page"), 50)
    query = request.GET.copy()
    query.pop("page", None)
    query.pop("through_seq", None)
    # Export links carry the tail as it is now, so the file and its manifest describe the same events.
    query["through_seq"] = str(exports.tail_seq())
    return render(
        request,
        "accessrequests/audit_log.html",
        {
            "form": form,
            "page": page,
            "query": query.urlencode(),
            "filtered": bool(filters),
            "integrity": selectors.audit_integrity_alert(),
        },
        status=400 if form.is_bound and form.errors else 200,
    )


@auditor_required
def audit_export(request: HttpRequest, fmt: str) -> HttpResponse | StreamingHttpResponse:
    if fmt not in exports.FORMATS:
        raise Http404("No such format")
    form, filters, _ = _filtered(request)
    if form.is_bound and form.errors:
        return _bad_request("Fix the filters first: " + form.errors.as_text())
    try:
        through = exports.parse_through_seq(request.GET.get("through_seq"))
    except ValueError as exc:
        return _bad_request(str(exc))
    export = exports.plan(filters, fmt, through_seq=through)
    if request.GET.get("manifest") == "1":
        return manifest_download(export)
    stream = export_download(export, actor=request.user, http_request=request)
    manifest_query = request.GET.copy()
    manifest_query["through_seq"] = str(export.through_seq)
    manifest_query["manifest"] = "1"
    stream["Link"] = f'<{request.path}?{manifest_query.urlencode()}>; rel="describedby"'
    stream["X-Accel-Buffering"] = "no"  # let a proxy pass the stream through instead of buffering it
    return stream


def _report_form(request: HttpRequest) -> AccessReportForm:
    now = timezone.now()
    data = request.GET.copy() if "since" in request.GET else None
    return AccessReportForm(data, initial={"since": now - timedelta(days=90), "until": now})


@auditor_required
def access_report(request: HttpRequest) -> HttpResponse:
    form = _report_form(request)
    rows = None
    if form.is_bound and form.is_valid():
        rows = report.report(**form.cleaned_data)[: report.MAX_ROWS_ON_PAGE]
    return render(
        request,
        "accessrequests/access_report.html",
        {
            "form": form,
            "rows": rows,
            "query": request.GET.urlencode(),
            "integrity": selectors.audit_integrity_alert(),
        },
        status=400 if form.is_bound and form.errors else 200,
    )


@auditor_required
def access_report_export(request: HttpRequest, fmt: str) -> HttpResponse:
    if fmt not in report.FORMATS:
        raise Http404("No such format")
    form = _report_form(request)
    if not form.is_bound:
        return _bad_request(
            "Choose the period first: since and until (e.g. ?since=2026-01-01&until=2026-04-01)."
        )
    if not form.is_valid():
        return _bad_request("Fix the filters first: " + form.errors.as_text())
    rows = report.report(**form.cleaned_data)
    export_recorded(
        actor=request.user,
        kind="access_report",
        fmt=fmt,
        filters={k: str(v) for k, v in form.cleaned_data.items() if v},
        rows=len(rows),
        http_request=request,
    )
    response = HttpResponse(report.render(rows, fmt), content_type=report.FORMATS[fmt])
    stamp = timezone.now().strftime("%Y%m%dT%H%M%SZ")
    response["Content-Disposition"] = f'attachment; filename="gatehouse-access-report-{stamp}.{fmt}"'
    return response
