"""API shapes. Inputs refuse unknown fields; outputs are read-only views of the models."""

from __future__ import annotations

from rest_framework import serializers

from accessrequests.intake.parse import MAX_MESSAGE_CHARS
from accessrequests.models import (
    AccessLevel,
    AccessRequest,
    AuditEvent,
    AwsAccount,
    Grant,
    GrantStatus,
    PassableRole,
    PermissionSet,
    Pipeline,
    RequestKind,
    RequestStatus,
)

ACCOUNT_ID = (
    r"^[0-9]{12}$"  # [0-9], not \d: the pattern is also the schema's, and \d matches other scripts' digits
)


class StrictSerializer(serializers.Serializer):
    """Unknown fields are an error, not silently ignored: a typo must not file a different request."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError({"non_field_errors": ["Send a JSON object."]})
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class PageIn(StrictSerializer):
    """Query parameters are validated like bodies: a typo or a NUL byte is a 400, never a silent or failed query."""

    limit = serializers.IntegerField(required=False, min_value=1, max_value=100, default=50)
    # Bounded because databases refuse an OFFSET beyond 64 bits (a 500 on PostgreSQL and SQLite alike).
    offset = serializers.IntegerField(required=False, min_value=0, max_value=10**9, default=0)


class RequestFilterIn(PageIn):
    status = serializers.ChoiceField(choices=RequestStatus.choices, required=False)
    kind = serializers.ChoiceField(choices=RequestKind.choices, required=False)
    account = serializers.RegexField(ACCOUNT_ID, required=False, help_text="12-digit account id")


class GrantFilterIn(PageIn):
    status = serializers.ChoiceField(choices=GrantStatus.choices, required=False)


class AccountFilterIn(PageIn):
    account = serializers.RegexField(ACCOUNT_ID, required=False, help_text="12-digit account id")


class IntakeIn(StrictSerializer):
    message = serializers.CharField(max_length=MAX_MESSAGE_CHARS, trim_whitespace=False)
    region = serializers.CharField(
        required=False, max_length=32, help_text="When region_choices came back: the pipeline's region."
    )


class ProposedRequest(serializers.Serializer):
    kind = serializers.CharField()
    account = serializers.CharField(help_text="12-digit account id")
    principal = serializers.IntegerField()
    principal_arn = serializers.CharField()
    level = serializers.CharField(allow_blank=True)
    actions = serializers.ListField(child=serializers.CharField())
    pipelines = serializers.ListField(child=serializers.CharField())
    stage = serializers.CharField(allow_blank=True)
    action_name = serializers.CharField(allow_blank=True)
    pass_role = serializers.CharField(allow_null=True)


class Unmatched(serializers.Serializer):
    what = serializers.CharField(
        allow_null=True, help_text="What the message named, when the sentence does not"
    )
    why = serializers.CharField(help_text="Why it was not matched, and what to do")


class IntakeOut(serializers.Serializer):
    principal_arn = serializers.CharField(allow_null=True)
    account_id = serializers.CharField(allow_null=True)
    action = serializers.CharField(allow_null=True)
    resource = serializers.CharField(allow_null=True)
    fixable = serializers.BooleanField()
    explanation = serializers.CharField(allow_null=True)
    error = serializers.CharField(allow_null=True)
    region_choices = serializers.ListField(child=serializers.CharField())
    unmatched = Unmatched(many=True, help_text="What the message named that the catalog does not match")
    proposed_request = ProposedRequest(allow_null=True)


class RequestIn(StrictSerializer):
    message = serializers.CharField(
        required=False,
        max_length=MAX_MESSAGE_CHARS,
        help_text="A pasted AccessDenied message: fills the rest.",
    )
    region = serializers.CharField(
        required=False, max_length=32, help_text="With message: which region's pipeline."
    )
    kind = serializers.ChoiceField(choices=RequestKind.choices, required=False)
    account = serializers.RegexField(ACCOUNT_ID, required=False, help_text="12-digit account id")
    principal = serializers.IntegerField(
        required=False, min_value=1, help_text="Principal id (or principal_arn); none for cross_account"
    )
    principal_arn = serializers.CharField(
        required=False,
        max_length=2048,
        help_text="Who receives access, by ARN (or principal); none for cross_account, whose outside party "
        "(trusted_account_id or trusted_principal_arn) receives it",
    )
    pipelines = serializers.ListField(
        child=serializers.CharField(max_length=100), required=False, max_length=50
    )
    level = serializers.ChoiceField(choices=AccessLevel.choices, required=False, allow_blank=True)
    actions = serializers.ListField(
        child=serializers.CharField(max_length=128), required=False, max_length=100
    )
    stage = serializers.CharField(required=False, max_length=100, allow_blank=True)
    action_name = serializers.CharField(required=False, max_length=100, allow_blank=True)
    pass_role = serializers.CharField(required=False, allow_null=True, max_length=2048, help_text="Role ARN")
    permission_set = serializers.CharField(required=False, max_length=2048, help_text="Permission set ARN")
    trusted_account_id = serializers.RegexField(ACCOUNT_ID, required=False)
    trusted_principal_arn = serializers.CharField(required=False, max_length=2048)
    external_id = serializers.CharField(required=False, max_length=1224)
    justification = serializers.CharField(max_length=2000)
    ticket = serializers.CharField(required=False, max_length=100, allow_blank=True)
    duration_hours = serializers.IntegerField(required=False, min_value=1, max_value=24 * 365)
    permanent = serializers.BooleanField(required=False, default=False)
    break_glass = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Apply at once with no approver, for an incident (only for people the rule names; at most its "
        "break-glass hours; announced to approvers, admins and auditors; reviewed afterwards).",
    )
    incident = serializers.CharField(
        required=False,
        max_length=100,
        allow_blank=True,
        help_text="With break_glass: the incident reference.",
    )


class DecisionIn(StrictSerializer):
    comment = serializers.CharField(required=False, max_length=2000, allow_blank=True, default="")
    otp = serializers.CharField(
        required=False,
        max_length=10,
        allow_blank=True,
        default="",
        help_text="A current code from your authenticator app: every decision needs a fresh second factor.",
    )


class ExtendIn(StrictSerializer):
    justification = serializers.CharField(max_length=2000)
    duration_hours = serializers.IntegerField(min_value=1, max_value=24 * 365)


class GrantOut(serializers.ModelSerializer):
    request = serializers.IntegerField(source="request_id")
    reference = serializers.CharField(source="request.reference")
    principal_arn = serializers.CharField(source="principal.external_id")
    account_id = serializers.CharField(source="account.account_id")

    class Meta:
        model = Grant
        fields = [
            "id", "request", "reference", "principal_arn", "account_id", "delivery", "status", "statements",
            "attempts", "last_error", "details", "starts_at", "expires_at", "applied_at", "revoked_at",
        ]  # fmt: skip


class RequestOut(serializers.ModelSerializer):
    reference = serializers.CharField()
    requester = serializers.CharField(source="requester.username")
    principal_arn = serializers.CharField(source="principal.external_id")
    account_id = serializers.CharField(source="account.account_id")
    pipelines = serializers.SerializerMethodField()
    rule = serializers.CharField(source="rule.name")
    grant_status = serializers.SerializerMethodField()

    class Meta:
        model = AccessRequest
        fields = [
            "id", "reference", "status", "kind", "level", "actions", "requester", "principal_arn", "on_behalf",
            "account_id", "pipelines", "stage", "action_name", "statements", "justification", "ticket",
            "starts_at", "duration_hours", "ends_at", "delivery", "source", "rule", "approvals_required",
            "created_at", "decided_at", "grant_status", "break_glass", "incident",
        ]  # fmt: skip

    def get_pipelines(self, obj) -> list[str]:
        return [p.name for p in obj.pipelines.all()]

    def get_grant_status(self, obj) -> str | None:
        grant = getattr(obj, "grant", None)
        return grant.status if grant is not None else None


class AuditEventOut(serializers.ModelSerializer):
    class Meta:
        model = AuditEvent
        fields = [
            "id", "seq", "created_at", "actor_label", "action", "object_type", "object_id", "request_id", "principal_id",
            "account_id", "before", "after", "aws_request_ids", "ip", "prev_hash", "hash",
        ]  # fmt: skip


class AccountOut(serializers.ModelSerializer):
    class Meta:
        model = AwsAccount
        fields = ["account_id", "name", "environment", "enabled"]


class PipelineOut(serializers.ModelSerializer):
    account_id = serializers.CharField(source="account.account_id")

    class Meta:
        model = Pipeline
        fields = ["name", "region", "account_id", "arn", "stages"]


class RoleOut(serializers.ModelSerializer):
    account_id = serializers.CharField(source="account.account_id")

    class Meta:
        model = PassableRole
        fields = ["arn", "name", "account_id", "trusts_codepipeline", "sensitive"]


class PermissionSetOut(serializers.ModelSerializer):
    class Meta:
        model = PermissionSet
        fields = ["arn", "name", "description"]


class ErrorOut(serializers.Serializer):
    error = serializers.CharField()
    detail = serializers.JSONField(allow_null=True)


class ReviewItemOut(serializers.Serializer):
    id = serializers.IntegerField()
    campaign = serializers.CharField(source="campaign.reference")
    request = serializers.CharField(source="grant.request.reference")
    principal_arn = serializers.CharField(source="grant.principal.external_id")
    account_id = serializers.CharField(source="grant.account.account_id")
    rule = serializers.CharField(source="rule.name")
    evidence_status = serializers.CharField()
    evidence_error = serializers.CharField(
        help_text="Why the usage evidence could not be read (evidence_status 'failed'), else empty."
    )
    last_used_at = serializers.DateTimeField(allow_null=True)
    unused = serializers.BooleanField(help_text="Not used in the campaign's N days: revoke suggested.")
    decision = serializers.CharField()
    reviewer = serializers.CharField(allow_null=True)
    reason = serializers.CharField()
    decided_at = serializers.DateTimeField(allow_null=True)


class ReviewDecisionIn(StrictSerializer):
    decision = serializers.ChoiceField(choices=[("keep", "Keep"), ("revoke", "Revoke")])
    reason = serializers.CharField(max_length=2000)
    otp = serializers.CharField(
        required=False,
        max_length=10,
        allow_blank=True,
        default="",
        help_text="A current code from your authenticator app: every keep or revoke needs a fresh second factor.",
    )
