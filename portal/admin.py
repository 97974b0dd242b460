"""The Django admin site: signed in only through allauth (its MFA stage, rate limits and audit events), and
open only to a session that presented a second factor.

Django's own admin login checks a password alone, keeps no rate limit and sends no allauth signal, so it would
be a side door past everything allauth enforces. ``/admin/login/`` therefore *is* allauth's login view: the same
form, the same throttling of failed attempts, the same MFA stage, the same ``auth.login`` event.
"""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib import admin, messages
from django.shortcuts import redirect
from django.urls import reverse


def has_mfa(user) -> bool:
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def session_has_second_factor(request) -> bool:
    """Whether this session's sign-in (or a reauthentication in it) included a second factor."""
    from allauth.account.authentication import get_authentication_records

    return any(r.get("method") == "mfa" for r in get_authentication_records(request, request.user))


class GatehouseAdminSite(admin.AdminSite):
    site_header = "Gatehouse administration"
    site_title = "Gatehouse admin"
    index_title = "Catalog, principals and approval rules"

    def has_permission(self, request):
        return (
            super().has_permission(request) and has_mfa(request.user) and session_has_second_factor(request)
        )

    index_template = "admin/gatehouse_index.html"

    def get_urls(self):
        from django.urls import path

        return [path("doctor/", self.admin_view(self.doctor_view), name="doctor"), *super().get_urls()]

    def doctor_view(self, request):
        """Run ``manage.py doctor``'s checks now and show each one: status, what it found, how to fix it. Staff
        only, as every admin page; it reads and changes nothing, and its result is what /healthz then shows."""
        from django.template.response import TemplateResponse

        from accessrequests import doctor
        from accessrequests.doctor import report

        result = doctor.run(doctor.select(), doctor.Context())
        report.remember(result)
        context = {
            **self.each_context(request),
            "title": "Doctor",
            "report": result,
            "summary": report.summary(result),
        }
        return TemplateResponse(request, "admin/doctor.html", context)

    def login(self, request, extra_context=None):
        from allauth.account.views import login as allauth_login

        user = request.user
        if user.is_authenticated and user.is_active and user.is_staff:
            if not has_mfa(user):
                messages.warning(request, "The admin pages need two-factor authentication. Set it up first.")
                return redirect("mfa_activate_totp")
            if not session_has_second_factor(request):
                # Signed in some other way (say, before TOTP was set up): confirm the second factor now.
                messages.info(request, "Confirm with your authenticator code to open the admin pages.")
                query = urlencode({"next": request.GET.get("next") or reverse("admin:index")})
                return redirect(f"{reverse('mfa_reauthenticate')}?{query}")
        if request.method == "GET" and "next" not in request.GET:
            query = urlencode({"next": reverse("admin:index")})
            return redirect(f"{request.path}?{query}")
        return allauth_login(request)
