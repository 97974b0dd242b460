"""Under /api/: refuse oversized bodies up front with 413, and make every error JSON, even those DRF never sees
(unknown paths, ids that do not match the URL pattern, unhandled exceptions)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

API_PREFIX = "/api/"
SCIM_PREFIX = "/scim/"


class ApiBodyLimitMiddleware:
    """Django would otherwise answer an oversized body with a 400 in HTML, and only once something reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith((API_PREFIX, SCIM_PREFIX)):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return JsonResponse({"error": "Content-Length is not a number.", "detail": None}, status=400)
            if length > settings.GATEHOUSE_API_MAX_BODY:
                return JsonResponse(
                    {
                        "error": f"The body is larger than {settings.GATEHOUSE_API_MAX_BODY:,} bytes.",
                        "detail": {"max_bytes": settings.GATEHOUSE_API_MAX_BODY},
                    },
                    status=413,
                )
        return self.get_response(request)


class ApiJsonErrorsMiddleware:
    """Replace Django's HTML error pages under /api/ with the API's error shape.

    DRF formats the errors its views raise; Django's URL resolver (404) and its handler for unhandled exceptions
    (500, already logged and signalled by the time it reaches here) answer in HTML, which an API client cannot read.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            request.path.startswith(API_PREFIX)
            and response.status_code >= 400
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            messages = {
                404: "No such API endpoint.",
                500: "The server failed to answer; the error is logged.",
            }
            ref = getattr(request, "reference", None)
            replacement = JsonResponse(
                {
                    "error": messages.get(response.status_code, f"{response.reason_phrase}."),
                    "detail": {"reference": ref} if ref else None,
                },
                status=response.status_code,
            )
            if response.has_header("Allow"):
                replacement["Allow"] = response["Allow"]
            return replacement
        return response
