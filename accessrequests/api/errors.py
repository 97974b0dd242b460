"""Every API error is JSON: {"error": "<one sentence>", "detail": <field errors or null>}."""

from __future__ import annotations

from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_handler

from accessrequests.authz.permissions import NotAllowed
from accessrequests.reviews.campaigns import ReviewError
from accessrequests.workflow.requests import RequestError


def exception_handler(exc, context):
    if isinstance(exc, RequestError | ReviewError):
        return Response({"error": str(exc), "detail": None}, status=status.HTTP_400_BAD_REQUEST)
    if isinstance(exc, NotAllowed):
        return Response({"error": str(exc), "detail": None}, status=status.HTTP_403_FORBIDDEN)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound("Not found.")
    response = drf_handler(exc, context)
    if response is None:
        return None
    data = response.data
    if isinstance(exc, exceptions.ValidationError):
        response.data = {"error": "The request body is not valid.", "detail": data}
    else:
        message = data.get("detail") if isinstance(data, dict) else data
        response.data = {"error": str(message), "detail": None}
    return response
