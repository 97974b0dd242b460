"""What every API view shares: one base view (audit of every call, auditors read-only), strict query strings,
paging, and the error responses every operation documents."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.views import APIView

from accessrequests.api import serializers as s
from accessrequests.audit import trail as audit
from accessrequests.core import roles
from accessrequests.models import ApiToken, TokenScope

ERRORS = {400: s.ErrorOut, 401: s.ErrorOut, 403: s.ErrorOut, 404: s.ErrorOut, 413: s.ErrorOut}
# The AWS troubleshooting guide's example: shown in the docs, and sent as-is by schemathesis's explicit phase.
GUIDE_ERROR = (
    "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
    "codepipeline:GetPipeline on resource: my-pipeline"
)


def strict_query(request: Request, serializer: type[s.StrictSerializer], *, elsewhere=()) -> dict[str, Any]:
    """Validate the query string like a body; `elsewhere` names parameters another validator reads.
    ?format= belongs to DRF's content negotiation."""
    params = {k: v for k, v in request.query_params.items() if k != "format" and k not in elsewhere}
    checked = serializer(data=params)
    checked.is_valid(raise_exception=True)
    return dict(checked.validated_data)


def page(query: dict[str, Any], qs: QuerySet) -> QuerySet:
    return qs[query["offset"] : query["offset"] + query["limit"]]


# Every API view derives from this one: it audits every call under the caller's name (and token's name), and
# keeps auditors read-only. (A comment, not a docstring: the schema would show it as every operation's text.)
# A token may call a view only with the scope the view names for the method (reads need "read", writes
# "request" unless the view says otherwise); a session (the browser) is not limited by scopes.
class GatehouseAPIView(APIView):
    write_scope: str = TokenScope.REQUEST

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method not in ("GET", "HEAD", "OPTIONS") and roles.is_auditor(request.user):
            raise PermissionDenied("Auditors have read-only access.")
        token = request.auth if isinstance(request.auth, ApiToken) else None
        if token is not None:
            needed = TokenScope.READ if request.method in ("GET", "HEAD", "OPTIONS") else self.write_scope
            if not token.allows(needed):
                raise PermissionDenied(
                    f"This token has no “{needed}” scope; make one that has it at /tokens/."
                )

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        self.audit_call(request, response.status_code)
        return response

    @staticmethod
    def audit_call(request: Request, status_code: int) -> None:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return  # refused before anyone was identified: there is no one to name
        token = getattr(request, "api_token", None)
        label = f"{user.get_username()} (token {token.name})" if token else f"{user.get_username()} (session)"
        audit.record(
            action=f"api.{request.method.lower()}",
            object_type="api",
            object_id=request.path[:64],
            actor=user,
            actor_label=label,
            after={"status": status_code},
            http_request=request._request,
        )
