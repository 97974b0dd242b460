"""Gatehouse's models, split by subdomain."""

from accessrequests.models.audit import AppendOnlyError, AuditEvent
from accessrequests.models.catalog import (
    AwsAccount,
    Environment,
    IdentityCenter,
    PassableRole,
    PermissionSet,
    Pipeline,
)
from accessrequests.models.notifications import Notification, NotificationChannel, NotificationStatus
from accessrequests.models.ops import AuditIntegrity, WorkerHeartbeat
from accessrequests.models.principals import IAM_KINDS, IC_KINDS, Principal, PrincipalKind
from accessrequests.models.requests import (
    IN_FLIGHT_GRANT_STATUSES,
    LIVE_GRANT_STATUSES,
    AccessLevel,
    AccessRequest,
    ApprovalRule,
    Decision,
    DecisionOutcome,
    Delivery,
    Grant,
    GrantStatus,
    RequestKind,
    RequestStatus,
    Source,
)
from accessrequests.models.tokens import ApiToken

__all__ = [
    "IAM_KINDS",
    "IC_KINDS",
    "IN_FLIGHT_GRANT_STATUSES",
    "LIVE_GRANT_STATUSES",
    "AccessLevel",
    "AccessRequest",
    "ApiToken",
    "AppendOnlyError",
    "ApprovalRule",
    "AuditEvent",
    "AuditIntegrity",
    "AwsAccount",
    "Decision",
    "DecisionOutcome",
    "Delivery",
    "Environment",
    "Grant",
    "GrantStatus",
    "IdentityCenter",
    "Notification",
    "NotificationChannel",
    "NotificationStatus",
    "PassableRole",
    "PermissionSet",
    "Pipeline",
    "Principal",
    "PrincipalKind",
    "RequestKind",
    "RequestStatus",
    "Source",
    "WorkerHeartbeat",
]
