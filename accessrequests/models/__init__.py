"""Gatehouse's models, split by subdomain."""

from accessrequests.models.audit import AppendOnlyError, AuditEvent
from accessrequests.models.catalog import (
    AwsAccount,
    Environment,
    IdentityCenter,
    PassableRole,
    PermissionSet,
    PermissionSetRisk,
    Pipeline,
)
from accessrequests.models.identity import ScimGroup, ScimUser
from accessrequests.models.notifications import Notification, NotificationChannel, NotificationStatus
from accessrequests.models.ops import AuditIntegrity, WorkerHeartbeat
from accessrequests.models.ownership import ManagedAssignment
from accessrequests.models.principals import IAM_KINDS, IC_KINDS, Principal, PrincipalKind
from accessrequests.models.requests import (
    ENDED_GRANT_STATUSES,
    GRANT_TRANSITIONS,
    IN_FLIGHT_GRANT_STATUSES,
    LIVE_GRANT_STATUSES,
    REQUEST_TRANSITIONS,
    AccessLevel,
    AccessRequest,
    ApprovalRule,
    ChatApproval,
    Decision,
    DecisionOutcome,
    Delivery,
    Grant,
    GrantEnding,
    GrantStatus,
    RequestBatch,
    RequestKind,
    RequestStatus,
    Source,
    TransitionError,
)
from accessrequests.models.slack import SlackMessage
from accessrequests.models.tokens import ApiToken, TokenScope

__all__ = [
    "ENDED_GRANT_STATUSES",
    "GRANT_TRANSITIONS",
    "IAM_KINDS",
    "IC_KINDS",
    "IN_FLIGHT_GRANT_STATUSES",
    "LIVE_GRANT_STATUSES",
    "REQUEST_TRANSITIONS",
    "AccessLevel",
    "AccessRequest",
    "ApiToken",
    "AppendOnlyError",
    "ApprovalRule",
    "AuditEvent",
    "AuditIntegrity",
    "AwsAccount",
    "ChatApproval",
    "Decision",
    "DecisionOutcome",
    "Delivery",
    "Environment",
    "Grant",
    "GrantEnding",
    "GrantStatus",
    "IdentityCenter",
    "ManagedAssignment",
    "Notification",
    "NotificationChannel",
    "NotificationStatus",
    "PassableRole",
    "PermissionSet",
    "PermissionSetRisk",
    "Pipeline",
    "Principal",
    "PrincipalKind",
    "RequestBatch",
    "RequestKind",
    "RequestStatus",
    "ScimGroup",
    "ScimUser",
    "SlackMessage",
    "Source",
    "TokenScope",
    "TransitionError",
    "WorkerHeartbeat",
]
