from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.http import require_GET

from portal.health import healthz


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    # Resolved per request: in production the static file's hashed name is known only after collectstatic.
    return HttpResponsePermanentRedirect(static("gatehouse/favicon.svg"))


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    # Browsers ask for /favicon.ico on pages that name no icon (an API response, a file download): no 404.
    path("favicon.ico", favicon),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include("accessrequests.api.urls")),
    path("scim/v2/", include("accessrequests.api.scim_urls")),
    path("admin/", admin.site.urls),
    path("", include("accessrequests.urls")),
]
