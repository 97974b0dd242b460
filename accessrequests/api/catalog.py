"""The catalog through the API, read-only: accounts, pipelines, passable roles and permission sets."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accessrequests.api import serializers as s
from accessrequests.api.base import ERRORS, GatehouseAPIView, page, strict_query
from accessrequests.models import AwsAccount, PassableRole, PermissionSet, Pipeline


def _catalog_view(model_qs, out, name: str, filter_account: bool = True):
    filters = s.AccountFilterIn if filter_account else s.PageIn

    class CatalogView(GatehouseAPIView):
        @extend_schema(
            parameters=[filters],
            responses={200: out(many=True), **ERRORS},
            summary=f"Catalog: {name}",
            operation_id=f"catalog_{name.replace(' ', '_')}",
        )
        def get(self, request: Request) -> Response:
            query = strict_query(request, filters)
            qs = model_qs()
            if query.get("account"):
                qs = qs.filter(account__account_id=query["account"])
            return Response(out(page(query, qs), many=True).data)

    return CatalogView


# Paged in a fixed order, so that limit/offset walk every row exactly once.
AccountsView = _catalog_view(
    # Accounts that left the organization are kept for revocation but are no longer offered.
    lambda: AwsAccount.objects.filter(enabled=True, present=True).order_by("account_id"),
    s.AccountOut,
    "accounts",
    False,
)
PipelinesView = _catalog_view(
    lambda: Pipeline.objects.filter(present=True, account__present=True)
    .select_related("account")
    .order_by("account__account_id", "region", "name", "pk"),
    s.PipelineOut,
    "pipelines",
)
RolesView = _catalog_view(
    lambda: PassableRole.objects.filter(present=True, account__present=True)
    .select_related("account")
    .order_by("arn"),
    s.RoleOut,
    "roles",
)
PermissionSetsView = _catalog_view(
    lambda: PermissionSet.objects.filter(present=True, portal_owned=False).order_by("name", "pk"),
    s.PermissionSetOut,
    "permission sets",
    False,
)
