"""Requests through the API: read a pasted error, file (from fields or from the error), list, get, decide, cancel.
The body becomes a draft through the same builder as the web form's (``workflow.drafts.build_draft``) and the
request services decide: nothing here is a second copy of a rule."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response

from accessrequests.api import serializers as s
from accessrequests.api.base import ERRORS, GUIDE_ERROR, GatehouseAPIView, page, strict_query
from accessrequests.authz import permissions, selectors
from accessrequests.intake.parse import parse_access_denied
from accessrequests.intake.resolve import resolve_denial
from accessrequests.models import (
    AccessRequest,
    AwsAccount,
    Grant,
    PassableRole,
    Pipeline,
    Principal,
    RequestKind,
    Source,
    TokenScope,
)
from accessrequests.workflow.drafts import DraftError, DraftInput, build_draft
from accessrequests.workflow.requests import request_approve, request_cancel, request_deny, request_submit


def _as_shown(qs: QuerySet[AccessRequest]) -> QuerySet[AccessRequest]:
    return qs.select_related("requester", "principal", "account", "rule", "grant").prefetch_related(
        "pipelines"
    )


def request_qs(user) -> QuerySet[AccessRequest]:
    return _as_shown(selectors.requests_visible_to(user))


def shown(request_id: int) -> AccessRequest:
    """A request this call already found its caller may see (``selectors.get_request_for_user``, or filed by
    them a moment ago), read again as the API shows it: the answer after a change is the request as it is now.
    (Not the visibility query a second time: only an id the helper returned or a filing made comes here.)"""
    return _as_shown(AccessRequest.objects.all()).get(pk=request_id)


def _proposal(initial: dict[str, Any]) -> dict[str, Any]:
    account = AwsAccount.objects.get(pk=initial["account"])
    principal = Principal.objects.get(pk=initial["principal"])
    role = PassableRole.objects.filter(pk=initial["pass_role"]).first() if initial.get("pass_role") else None
    return {
        "kind": initial.get("kind", RequestKind.PIPELINE),
        "account": account.account_id,
        "principal": principal.pk,
        "principal_arn": principal.external_id,
        "level": initial.get("level", ""),
        "actions": [initial["actions"]] if initial.get("actions") else [],
        "pipelines": list(
            Pipeline.objects.filter(pk__in=initial.get("pipelines", [])).values_list("name", flat=True)
        ),
        "stage": initial.get("stage", ""),
        "action_name": initial.get("action_name", ""),
        "pass_role": role.arn if role else None,
    }


class IntakeView(GatehouseAPIView):
    @extend_schema(
        request=s.IntakeIn,
        examples=[OpenApiExample("The guide's error", value={"message": GUIDE_ERROR}, request_only=True)],
        responses={200: s.IntakeOut, **ERRORS},
        summary="Read a pasted AccessDenied message",
    )
    def post(self, request: Request) -> Response:
        data = s.IntakeIn(data=request.data)
        data.is_valid(raise_exception=True)
        result = parse_access_denied(data.validated_data["message"])
        out: dict[str, Any] = {
            "principal_arn": None, "account_id": None, "action": None, "resource": None, "fixable": False,
            "explanation": None, "error": result.error, "region_choices": [], "unmatched": [],
            "proposed_request": None,
        }  # fmt: skip
        denial = result.denial
        if denial is not None:
            out.update(
                principal_arn=denial.principal_arn,
                account_id=denial.account_id,
                action=denial.action,
                resource=denial.resource,
                fixable=denial.fixable,
                explanation=denial.explanation,
            )
            if denial.fixable:
                resolution = resolve_denial(denial, region=data.validated_data.get("region"))
                out["error"] = resolution.error
                out["region_choices"] = resolution.region_choices
                out["resource"] = resolution.resource
                out["unmatched"] = [{"what": what, "why": why} for what, why in resolution.unmatched]
                if not resolution.error and not resolution.region_choices:
                    initial = resolution.initial
                    # Said before filing, as the web preview does: an eligibility rule may leave the caller out.
                    problem = permissions.eligibility_problem(
                        request.user,
                        kind=initial.get("kind", RequestKind.PIPELINE),
                        account=AwsAccount.objects.get(pk=initial["account"]),
                    )
                    if problem:
                        out["error"] = problem
                    else:
                        out["proposed_request"] = _proposal(initial)
        return Response(out)


# What a pasted message decides; sending one of these with `message` would be silently overridden, so it is refused.
FROM_MESSAGE = (
    "kind", "account", "principal", "principal_arn", "pipelines", "level", "actions", "stage", "action_name",
    "pass_role", "permission_set", "trusted_account_id", "trusted_principal_arn", "external_id",
)  # fmt: skip


# The API's own name for a field of the builder's input.
API_FIELD = {"pipeline_names": "pipelines"}


def draft_input(payload: dict[str, Any]) -> DraftInput:
    """The body as the draft builder's input: from the fields, or from a pasted message (which decides them)."""
    common: dict[str, Any] = {
        "justification": payload["justification"],
        "ticket": payload.get("ticket", ""),
        "duration_hours": payload.get("duration_hours"),
        "permanent": payload.get("permanent", False),
    }
    if "message" not in payload:
        return DraftInput(
            account=payload.get("account", ""),
            kind=payload.get("kind", RequestKind.PIPELINE),
            principal=payload.get("principal"),
            principal_arn=payload.get("principal_arn", ""),
            pipeline_names=payload.get("pipelines", []),
            level=payload.get("level", ""),
            actions=payload.get("actions", []),
            stage=payload.get("stage", ""),
            action_name=payload.get("action_name", ""),
            pass_role=payload.get("pass_role") or "",
            permission_set=payload.get("permission_set", ""),
            trusted_account_id=payload.get("trusted_account_id", ""),
            trusted_principal_arn=payload.get("trusted_principal_arn", ""),
            external_id=payload.get("external_id", ""),
            source=Source.API,
            **common,
        )
    overridden = sorted(set(payload) & set(FROM_MESSAGE))
    if overridden:
        raise ValidationError(
            {
                name: ["Decided by the message; send it without this field, or file from fields."]
                for name in overridden
            }
        )
    result = parse_access_denied(payload["message"])
    if result.denial is None:
        raise ValidationError({"message": [result.error]})
    if not result.denial.fixable:
        raise ValidationError({"message": [result.denial.explanation]})
    resolution = resolve_denial(result.denial, region=payload.get("region"))
    if resolution.error:
        raise ValidationError({"message": [resolution.error]})
    if resolution.region_choices:
        raise ValidationError({"region": [f"Say which region: {', '.join(resolution.region_choices)}."]})
    if not resolution.complete:
        # The web form lets the requester choose what the message did not name; a call files nothing half-read.
        reasons = [f"{what} {why}" if what else why for what, why in resolution.unmatched]
        raise ValidationError(
            {"message": [*reasons, "File it from fields instead, naming the role as pass_role (its ARN)."]}
        )
    return DraftInput.from_resolution(
        resolution.initial, source=Source.PASTED_ERROR, pasted_text=payload["message"], **common
    )


def _detail(error: DraftError) -> dict[str, list[Any]]:
    """The builder's problems as the API has always answered them: by field, each with its code (or, for a name
    that matches nothing, the bare sentence)."""
    return {
        API_FIELD.get(name, name): [
            p.message if p.code is None else {"message": p.message, "code": p.code} for p in problems
        ]
        for name, problems in error.problems.items()
    }


def file_request(request: Request, payload: dict[str, Any], *, extends: Grant | None = None) -> AccessRequest:
    """File ``payload``; ``extends``: a grant whose extension rule the caller entered on this trip."""
    data = draft_input(payload)
    if extends is not None:
        data = replace(data, extends=extends.pk)
    try:
        draft = build_draft(user=request.user, data=data)
    except DraftError as exc:
        raise ValidationError(_detail(exc)) from None
    if extends is not None:
        draft.passed.add(("extend", request.user.pk, draft.account.pk))
    if payload.get("break_glass"):
        from accessrequests.workflow.break_glass import break_glass_submit

        if extends is not None:
            raise ValidationError(
                {"break_glass": ["An extension is decided by approvers; break-glass is not."]}
            )
        return break_glass_submit(
            requester=request.user,
            draft=draft,
            incident=payload.get("incident") or "",
            http_request=request._request,
            source=Source.API,
        )
    return request_submit(requester=request.user, draft=draft, http_request=request._request)


class RequestListView(GatehouseAPIView):
    @extend_schema(
        parameters=[s.RequestFilterIn],
        responses={200: s.RequestOut(many=True), **ERRORS},
        summary="Requests you may see",
    )
    def get(self, request: Request) -> Response:
        query = strict_query(request, s.RequestFilterIn)
        qs = request_qs(request.user).order_by("-created_at", "-id")
        for name in ("status", "kind"):
            if query.get(name):
                qs = qs.filter(**{name: query[name]})
        if query.get("account"):
            qs = qs.filter(account__account_id=query["account"])
        return Response(s.RequestOut(page(query, qs), many=True).data)

    @extend_schema(
        request=s.RequestIn,
        responses={201: s.RequestOut, **ERRORS},
        summary="File a request (from fields, or from a pasted error message)",
        examples=[
            OpenApiExample(
                "From a pasted error",
                value={"message": GUIDE_ERROR, "justification": "release 42 is stuck", "duration_hours": 4},
                request_only=True,
            ),
            OpenApiExample(
                "From fields",
                value={
                    "kind": "pipeline",
                    "account": "123456789012",
                    "principal_arn": "arn:aws:iam::123456789012:user/mateojackson",
                    "pipelines": ["my-pipeline"],
                    "level": "operator",
                    "justification": "deploy the hotfix",
                    "duration_hours": 2,
                },
                request_only=True,
            ),
        ],
    )
    def post(self, request: Request) -> Response:
        payload = s.RequestIn(data=request.data)
        payload.is_valid(raise_exception=True)
        req = file_request(request, payload.validated_data)
        return Response(s.RequestOut(shown(req.pk)).data, status=status.HTTP_201_CREATED)


class RequestDetailView(GatehouseAPIView):
    @extend_schema(responses={200: s.RequestOut, **ERRORS}, summary="One request")
    def get(self, request: Request, pk: int) -> Response:
        req = selectors.get_request_for_user(request.user, pk)
        return Response(s.RequestOut(shown(req.pk)).data)


class _DecisionView(GatehouseAPIView):
    decide = staticmethod(request_approve)
    write_scope = TokenScope.DECIDE

    @extend_schema(
        request=s.DecisionIn,
        responses={200: s.RequestOut, **ERRORS},
        examples=[
            OpenApiExample("With a comment", value={"comment": "ok for the release"}, request_only=True)
        ],
    )
    def post(self, request: Request, pk: int) -> Response:
        req = selectors.get_request_for_user(request.user, pk)
        body = s.DecisionIn(data=request.data)
        body.is_valid(raise_exception=True)
        # The code is the second factor, checked here and required again by the service (which refuses a
        # decision without a fresh factor of this reviewer): a bearer token alone never decides.
        factor = permissions.second_factor_from_code(request.user, body.validated_data["otp"])
        type(self).decide(
            request_id=req.pk,
            reviewer=request.user,
            second_factor=factor,
            comment=body.validated_data["comment"],
            http_request=request._request,
        )
        return Response(s.RequestOut(shown(req.pk)).data)


@extend_schema(summary="Approve (approvers of the request's rule, with TOTP set up)")
class ApproveView(_DecisionView):
    decide = staticmethod(request_approve)


@extend_schema(summary="Deny with a comment (approvers of the request's rule, with TOTP set up)")
class DenyView(_DecisionView):
    decide = staticmethod(request_deny)


class CancelView(GatehouseAPIView):
    @extend_schema(
        request=None, responses={200: s.RequestOut, **ERRORS}, summary="Withdraw your pending request"
    )
    def post(self, request: Request, pk: int) -> Response:
        req = selectors.get_request_for_user(request.user, pk)
        request_cancel(request_id=req.pk, requester=request.user, http_request=request._request)
        return Response(s.RequestOut(shown(req.pk)).data)
