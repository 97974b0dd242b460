from django.urls import path
from drf_spectacular.views import SpectacularAPIView

from accessrequests.api import docs, views

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="api_schema"),
    path("docs/", docs.docs, name="api_docs"),
    path("intake/", views.IntakeView.as_view(), name="api_intake"),
    path("requests/", views.RequestListView.as_view(), name="api_requests"),
    path("requests/<int:pk>/", views.RequestDetailView.as_view(), name="api_request"),
    path("requests/<int:pk>/approve/", views.ApproveView.as_view(), name="api_request_approve"),
    path("requests/<int:pk>/deny/", views.DenyView.as_view(), name="api_request_deny"),
    path("requests/<int:pk>/cancel/", views.CancelView.as_view(), name="api_request_cancel"),
    path("grants/", views.GrantListView.as_view(), name="api_grants"),
    path("grants/<int:pk>/revoke/", views.GrantRevokeView.as_view(), name="api_grant_revoke"),
    path("grants/<int:pk>/extend/", views.GrantExtendView.as_view(), name="api_grant_extend"),
    path("audit/events/", views.AuditEventListView.as_view(), name="api_audit_events"),
    path("audit/export/", views.AuditExportView.as_view(), name="api_audit_export"),
    path("catalog/accounts/", views.AccountsView.as_view(), name="api_accounts"),
    path("catalog/pipelines/", views.PipelinesView.as_view(), name="api_pipelines"),
    path("catalog/roles/", views.RolesView.as_view(), name="api_roles"),
    path("catalog/permission-sets/", views.PermissionSetsView.as_view(), name="api_permission_sets"),
]
