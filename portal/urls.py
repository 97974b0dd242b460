from django.contrib import admin
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from portal.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Browsers ask for /favicon.ico on pages that name no icon (an API response, a file download): no 404.
    path(
        "favicon.ico",
        RedirectView.as_view(
            url=static("gatehouse/favicon.svg"), permanent=True, http_method_names=["get", "head"]
        ),
    ),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("accessrequests.api.urls")),
    path("admin/", admin.site.urls),
    path("", include("accessrequests.urls")),
]
