"""Grants through the API: list what you may see, revoke now (the provisioning service decides who may), and
extend (a new request that continues the grant)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accessrequests.api import serializers as s
from accessrequests.api.base import ERRORS, GatehouseAPIView, page, strict_query
from accessrequests.api.requests import file_request, shown
from accessrequests.authz import selectors
from accessrequests.authz.permissions import NotAllowed
from accessrequests.models import LIVE_GRANT_STATUSES, RequestKind
from accessrequests.workflow.requests import check_extendable, extension_fields


class GrantListView(GatehouseAPIView):
    @extend_schema(
        parameters=[s.GrantFilterIn],
        responses={200: s.GrantOut(many=True), **ERRORS},
        summary="Grants you may see",
    )
    def get(self, request: Request) -> Response:
        query = strict_query(request, s.GrantFilterIn)
        qs = selectors.grants_visible_to(request.user).order_by("-created_at", "-id")
        if query.get("status"):
            qs = qs.filter(status=query["status"])
        return Response(s.GrantOut(page(query, qs), many=True).data)


class GrantRevokeView(GatehouseAPIView):
    @extend_schema(request=None, responses={200: s.GrantOut, **ERRORS}, summary="Revoke a grant now")
    def post(self, request: Request, pk: int) -> Response:
        from accessrequests.provisioning import engine as provisioning

        grant = selectors.get_grant_for_user(request.user, pk)
        try:
            provisioning.grant_revoke(grant_id=grant.pk, actor=request.user)
        except (provisioning.ProvisioningError, NotAllowed) as exc:
            # The service alone decides who may revoke; here its refusal is only sorted into "the grant is no
            # longer live" (a 400, like deciding a decided request) and "you may not" (403).
            grant.refresh_from_db()
            if grant.status not in LIVE_GRANT_STATUSES:
                raise ValidationError({"status": [str(exc)]}) from None
            raise PermissionDenied(str(exc)) from None
        return Response(s.GrantOut(selectors.get_grant_for_user(request.user, pk)).data)


class GrantExtendView(GatehouseAPIView):
    @extend_schema(
        request=s.ExtendIn,
        responses={201: s.RequestOut, **ERRORS},
        summary="Ask to extend a grant (a new request that continues it without a gap)",
        examples=[
            OpenApiExample(
                "Four more hours",
                value={"justification": "the release slipped", "duration_hours": 4},
                request_only=True,
            )
        ],
    )
    def post(self, request: Request, pk: int) -> Response:
        grant = selectors.get_grant_for_user(request.user, pk)
        body = s.ExtendIn(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            check_extendable(grant, request.user)
        except NotAllowed as exc:
            # Sorted like revoke: a grant that is no longer live is a 400 (file anew), anything else a 403.
            if grant.status not in LIVE_GRANT_STATUSES and grant.request.requester_id == request.user.pk:
                raise ValidationError({"status": [str(exc)]}) from None
            raise
        same = extension_fields(grant)
        payload: dict[str, Any] = {
            **same,
            "account": same["account"].account_id,
            "principal": same["principal"].pk,
            "pipelines": [p.name for p in same["pipelines"]],
            "justification": body.validated_data["justification"],
            "duration_hours": body.validated_data["duration_hours"],
        }
        for name in ("pass_role", "permission_set"):
            payload.pop(name)
            if same[name] is not None:
                payload[name] = same[name].arn
        if grant.request.kind == RequestKind.CROSS_ACCOUNT:
            del payload["principal"]  # its outside party is who receives it
        req = file_request(request, payload, extends=grant)
        return Response(s.RequestOut(shown(req.pk)).data, status=status.HTTP_201_CREATED)
