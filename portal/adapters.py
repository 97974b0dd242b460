"""allauth adapters: no open sign-up by default; confirming it is you means the second factor once you have one;
OIDC sign-in creates accounts when the IdP is configured, and refuses an ID token that does not carry back this
sign-in's nonce."""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.helpers import render_authentication_error
from django.conf import settings
from django.utils.translation import gettext_lazy as _

from portal.oidc import NonceOpenIDConnectProvider, nonce_problem


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request):
        return settings.GATEHOUSE_OPEN_SIGNUP

    def get_reauthentication_methods(self, user):
        """Only the second factor for someone who has one. The step-up before a decision (and before the admin)
        is allauth's reauthentication, and a decision counts only a second factor: offering the password there
        would take it, then ask again at the next button. Without a second factor, allauth's own methods remain
        (the password before setting one up)."""
        methods = super().get_reauthentication_methods(user)
        return [m for m in methods if m["id"].startswith("mfa_reauthenticate")] or methods


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request, sociallogin):
        # The identity provider decides who may sign in; accounts it vouches for are created on first login.
        return settings.OIDC_ENABLED and settings.GATEHOUSE_OIDC_SIGNUP

    def pre_social_login(self, request, sociallogin):
        provider = sociallogin.account.get_provider()
        if isinstance(provider, NonceOpenIDConnectProvider):
            problem = nonce_problem(sociallogin.state, sociallogin.account.extra_data)
            if problem:
                raise ImmediateHttpResponse(
                    render_authentication_error(request, provider, exception=PermissionError(problem))
                )
        super().pre_social_login(request, sociallogin)


class MFAAdapter(DefaultMFAAdapter):
    """allauth's two-factor pages, with a refused code explained: a code counts once (``authz/used_codes.py``), so
    a right code typed a second time is refused too, and "Incorrect code" alone sent people to check their clock."""

    error_messages = {
        **DefaultMFAAdapter.error_messages,
        "incorrect_code": _(
            "That code is not right, or it was used already (each code counts once). "
            "Type the code your authenticator shows now, or its next one."
        ),
    }
