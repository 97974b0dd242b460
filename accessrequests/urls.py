from django.urls import path

import accessrequests.core.ids  # noqa: F401  (registers the <id:...> path converter)
from accessrequests.views import access_reviews as reviews
from accessrequests.views import (
    audit,
    batches,
    break_glass,
    catalog,
    dashboard,
    grants,
    home,
    requests,
    slack,
    step_up,
    tokens,
)
from accessrequests.views import decide as review

urlpatterns = [
    path("", home.home, name="home"),
    path("requests/", requests.my_requests, name="my_requests"),
    path("requests/new/", requests.new_request, name="new_request"),
    path("requests/paste/", requests.paste_error, name="paste_error"),
    path("requests/<id:pk>/", requests.request_detail, name="request_detail"),
    path("requests/<id:pk>/cancel/", requests.cancel_request, name="cancel_request"),
    path("requests/batch/<id:pk>/", batches.batch_detail, name="batch_detail"),
    path("catalog/search/", catalog.catalog_search, name="catalog_search"),
    path("review/", review.queue, name="queue"),
    path("continue/", step_up.continue_after_mfa, name="continue_after_mfa"),
    path("review/<id:pk>/", review.review, name="review"),
    path("grants/<id:pk>/revoke/", grants.revoke, name="grant_revoke"),
    path("grants/<id:pk>/retry/", grants.retry, name="grant_retry"),
    path("grants/<id:pk>/abandon/", grants.abandon, name="grant_abandon"),
    path("dashboard/", dashboard.dashboard_page, name="dashboard"),
    path("tokens/", tokens.tokens, name="tokens"),
    path("tokens/<id:pk>/revoke/", tokens.revoke_token, name="revoke_token"),
    path("audit/", audit.audit_log, name="audit_log"),
    path("audit/export.<str:fmt>", audit.audit_export, name="audit_export"),
    path("audit/access/", audit.access_report, name="access_report"),
    path("audit/access/export.<str:fmt>", audit.access_report_export, name="access_report_export"),
    path("access-reviews/", reviews.campaigns, name="review_campaigns"),
    path("access-reviews/start/", reviews.campaign_start, name="review_campaign_start"),
    path("access-reviews/<id:pk>/", reviews.campaign_detail, name="review_campaign"),
    path("access-reviews/<id:pk>/export.<str:fmt>", reviews.campaign_export, name="review_campaign_export"),
    path("access-reviews/items/<id:pk>/", reviews.item_decide, name="review_item_decide"),
    path(
        "access-reviews/items/<id:pk>/evidence/retry/",
        reviews.item_evidence_retry,
        name="review_item_evidence_retry",
    ),
    path("break-glass/", break_glass.break_glass_list, name="break_glass_list"),
    path("break-glass/new/", break_glass.break_glass_new, name="break_glass_new"),
    path("break-glass/<id:pk>/review/", break_glass.post_review, name="break_glass_review"),
    path("slack/interactions/", slack.interactions, name="slack_interactions"),
    path("slack/commands/", slack.commands, name="slack_commands"),
    path("slack/link/<str:token>/", slack.decision_link_view, name="slack_decision_link"),
]
