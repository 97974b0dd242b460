"""An audit export as a download, for the audit log, a review campaign and the API alike: the manifest file, or the
stream with its name, after the export is recorded (``audit.export_events``)."""

from __future__ import annotations

from django.http import HttpResponse, StreamingHttpResponse

from accessrequests.audit import exports
from accessrequests.audit.export_events import export_recorded


def manifest_download(export: exports.Export) -> HttpResponse:
    response = HttpResponse(export.manifest_json(), content_type="application/json")
    response["Content-Disposition"] = f'attachment; filename="{export.manifest_filename}"'
    return response


def export_download(
    export: exports.Export, *, actor, http_request=None, via: str | None = None
) -> StreamingHttpResponse:
    """Record the export (who took what out of the system), then stream it."""
    export_recorded(
        actor=actor,
        kind="audit_export",
        fmt=export.fmt,
        filters=export.filters,
        through_seq=export.through_seq,
        via=via,
        http_request=http_request,
    )
    stream = StreamingHttpResponse(export.stream(), content_type=exports.FORMATS[export.fmt])
    stream["Content-Disposition"] = f'attachment; filename="{export.filename}"'
    return stream
