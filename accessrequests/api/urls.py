from django.urls import path
from drf_spectacular.views import SpectacularAPIView

import accessrequests.core.ids  # noqa: F401  (registers the <id:...> path converter)
from accessrequests.api import audit, catalog, docs, grants, requests, reviews

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs/", docs.docs, name="api_docs"),
    path("intake/", requests.IntakeView.as_view(), name="api_intake"),
    path("requests/", requests.RequestListView.as_view(), name="api_requests"),
    path("requests/<id:pk>/", requests.RequestDetailView.as_view(), name="api_request"),
    path("requests/<id:pk>/approve/", requests.ApproveView.as_view(), name="api_request_approve"),
    path("requests/<id:pk>/deny/", requests.DenyView.as_view(), name="api_request_deny"),
    path("requests/<id:pk>/cancel/", requests.CancelView.as_view(), name="api_request_cancel"),
    path("grants/", grants.GrantListView.as_view(), name="api_grants"),
    path("grants/<id:pk>/revoke/", grants.GrantRevokeView.as_view(), name="api_grant_revoke"),
    path("grants/<id:pk>/extend/", grants.GrantExtendView.as_view(), name="api_grant_extend"),
    path("access-reviews/<id:pk>/items/", reviews.ReviewItemsView.as_view(), name="api_review_items"),
    path(
        "access-reviews/items/<id:pk>/decide/",
        reviews.ReviewItemDecideView.as_view(),
        name="api_review_item_decide",
    ),
    path(
        "access-reviews/items/<id:pk>/evidence/retry/",
        reviews.ReviewItemEvidenceRetryView.as_view(),
        name="api_review_item_evidence_retry",
    ),
    path("audit/events/", audit.AuditEventListView.as_view(), name="api_audit_events"),
    path("audit/export/", audit.AuditExportView.as_view(), name="api_audit_export"),
    path("catalog/accounts/", catalog.AccountsView.as_view(), name="api_accounts"),
    path("catalog/pipelines/", catalog.PipelinesView.as_view(), name="api_pipelines"),
    path("catalog/roles/", catalog.RolesView.as_view(), name="api_roles"),
    path("catalog/permission-sets/", catalog.PermissionSetsView.as_view(), name="api_permission_sets"),
]
