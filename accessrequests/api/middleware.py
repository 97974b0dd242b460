"""Refuse oversized API bodies up front with 413 and a JSON body (Django would otherwise answer 400 in HTML)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse


class ApiBodyLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                return JsonResponse({"error": "Content-Length is not a number."}, status=400)
            if length > settings.GATEHOUSE_API_MAX_BODY:
                return JsonResponse(
                    {"error": f"The body is larger than {settings.GATEHOUSE_API_MAX_BODY:,} bytes."},
                    status=413,
                )
        return self.get_response(request)
