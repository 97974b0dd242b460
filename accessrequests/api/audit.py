"""The audit trail through the API (auditors and admins): filtered events, and a streamed export with the chain
hashes and its manifest, filtered by the same form as the web page. While the periodic verification finds the
trail broken, every answer carries ``X-Gatehouse-Audit-Integrity: broken at seq N``."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accessrequests.api import serializers as s
from accessrequests.api.base import ERRORS, GatehouseAPIView, page, strict_query
from accessrequests.audit import exports
from accessrequests.authz import permissions, selectors
from accessrequests.views.downloads import export_download, manifest_download
from accessrequests.views.forms import AuditFilterForm


def _auditors_only(request: Request) -> None:
    if permissions.read_audit_problem(request.user):
        raise PermissionDenied("The audit trail is for auditors and admins.")


AUDIT_FILTERS = [OpenApiParameter(name, OpenApiTypes.STR) for name in AuditFilterForm.base_fields]


def _audit_qs(request: Request):
    # Only the form's own fields, so that an unknown parameter is reported by the strict serializer instead.
    form = AuditFilterForm(
        {k: v for k, v in request.query_params.items() if k in AuditFilterForm.base_fields}
    )
    if not form.is_valid():
        raise ValidationError(form.errors.get_json_data())
    return form.filters(), selectors.audit_events(**form.filters())


def _flag_integrity(response):
    """A machine-readable red banner: clients that show these events should say they are not proven."""
    alert = selectors.audit_integrity_alert()
    if alert is not None:
        response["X-Gatehouse-Audit-Integrity"] = f"broken at seq {alert.broken_seq}"
    return response


class AuditEventListView(GatehouseAPIView):
    @extend_schema(
        parameters=[*AUDIT_FILTERS, s.PageIn],
        responses={200: s.AuditEventOut(many=True), **ERRORS},
        summary="Audit events, newest first (auditors and admins)",
    )
    def get(self, request: Request) -> Response:
        _auditors_only(request)
        query = strict_query(request, s.PageIn, elsewhere=AuditFilterForm.base_fields)
        _, qs = _audit_qs(request)
        return _flag_integrity(Response(s.AuditEventOut(page(query, qs.order_by("-seq")), many=True).data))


class AuditExportView(GatehouseAPIView):
    @extend_schema(
        # Not "format": DRF reads ?format= as a choice of its own renderer.
        parameters=[
            OpenApiParameter("file_format", OpenApiTypes.STR, enum=list(exports.FORMATS)),
            OpenApiParameter(
                "through_seq",
                OpenApiTypes.INT,
                description="Last sequence number to include (default: the newest); pass the same value to "
                "fetch the export and its manifest.",
            ),
            OpenApiParameter(
                "manifest", OpenApiTypes.STR, enum=["1"], description="1: the export's manifest instead"
            ),
            *AUDIT_FILTERS,
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            (200, "application/json"): OpenApiTypes.OBJECT,
            **ERRORS,
        },
        summary="Stream the filtered audit trail with its chain hashes, or its manifest",
    )
    def get(self, request: Request):
        _auditors_only(request)
        strict_query(
            request,
            s.StrictSerializer,
            elsewhere=(*AuditFilterForm.base_fields, "file_format", "through_seq", "manifest"),
        )
        fmt = request.query_params.get("file_format", "csv")
        if fmt not in exports.FORMATS:
            raise ValidationError({"file_format": [f"One of: {', '.join(exports.FORMATS)}."]})
        try:
            through = exports.parse_through_seq(request.query_params.get("through_seq"))
        except ValueError as exc:
            raise ValidationError({"through_seq": [str(exc)]}) from None
        filters, _ = _audit_qs(request)
        export = exports.plan(filters, fmt, through_seq=through)
        if request.query_params.get("manifest") == "1":
            return _flag_integrity(manifest_download(export))
        response = export_download(export, actor=request.user, via="api")
        response["X-Gatehouse-Through-Seq"] = str(export.through_seq)
        return _flag_integrity(response)

    def finalize_response(self, request, response, *args, **kwargs):
        # DRF must not try to render a stream or the manifest file
        if isinstance(response, StreamingHttpResponse) or (
            isinstance(response, HttpResponse) and "Content-Disposition" in response
        ):
            self.audit_call(request, response.status_code)
            return response
        return super().finalize_response(request, response, *args, **kwargs)
