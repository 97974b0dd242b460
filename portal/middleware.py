"""A short reference for every web request, echoed in a response header and carried by every log line."""

from __future__ import annotations

import contextvars
import logging
import secrets
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest

_request_ref: contextvars.ContextVar[str] = contextvars.ContextVar("request_ref", default="-")
# The web request being served, for code that reacts to model signals (who changed a password, from where).
_http_request: contextvars.ContextVar[HttpRequest | None] = contextvars.ContextVar(
    "http_request", default=None
)


def current_http_request() -> HttpRequest | None:
    return _http_request.get()


def current_request_ref() -> str:
    return _request_ref.get()


def set_request_ref(ref: str) -> contextvars.Token[str]:
    """Used by Celery tasks to log under the access request's reference."""
    return _request_ref.set(ref)


class RequestReferenceMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        ref = secrets.token_hex(6)
        token = _request_ref.set(ref)
        request_token = _http_request.set(request)
        request.reference = ref  # type: ignore[attr-defined]
        try:
            response = self.get_response(request)
        finally:
            _http_request.reset(request_token)
            _request_ref.reset(token)
        response["X-Request-Ref"] = ref
        return response


class RequestReferenceFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_ref"):
            record.request_ref = _request_ref.get()
        return True


def form_removes_nul_bytes(view: Callable) -> Callable:
    """Mark a view whose form takes NUL bytes (and other hidden characters) out of what was typed and says so,
    keeping the rest on the page: ``RejectNulBytesMiddleware`` lets its form posts through."""
    view.form_removes_nul_bytes = True  # type: ignore[attr-defined]
    return view


class RejectNulBytesMiddleware:
    """A NUL byte is never part of real input, and PostgreSQL refuses it in text (a DataError, so a 500):
    a page's query string or form that carries one gets a plain 400 before any view runs, unless the view's form
    handles it (``form_removes_nul_bytes``)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            return self.get_response(request)  # the API validates every parameter itself and names the field
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", "").lower():
            return HttpResponseBadRequest("Bad request: the address contains a NUL byte.")
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view, args, kwargs) -> HttpResponse | None:
        if request.path.startswith("/api/") or getattr(view, "form_removes_nul_bytes", False):
            return None
        is_form = request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")
        if (
            request.method == "POST"
            and is_form
            and any("\x00" in value for _, values in request.POST.lists() for value in values)
        ):
            return HttpResponseBadRequest("Bad request: a form field contains a NUL byte.")
        return None
