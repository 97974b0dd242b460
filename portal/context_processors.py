"""Template context shared by every page."""

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from accessrequests.core import roles

# What to do next while setting up two-factor authentication, on the two allauth pages it takes (allauth asks
# for the password before it shows the QR code), for someone a page sent there to come back afterwards.
SETUP_STEPS = {
    "account_reauthenticate": (
        "Setting up two-factor authentication, step 1 of 2: confirm it is you with your password."
    ),
    "mfa_activate_totp": (
        "Setting up two-factor authentication, step 2 of 2: scan the QR code with your authenticator app (or type "
        "the secret into it), enter the 6-digit code it shows and press Activate. Then you go back to where you were."
    ),
}


def _two_factor_setup(request: HttpRequest, user) -> tuple[str, str]:
    """(the way back once TOTP is active, or the step to take while it is not yet) for a session a page sent
    to set it up (``accessrequests.views.step_up.AFTER_MFA``)."""
    from accessrequests.views.step_up import AFTER_MFA, has_mfa

    if not (hasattr(request, "session") and request.session.get(AFTER_MFA)):
        return "", ""
    if has_mfa(user):
        return "/continue/", ""
    match = getattr(request, "resolver_match", None)
    return "", SETUP_STEPS.get(match.url_name if match else "", "")


def _review_counts(request: HttpRequest, user):
    """What waits for the person, for the menu's counts: as the page read it (the review queue, the home page),
    else read when the menu shows it, for approvers (admins see counts on those pages: their other pages, such as
    the dashboard, stay as cheap as they were)."""
    from accessrequests.authz import inbox

    given = getattr(request, inbox.MENU_COUNTS, None)
    if given is not None:
        return given
    if roles.in_group(user, roles.APPROVERS):
        return SimpleLazyObject(lambda: inbox.counts_for(user))
    return None


def _may_break_glass(request: HttpRequest):
    """Called by the menu only for people who do not review break-glass (they see its uses instead)."""
    from accessrequests.authz.selectors import may_break_glass

    return lambda: may_break_glass(request)


def gatehouse(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    authenticated = user is not None and user.is_authenticated
    needs_mfa = bool(getattr(request, "needs_mfa", False))
    after_mfa, setup_step = _two_factor_setup(request, user) if authenticated and not needs_mfa else ("", "")
    return {
        "needs_mfa_banner": needs_mfa,
        "after_mfa_url": after_mfa,
        "mfa_setup_step": setup_step,
        "GATEHOUSE_VERSION": settings.GATEHOUSE_VERSION,
        "OIDC_ENABLED": settings.OIDC_ENABLED,
        "is_admin": authenticated and roles.is_admin(user),
        "is_approver": authenticated and roles.is_approver(user),
        "is_auditor": authenticated and roles.is_auditor(user),
        "review_counts": _review_counts(request, user) if authenticated else None,
        "may_break_glass": _may_break_glass(request) if authenticated else False,
    }
