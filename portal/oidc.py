"""OpenID Connect sign-in: allauth's openid_connect provider, plus the nonce allauth does not send.

allauth already checks ``state`` (its stash in the session) and sends PKCE (``OAUTH_PKCE_ENABLED``); the ID token
it decodes is not bound to this browser's login attempt without a nonce. This provider puts a fresh random nonce
in every authorization request and keeps it in the same stashed state, and ``SocialAccountAdapter`` refuses a
login whose ID token does not carry it back (``nonce_problem``).
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from allauth.socialaccount.providers.openid_connect.provider import OpenIDConnectProvider


class NonceOpenIDConnectProvider(OpenIDConnectProvider):
    # allauth builds the provider's URLs from this package (the class lives here, the views do not).
    package = "allauth.socialaccount.providers.openid_connect"

    def redirect(self, request, process, next_url=None, data=None, **kwargs):
        nonce = secrets.token_urlsafe(32)
        auth_params = dict(kwargs.pop("auth_params", None) or self.get_auth_params())
        auth_params["nonce"] = nonce
        return super().redirect(
            request, process, next_url, data, auth_params=auth_params, nonce=nonce, **kwargs
        )


def nonce_problem(state: dict[str, Any] | None, extra_data: dict[str, Any] | None) -> str | None:
    """Why an OIDC login's ID token does not belong to the attempt this browser started, or None."""
    expected = (state or {}).get("nonce")
    id_token = (extra_data or {}).get("id_token") or {}
    got = id_token.get("nonce") if isinstance(id_token, dict) else None
    if not expected:
        return "This sign-in was not started here (no nonce was stashed); start it again."
    if not isinstance(got, str) or not hmac.compare_digest(got, expected):
        return "The identity provider's token does not answer this sign-in (nonce mismatch); start it again."
    return None
