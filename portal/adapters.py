"""allauth adapters: no open sign-up by default; OIDC sign-in creates accounts when the IdP is configured."""

from allauth.account.adapter import DefaultAccountAdapter
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from django.conf import settings


class AccountAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request):
        return settings.GATEHOUSE_OPEN_SIGNUP


class SocialAccountAdapter(DefaultSocialAccountAdapter):
    def is_open_for_signup(self, request, sociallogin):
        # The identity provider decides who may sign in; accounts it vouches for are created on first login.
        return settings.OIDC_ENABLED and settings.GATEHOUSE_OIDC_SIGNUP
