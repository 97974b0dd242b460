"""Bearer-token authentication for the API (`Authorization: Bearer gh_<key>_<secret>`)."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from accessrequests.models import ApiToken


class TokenAuthentication(authentication.BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode(errors="replace")
        if not header:
            return None
        scheme, _, raw = header.partition(" ")
        if scheme.lower() != self.keyword.lower():  # auth schemes are case-insensitive (RFC 9110 §11.1)
            return None
        token = ApiToken.authenticate(raw.strip())
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked token.")
        request.api_token = token
        return token.user, token

    def authenticate_header(self, request) -> str:
        return self.keyword


class TokenScheme(OpenApiAuthenticationExtension):
    target_class = "accessrequests.api.auth.TokenAuthentication"
    name = "bearerAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "description": "A personal token from /tokens/ (gh_…)."}
