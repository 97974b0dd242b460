"""Access reviews over the API: an open review's items (with the evidence of use), keep or revoke one, and ask IAM
again for evidence that could not be read."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from accessrequests.api import serializers as s
from accessrequests.api.base import ERRORS, GatehouseAPIView
from accessrequests.authz import permissions, selectors
from accessrequests.models import ReviewItem, TokenScope
from accessrequests.reviews import campaigns as reviews


def _out(item: ReviewItem) -> dict[str, Any]:
    return s.ReviewItemOut(
        {
            "id": item.pk,
            "campaign": item.campaign,
            "grant": item.grant,
            "rule": item.rule,
            "evidence_status": item.evidence_status,
            "evidence_error": str(item.evidence.get("error", "")) if item.evidence_status == "failed" else "",
            "last_used_at": item.last_used_at,
            "unused": item.is_unused(timezone.now()),
            "decision": item.decision,
            "reviewer": item.decided_by.get_username() if item.decided_by else None,
            "reason": item.reason,
            "decided_at": item.decided_at,
        }
    ).data


class ReviewItemsView(GatehouseAPIView):
    @extend_schema(
        responses={200: s.ReviewItemOut(many=True), **ERRORS}, summary="An access review's items you see"
    )
    def get(self, request: Request, pk: int) -> Response:
        campaign = selectors.get_campaign_for_user(request.user, pk)
        items = selectors.review_items_visible_to(request.user, campaign)[:500]
        return Response([_out(item) for item in items])


class ReviewItemDecideView(GatehouseAPIView):
    write_scope = TokenScope.DECIDE

    @extend_schema(
        request=s.ReviewDecisionIn,
        responses={200: s.ReviewItemOut, **ERRORS},
        summary="Keep or revoke one access review item, with a reason and your authenticator code",
    )
    def post(self, request: Request, pk: int) -> Response:
        item = selectors.get_review_item_for_user(request.user, pk)
        body = s.ReviewDecisionIn(data=request.data)
        body.is_valid(raise_exception=True)
        factor = permissions.second_factor_from_code(request.user, body.validated_data["otp"])
        done = reviews.review_item_decide(
            item_id=item.pk,
            reviewer=request.user,
            second_factor=factor,
            decision=body.validated_data["decision"],
            reason=body.validated_data["reason"],
            http_request=request._request,
        )
        return Response(_out(selectors.get_review_item_for_user(request.user, done.pk)))


class ReviewItemEvidenceRetryView(GatehouseAPIView):
    write_scope = TokenScope.DECIDE

    @extend_schema(
        request=None,
        responses={200: s.ReviewItemOut, **ERRORS},
        summary="Ask IAM again for an access review item's usage evidence after a failed read",
    )
    def post(self, request: Request, pk: int) -> Response:
        item = selectors.get_review_item_for_user(request.user, pk)
        reviews.review_item_evidence_retry(item_id=item.pk, actor=request.user, http_request=request._request)
        return Response(_out(selectors.get_review_item_for_user(request.user, item.pk)))
