"""A server-rendered API reference built from the OpenAPI schema (no CDN-hosted Swagger UI: portals run offline)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET
from drf_spectacular.generators import SchemaGenerator

METHODS = ("get", "post", "put", "patch", "delete")


@require_GET
def docs(request: HttpRequest) -> HttpResponse:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    operations = [
        {"method": method.upper(), "path": path, "summary": op.get("summary") or op.get("operationId", "")}
        for path, item in schema["paths"].items()
        for method in METHODS
        if (op := item.get(method))
    ]
    return render(request, "accessrequests/api_docs.html", {"operations": operations, "info": schema["info"]})
