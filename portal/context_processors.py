"""Template context shared by every page."""

from django.conf import settings
from django.http import HttpRequest

from accessrequests import roles


def _has_totp(user) -> bool:
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()


def gatehouse(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    authenticated = user is not None and user.is_authenticated
    needs_mfa = bool(getattr(request, "needs_mfa", False))
    after_mfa = ""
    if (
        authenticated
        and not needs_mfa
        and hasattr(request, "session")
        and request.session.get("gatehouse_after_mfa")
        and _has_totp(user)  # pages other than the approver's do not know: ask, or it says "set up" too early
    ):
        after_mfa = "/continue/"  # set up since: offer the way back (accessrequests.views.review)
    return {
        "needs_mfa_banner": needs_mfa,
        "after_mfa_url": after_mfa,
        "GATEHOUSE_VERSION": settings.GATEHOUSE_VERSION,
        "OIDC_ENABLED": settings.OIDC_ENABLED,
        "is_admin": authenticated and roles.is_admin(user),
        "is_approver": authenticated and roles.is_approver(user),
        "is_auditor": authenticated and roles.is_auditor(user),
    }
