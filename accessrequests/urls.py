from django.urls import path

from accessrequests.views import audit, dashboard, grants, home, requests, review, tokens

urlpatterns = [
    path("", home.home, name="home"),
    path("requests/", requests.my_requests, name="my_requests"),
    path("requests/new/", requests.new_request, name="new_request"),
    path("requests/paste/", requests.paste_error, name="paste_error"),
    path("requests/<int:pk>/", requests.request_detail, name="request_detail"),
    path("requests/<int:pk>/cancel/", requests.cancel_request, name="cancel_request"),
    path("review/", review.queue, name="queue"),
    path("review/<int:pk>/", review.review, name="review"),
    path("grants/<int:pk>/revoke/", grants.revoke, name="grant_revoke"),
    path("grants/<int:pk>/retry/", grants.retry, name="grant_retry"),
    path("grants/<int:pk>/abandon/", grants.abandon, name="grant_abandon"),
    path("dashboard/", dashboard.dashboard_page, name="dashboard"),
    path("tokens/", tokens.tokens, name="tokens"),
    path("tokens/<int:pk>/revoke/", tokens.revoke_token, name="revoke_token"),
    path("audit/", audit.audit_log, name="audit_log"),
    path("audit/export.<str:fmt>", audit.audit_export, name="audit_export"),
    path("audit/access/", audit.access_report, name="access_report"),
    path("audit/access/export.<str:fmt>", audit.access_report_export, name="access_report_export"),
]
