from django.contrib import admin
from django.urls import include, path

from portal.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("accessrequests.api.urls")),
    path("scim/v2/", include("accessrequests.api.scim_urls")),
    path("admin/", admin.site.urls),
    path("", include("accessrequests.urls")),
]
