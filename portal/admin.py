"""The Django admin site, which (like every decision on access) requires two-factor authentication."""

from django.contrib import admin, messages
from django.shortcuts import redirect


def has_mfa(user) -> bool:
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


class GatehouseAdminSite(admin.AdminSite):
    site_header = "Gatehouse administration"
    site_title = "Gatehouse admin"
    index_title = "Catalog, principals and approval rules"

    def has_permission(self, request):
        return super().has_permission(request) and has_mfa(request.user)

    def login(self, request, extra_context=None):
        user = request.user
        if user.is_authenticated and user.is_active and user.is_staff and not has_mfa(user):
            messages.warning(request, "The admin pages need two-factor authentication. Set it up first.")
            return redirect("mfa_activate_totp")
        return super().login(request, extra_context)
