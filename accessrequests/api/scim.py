"""SCIM 2.0 at /scim/v2/ (RFC 7643/7644): Users and Groups for the identity provider's provisioning client.

A small DRF implementation rather than django-scim2: that library keeps its SCIM attributes on the user model
itself (a custom AUTH_USER_MODEL), and Gatehouse runs on Django's own User with history pointing at it. Here the
SCIM resource is a row beside the user (``ScimUser``); the views parse and render, ``identity.scim`` writes.

Authentication is one bearer token, GATEHOUSE_SCIM_TOKEN, that opens SCIM and nothing else (personal API tokens do
not open SCIM, and the SCIM token is no API token). Errors are SCIM error objects, never HTML.
"""

from __future__ import annotations

import hmac
import re
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.db.models import QuerySet
from django.urls import reverse
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from accessrequests.api.parsers import SafeJSONParser
from accessrequests.authz import permissions
from accessrequests.identity import scim
from accessrequests.identity.scim import ScimError
from accessrequests.models import ScimGroup, ScimUser

ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
MAX_COUNT = 200


class ScimTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        expected = settings.GATEHOUSE_SCIM_TOKEN
        header = get_authorization_header(request).decode(errors="replace")
        scheme, _, raw = header.partition(" ")
        if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(raw.strip(), expected):
            raise exceptions.AuthenticationFailed("A valid SCIM bearer token is required.")
        request._request.gatehouse_actor_label = "scim (identity provider)"
        return AnonymousUser(), permissions.IdentityProvider()

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="scim"'


class IsIdentityProvider(BasePermission):
    def has_permission(self, request, view) -> bool:
        return permissions.provision_problem(request.auth) is None


class ScimJSONParser(SafeJSONParser):
    media_type = "application/scim+json"


class ScimJSONRenderer(JSONRenderer):
    media_type = "application/scim+json"


def _error(status: int, detail: str, scim_type: str = "") -> Response:
    body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(status), "detail": detail}
    if scim_type:
        body["scimType"] = scim_type
    return Response(body, status=status)


def _scim_exceptions(exc, context):
    if isinstance(exc, ScimError):
        return _error(exc.status, exc.detail, exc.scim_type)
    if isinstance(exc, permissions.NotAllowed):
        return _error(403, str(exc))
    if isinstance(exc, exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else "The request is not valid SCIM."
        response = _error(exc.status_code, str(detail))
        if isinstance(exc, exceptions.AuthenticationFailed | exceptions.NotAuthenticated):
            response["WWW-Authenticate"] = 'Bearer realm="scim"'
        return response
    return None


class ScimView(APIView):
    authentication_classes = [ScimTokenAuthentication]
    permission_classes = [IsIdentityProvider]
    parser_classes = [ScimJSONParser, SafeJSONParser]
    renderer_classes = [ScimJSONRenderer, JSONRenderer]
    schema = None  # not part of the portal's OpenAPI document: SCIM's own schema is RFC 7643

    def get_exception_handler(self):
        return _scim_exceptions

    def permission_denied(self, request, message=None, code=None):
        if request.auth is None:
            raise exceptions.NotAuthenticated("A valid SCIM bearer token is required.")
        raise exceptions.PermissionDenied(message)


# --- rendering -----------------------------------------------------------------------------------------


def _when(value) -> str:
    return value.isoformat().replace("+00:00", "Z")


def user_resource(request, scim_user: ScimUser) -> dict[str, Any]:
    user = scim_user.user
    resource: dict[str, Any] = {
        "schemas": [scim.USER_SCHEMA],
        "id": str(scim_user.scim_id),
        "userName": scim_user.user_name,
        "name": {"givenName": user.first_name, "familyName": user.last_name},
        "displayName": scim_user.display_name or user.get_full_name() or scim_user.user_name,
        "active": user.is_active,
        "emails": [{"value": user.email, "type": "work", "primary": True}] if user.email else [],
        "groups": [{"value": str(g.scim_id), "display": g.display_name} for g in user.scim_groups.all()],
        "meta": {
            "resourceType": "User",
            "created": _when(scim_user.created_at),
            "lastModified": _when(scim_user.updated_at),
            "location": request.build_absolute_uri(reverse("scim_user", args=[scim_user.scim_id])),
        },
    }
    if scim_user.external_id:
        resource["externalId"] = scim_user.external_id
    return resource


def group_resource(request, group: ScimGroup, *, members: bool = True) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "schemas": [scim.GROUP_SCHEMA],
        "id": str(group.scim_id),
        "displayName": group.display_name,
        "meta": {
            "resourceType": "Group",
            "created": _when(group.created_at),
            "lastModified": _when(group.updated_at),
            "location": request.build_absolute_uri(reverse("scim_group", args=[group.scim_id])),
        },
    }
    if members:
        live = ScimUser.objects.filter(user__in=group.members.all(), deleted_at__isnull=True)
        resource["members"] = [{"value": str(s.scim_id), "display": s.user_name} for s in live]
    if group.external_id:
        resource["externalId"] = group.external_id
    return resource


_FILTER = re.compile(r'^\s*([A-Za-z][\w.]*)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)


def _filtered(qs: QuerySet, raw: str | None, fields: dict[str, str]) -> QuerySet:
    """The one filter identity providers send before creating: ``<attribute> eq "<value>"``."""
    if not raw:
        return qs
    match = _FILTER.match(raw)
    if not match or match.group(1).lower() not in fields:
        raise ScimError(
            400,
            "Filter with one of " + ", ".join(f'{name} eq "..."' for name in sorted(fields.values())) + ".",
            "invalidFilter",
        )
    value = match.group(2).replace('\\"', '"').replace("\\\\", "\\")
    return qs.filter(**{fields[match.group(1).lower()] + "__iexact": value})


def _page(request, qs: QuerySet, render) -> Response:
    try:
        start = max(1, int(request.query_params.get("startIndex", 1)))
        count = min(MAX_COUNT, max(0, int(request.query_params.get("count", 100))))
    except ValueError:
        raise ScimError(400, "startIndex and count are numbers.", "invalidValue") from None
    if start > 10**9:
        raise ScimError(400, "startIndex is out of range.", "invalidValue")
    total = qs.count()
    items = list(qs[start - 1 : start - 1 + count])
    return Response(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": len(items),
            "Resources": [render(item) for item in items],
        }
    )


def _body(request) -> Any:
    return request.data


# --- Users ---------------------------------------------------------------------------------------------


class Users(ScimView):
    def get(self, request):
        qs = (
            ScimUser.objects.filter(deleted_at__isnull=True)
            .select_related("user")
            .prefetch_related("user__scim_groups")
        )
        qs = _filtered(
            qs, request.query_params.get("filter"), {"username": "user_name", "externalid": "external_id"}
        )
        return _page(request, qs.order_by("created_at", "id"), lambda s: user_resource(request, s))

    def post(self, request):
        created = scim.scim_user_create(
            agent=request.auth, fields=scim.user_fields(_body(request)), http_request=request._request
        )
        return Response(user_resource(request, created), status=201)


class User(ScimView):
    def get(self, request, scim_id):
        return Response(user_resource(request, scim._live_user(scim_id)))

    def put(self, request, scim_id):
        fields = scim.user_fields(_body(request))
        updated = scim.scim_user_update(
            agent=request.auth, scim_id=scim_id, fields=fields, http_request=request._request
        )
        return Response(user_resource(request, updated))

    def patch(self, request, scim_id):
        current = scim.fields_of(scim._live_user(scim_id))
        fields = scim.patched_user_fields(current, _body(request))
        updated = scim.scim_user_update(
            agent=request.auth, scim_id=scim_id, fields=fields, http_request=request._request
        )
        return Response(user_resource(request, updated))

    def delete(self, request, scim_id):
        scim.scim_user_delete(agent=request.auth, scim_id=scim_id, http_request=request._request)
        return Response(status=204)


# --- Groups --------------------------------------------------------------------------------------------


def _with_members(request) -> bool:
    excluded = (request.query_params.get("excludedAttributes") or "").lower()
    return "members" not in {a.strip() for a in excluded.split(",")}


class Groups(ScimView):
    def get(self, request):
        qs = _filtered(
            ScimGroup.objects.all(),
            request.query_params.get("filter"),
            {"displayname": "display_name", "externalid": "external_id"},
        )
        members = _with_members(request)
        return _page(
            request, qs.order_by("display_name"), lambda g: group_resource(request, g, members=members)
        )

    def post(self, request):
        change = scim.group_change(None, _body(request), patch=False)
        group = scim.scim_group_create(agent=request.auth, change=change, http_request=request._request)
        return Response(group_resource(request, group), status=201)


class Group(ScimView):
    def get(self, request, scim_id):
        return Response(group_resource(request, scim._live_group(scim_id), members=_with_members(request)))

    def put(self, request, scim_id):
        group = scim.scim_group_update(
            agent=request.auth,
            scim_id=scim_id,
            payload=_body(request),
            patch=False,
            http_request=request._request,
        )
        return Response(group_resource(request, group))

    def patch(self, request, scim_id):
        scim.scim_group_update(
            agent=request.auth,
            scim_id=scim_id,
            payload=_body(request),
            patch=True,
            http_request=request._request,
        )
        return Response(status=204)

    def delete(self, request, scim_id):
        scim.scim_group_delete(agent=request.auth, scim_id=scim_id, http_request=request._request)
        return Response(status=204)


# --- discovery -----------------------------------------------------------------------------------------


class ServiceProviderConfig(ScimView):
    def get(self, request):
        return Response(
            {
                "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
                "documentationUri": request.build_absolute_uri("/api/v1/docs/"),
                "patch": {"supported": True},
                "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
                "filter": {"supported": True, "maxResults": MAX_COUNT},
                "changePassword": {"supported": False},
                "sort": {"supported": False},
                "etag": {"supported": False},
                "authenticationSchemes": [
                    {
                        "type": "oauthbearertoken",
                        "name": "Bearer token",
                        "description": "The token in GATEHOUSE_SCIM_TOKEN, sent as Authorization: Bearer <token>.",
                        "primary": True,
                    }
                ],
            }
        )


class ResourceTypes(ScimView):
    def get(self, request):
        types = [
            {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:ResourceType"], "id": name, "name": name,
             "endpoint": f"/{name}s", "schema": schema}
            for name, schema in (("User", scim.USER_SCHEMA), ("Group", scim.GROUP_SCHEMA))
        ]  # fmt: skip
        return Response({"schemas": [LIST_SCHEMA], "totalResults": 2, "Resources": types})
