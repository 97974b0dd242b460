"""The audit trail through the API (auditors and admins): filtered events, and a streamed export with the chain
hashes, filtered by the same form as the web page."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accessrequests import audit, exports, permissions, selectors
from accessrequests.api import serializers as s
from accessrequests.api.base import ERRORS, GatehouseAPIView, page, strict_query
from accessrequests.forms import AuditFilterForm


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
        return Response(s.AuditEventOut(page(query, qs.order_by("-id")), many=True).data)


class AuditExportView(GatehouseAPIView):
    @extend_schema(
        # Not "format": DRF reads ?format= as a choice of its own renderer.
        parameters=[
            OpenApiParameter("file_format", OpenApiTypes.STR, enum=list(exports.FORMATS)),
            *AUDIT_FILTERS,
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            **ERRORS,
        },
        summary="Stream the filtered audit trail with its chain hashes",
    )
    def get(self, request: Request):
        _auditors_only(request)
        strict_query(request, s.StrictSerializer, elsewhere=(*AuditFilterForm.base_fields, "file_format"))
        fmt = request.query_params.get("file_format", "csv")
        if fmt not in exports.FORMATS:
            raise ValidationError({"file_format": [f"One of: {', '.join(exports.FORMATS)}."]})
        filters, qs = _audit_qs(request)
        audit.record(
            action="audit.exported",
            object_type="audit_export",
            actor=request.user,
            after={"format": fmt, "filters": {k: str(v) for k, v in filters.items()}, "via": "api"},
        )
        response = StreamingHttpResponse(exports.stream(qs, fmt), content_type=exports.FORMATS[fmt])
        response["Content-Disposition"] = f'attachment; filename="gatehouse-audit.{fmt}"'
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, StreamingHttpResponse):  # DRF must not try to render a stream
            self.audit_call(request, response.status_code)
            return response
        return super().finalize_response(request, response, *args, **kwargs)
