"""API views: parse JSON, call the same selectors and services as the web pages, answer JSON."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accessrequests import audit, exports, roles, selectors
from accessrequests.api import serializers as s
from accessrequests.forms import AuditFilterForm, RequestForm
from accessrequests.intake import parse_access_denied
from accessrequests.models import (
    LIVE_GRANT_STATUSES,
    AccessRequest,
    AwsAccount,
    Grant,
    PassableRole,
    PermissionSet,
    Pipeline,
    Principal,
    RequestKind,
    Source,
)
from accessrequests.resolve import resolve_denial
from accessrequests.services.requests import (
    RequestError,
    request_approve,
    request_cancel,
    request_deny,
    request_submit,
)
from accessrequests.views.review import has_mfa

ERRORS = {400: s.ErrorOut, 401: s.ErrorOut, 403: s.ErrorOut, 404: s.ErrorOut, 413: s.ErrorOut}
# The AWS troubleshooting guide's example: shown in the docs, and sent as-is by schemathesis's explicit phase.
GUIDE_ERROR = (
    "User: arn:aws:iam::123456789012:user/mateojackson is not authorized to perform: "
    "codepipeline:GetPipeline on resource: my-pipeline"
)


def _query(request: Request, serializer: type[s.StrictSerializer], *, elsewhere=()) -> dict[str, Any]:
    """Validate the query string like a body; `elsewhere` names parameters another validator reads.
    ?format= belongs to DRF's content negotiation."""
    params = {k: v for k, v in request.query_params.items() if k != "format" and k not in elsewhere}
    checked = serializer(data=params)
    checked.is_valid(raise_exception=True)
    return dict(checked.validated_data)


def _page(query: dict[str, Any], qs: QuerySet) -> QuerySet:
    return qs[query["offset"] : query["offset"] + query["limit"]]


# Every API view derives from this one: it audits every call under the caller's name (and token's name), and
# keeps auditors read-only. (A comment, not a docstring: the schema would show it as every operation's text.)
class GatehouseAPIView(APIView):
    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        if request.method not in ("GET", "HEAD", "OPTIONS") and roles.is_auditor(request.user):
            raise PermissionDenied("Auditors have read-only access.")

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


def _request_qs(user) -> QuerySet[AccessRequest]:
    return (
        selectors.requests_visible_to(user)
        .select_related("requester", "principal", "account", "rule", "grant")
        .prefetch_related("pipelines")
    )


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
            "explanation": None, "error": result.error, "region_choices": [], "proposed_request": None,
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
                if not resolution.error and not resolution.region_choices:
                    out["proposed_request"] = _proposal(resolution.initial)
        return Response(out)


# What a pasted message decides; sending one of these with `message` would be silently overridden, so it is refused.
FROM_MESSAGE = (
    "kind", "account", "principal", "principal_arn", "pipelines", "level", "actions", "stage", "action_name",
    "pass_role", "permission_set", "trusted_account_id", "trusted_principal_arn", "external_id",
)  # fmt: skip


def _principal_pk(payload: dict[str, Any]) -> int | None:
    """`principal` (id) or `principal_arn`; whether the caller may ask for it is the form's question."""
    pk = payload.get("principal")
    arn = payload.get("principal_arn")
    if arn:
        by_arn = Principal.objects.filter(external_id=arn, present=True).order_by("pk").first()
        if by_arn is None or (pk is not None and pk != by_arn.pk):
            raise ValidationError(
                {"principal_arn": ["No such principal (or it is not the one named by id)."]}
            )
        pk = by_arn.pk
    return pk


def _form_data(user, payload: dict[str, Any]) -> dict[str, Any]:
    """Translate the API's names (account ids, pipeline names, ARNs) into the web form's fields."""
    data: dict[str, Any] = {
        "kind": payload.get("kind", RequestKind.PIPELINE),
        "justification": payload["justification"],
        "ticket": payload.get("ticket", ""),
        "level": payload.get("level", ""),
        "actions": " ".join(payload.get("actions", [])),
        "stage": payload.get("stage", ""),
        "action_name": payload.get("action_name", ""),
        "trusted_account_id": payload.get("trusted_account_id", ""),
        "trusted_principal_arn": payload.get("trusted_principal_arn", ""),
        "external_id": payload.get("external_id", ""),
        "duration_hours": payload.get("duration_hours", 8),
        "permanent": payload.get("permanent", False),
        "source": Source.API,
        "pasted_text": payload.get("message", ""),
    }
    if "message" in payload:
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
        initial = resolution.initial
        data.update(
            kind=initial.get("kind"),
            account=initial["account"],
            principal=initial["principal"],
            level=initial.get("level", ""),
            actions=initial.get("actions", ""),
            stage=initial.get("stage", ""),
            action_name=initial.get("action_name", ""),
            source=Source.PASTED_ERROR,
        )
        if initial.get("pipelines"):
            data["pipelines"] = initial["pipelines"]
        if initial.get("pass_role"):
            data["pass_role"] = initial["pass_role"]
        return data
    account = AwsAccount.objects.filter(account_id=payload.get("account", ""), enabled=True).first()
    if account is None:
        raise ValidationError({"account": ["Name an enabled account by its 12-digit id."]})
    data["account"] = account.pk
    data["principal"] = _principal_pk(payload)
    names = payload.get("pipelines", [])
    pipelines = list(
        Pipeline.objects.filter(account=account, name__in=names, present=True).values_list("pk", "name")
    )
    missing = sorted(set(names) - {name for _, name in pipelines})
    if missing:
        raise ValidationError({"pipelines": [f"Not in account {account.account_id}: {', '.join(missing)}."]})
    data["pipelines"] = [pk for pk, _ in pipelines]
    if payload.get("pass_role"):
        role = PassableRole.objects.filter(account=account, arn=payload["pass_role"]).first()
        if role is None:
            raise ValidationError({"pass_role": ["No such role in this account."]})
        data["pass_role"] = role.pk
    if payload.get("permission_set"):
        permission_set = PermissionSet.objects.filter(
            arn=payload["permission_set"], portal_owned=False
        ).first()
        if permission_set is None:
            raise ValidationError({"permission_set": ["No such permission set."]})
        data["permission_set"] = permission_set.pk
    return data


def _file(request: Request, payload: dict[str, Any], *, extends: Grant | None = None) -> AccessRequest:
    form = RequestForm(_form_data(request.user, payload), user=request.user)
    if not form.is_valid():
        raise ValidationError(form.errors.get_json_data())
    draft = form.draft()
    draft.extends = extends
    return request_submit(requester=request.user, draft=draft, http_request=request._request)


class RequestListView(GatehouseAPIView):
    @extend_schema(
        parameters=[s.RequestFilterIn],
        responses={200: s.RequestOut(many=True), **ERRORS},
        summary="Requests you may see",
    )
    def get(self, request: Request) -> Response:
        query = _query(request, s.RequestFilterIn)
        qs = _request_qs(request.user).order_by("-created_at", "-id")
        for name in ("status", "kind"):
            if query.get(name):
                qs = qs.filter(**{name: query[name]})
        if query.get("account"):
            qs = qs.filter(account__account_id=query["account"])
        return Response(s.RequestOut(_page(query, qs), many=True).data)

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
        req = _file(request, payload.validated_data)
        return Response(
            s.RequestOut(_request_qs(request.user).get(pk=req.pk)).data, status=status.HTTP_201_CREATED
        )


class RequestDetailView(GatehouseAPIView):
    @extend_schema(responses={200: s.RequestOut, **ERRORS}, summary="One request")
    def get(self, request: Request, pk: int) -> Response:
        req = selectors.get_request_for_user(request.user, pk)
        return Response(s.RequestOut(_request_qs(request.user).get(pk=req.pk)).data)


class _DecisionView(GatehouseAPIView):
    decide = staticmethod(request_approve)

    @extend_schema(
        request=s.DecisionIn,
        responses={200: s.RequestOut, **ERRORS},
        examples=[
            OpenApiExample("With a comment", value={"comment": "ok for the release"}, request_only=True)
        ],
    )
    def post(self, request: Request, pk: int) -> Response:
        req = selectors.get_request_for_user(request.user, pk)
        if not roles.is_approver(request.user):
            raise PermissionDenied("Only approvers decide requests.")
        if not has_mfa(request.user):
            raise PermissionDenied(
                "Deciding on access needs two-factor authentication; set it up in the portal."
            )
        body = s.DecisionIn(data=request.data)
        body.is_valid(raise_exception=True)
        type(self).decide(
            request_id=req.pk,
            reviewer=request.user,
            comment=body.validated_data["comment"],
            http_request=request._request,
        )
        return Response(s.RequestOut(_request_qs(request.user).get(pk=req.pk)).data)


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
        return Response(s.RequestOut(_request_qs(request.user).get(pk=req.pk)).data)


def _grant_qs(user) -> QuerySet[Grant]:
    visible = selectors.requests_visible_to(user).values("pk")
    return Grant.objects.filter(request__in=visible).select_related("request", "principal", "account")


def _grant_for(user, pk: int) -> Grant:
    grant = _grant_qs(user).filter(pk=pk).first()
    if grant is None:
        raise NotFound("Not found.")
    return grant


class GrantListView(GatehouseAPIView):
    @extend_schema(
        parameters=[s.GrantFilterIn],
        responses={200: s.GrantOut(many=True), **ERRORS},
        summary="Grants you may see",
    )
    def get(self, request: Request) -> Response:
        query = _query(request, s.GrantFilterIn)
        qs = _grant_qs(request.user).order_by("-created_at", "-id")
        if query.get("status"):
            qs = qs.filter(status=query["status"])
        return Response(s.GrantOut(_page(query, qs), many=True).data)


class GrantRevokeView(GatehouseAPIView):
    @extend_schema(request=None, responses={200: s.GrantOut, **ERRORS}, summary="Revoke a grant now")
    def post(self, request: Request, pk: int) -> Response:
        from accessrequests.services import provisioning

        grant = _grant_for(request.user, pk)
        try:
            provisioning.grant_revoke(grant_id=grant.pk, actor=request.user)
        except provisioning.ProvisioningError as exc:
            # The service alone decides who may revoke; here its refusal is only sorted into "the grant is no
            # longer live" (a 400, like deciding a decided request) and "you may not" (403).
            grant.refresh_from_db()
            if grant.status not in LIVE_GRANT_STATUSES:
                raise ValidationError({"status": [str(exc)]}) from None
            raise PermissionDenied(str(exc)) from None
        return Response(s.GrantOut(_grant_for(request.user, pk)).data)


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
        grant = _grant_for(request.user, pk)
        body = s.ExtendIn(data=request.data)
        body.is_valid(raise_exception=True)
        old = grant.request
        if old.requester_id != request.user.pk:
            raise PermissionDenied("Only the requester can extend a grant.")
        if not grant.is_live:
            raise RequestError(
                f"This grant is {grant.get_status_display().lower()}; file a new request instead."
            )
        payload: dict[str, Any] = {
            "kind": old.kind,
            "account": old.account.account_id,
            "principal": old.principal_id,
            "pipelines": [p.name for p in old.pipelines.all()],
            "level": old.level,
            "actions": old.actions,
            "stage": old.stage,
            "action_name": old.action_name,
            "trusted_account_id": old.trusted_account_id,
            "trusted_principal_arn": old.trusted_principal_arn,
            "external_id": old.external_id,
            "ticket": old.ticket,
            "justification": body.validated_data["justification"],
            "duration_hours": body.validated_data["duration_hours"],
        }
        if old.pass_role:
            payload["pass_role"] = old.pass_role.arn
        if old.permission_set:
            payload["permission_set"] = old.permission_set.arn
        req = _file(request, payload, extends=grant)
        return Response(
            s.RequestOut(_request_qs(request.user).get(pk=req.pk)).data, status=status.HTTP_201_CREATED
        )


def _auditors_only(request: Request) -> None:
    if not (roles.is_auditor(request.user) or roles.is_admin(request.user)):
        raise PermissionDenied("The audit trail is for auditors and admins.")


AUDIT_FILTERS = [OpenApiParameter(name, OpenApiTypes.STR) for name in AuditFilterForm.base_fields]


def _audit_qs(request: Request):
    # Only the form's own fields, so that an unknown parameter is reported by the strict serializer instead.
    form = AuditFilterForm(
        {k: v for k, v in request.query_params.items() if k in AuditFilterForm.base_fields}
    )
    if not form.is_valid():
        raise ValidationError(form.errors.get_json_data())
    return form.filters(), selectors.audit_events(**form.filters())


class AuditEventListView(GatehouseAPIView):
    @extend_schema(
        parameters=[*AUDIT_FILTERS, s.PageIn],
        responses={200: s.AuditEventOut(many=True), **ERRORS},
        summary="Audit events, newest first (auditors and admins)",
    )
    def get(self, request: Request) -> Response:
        _auditors_only(request)
        query = _query(request, s.PageIn, elsewhere=AuditFilterForm.base_fields)
        _, qs = _audit_qs(request)
        return Response(s.AuditEventOut(_page(query, qs.order_by("-id")), many=True).data)


class AuditExportView(GatehouseAPIView):
    @extend_schema(
        # Not "format": DRF reads ?format= as a choice of its own renderer.
        parameters=[
            OpenApiParameter("file_format", OpenApiTypes.STR, enum=list(exports.FORMATS)),
            *AUDIT_FILTERS,
        ],
        responses={
            (200, "text/csv"): OpenApiTypes.STR,
            (200, "application/x-ndjson"): OpenApiTypes.STR,
            **ERRORS,
        },
        summary="Stream the filtered audit trail with its chain hashes",
    )
    def get(self, request: Request):
        _auditors_only(request)
        _query(request, s.StrictSerializer, elsewhere=(*AuditFilterForm.base_fields, "file_format"))
        fmt = request.query_params.get("file_format", "csv")
        if fmt not in exports.FORMATS:
            raise ValidationError({"file_format": [f"One of: {', '.join(exports.FORMATS)}."]})
        filters, qs = _audit_qs(request)
        audit.record(
            action="audit.exported",
            object_type="audit_export",
            actor=request.user,
            after={"format": fmt, "filters": {k: str(v) for k, v in filters.items()}, "via": "api"},
        )
        response = StreamingHttpResponse(exports.stream(qs, fmt), content_type=exports.FORMATS[fmt])
        response["Content-Disposition"] = f'attachment; filename="gatehouse-audit.{fmt}"'
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        if isinstance(response, StreamingHttpResponse):  # DRF must not try to render a stream
            self.audit_call(request, response.status_code)
            return response
        return super().finalize_response(request, response, *args, **kwargs)


def _catalog_view(model_qs, out, name: str, filter_account: bool = True):
    class CatalogView(GatehouseAPIView):
        @extend_schema(
            parameters=[s.AccountFilterIn] if filter_account else [],
            responses={200: out(many=True), **ERRORS},
            summary=f"Catalog: {name}",
            operation_id=f"catalog_{name.replace(' ', '_')}",
        )
        def get(self, request: Request) -> Response:
            query = _query(request, s.AccountFilterIn if filter_account else s.StrictSerializer)
            qs = model_qs()
            if query.get("account"):
                qs = qs.filter(account__account_id=query["account"])
            return Response(out(qs[:1000], many=True).data)

    return CatalogView


AccountsView = _catalog_view(lambda: AwsAccount.objects.filter(enabled=True), s.AccountOut, "accounts", False)
PipelinesView = _catalog_view(
    lambda: Pipeline.objects.filter(present=True).select_related("account"), s.PipelineOut, "pipelines"
)
RolesView = _catalog_view(
    lambda: PassableRole.objects.filter(present=True).select_related("account"), s.RoleOut, "roles"
)
PermissionSetsView = _catalog_view(
    lambda: PermissionSet.objects.filter(present=True, portal_owned=False),
    s.PermissionSetOut,
    "permission sets",
    False,
)
