"""Authentication events into the audit trail: sign-in, failed sign-in, MFA enrolment and removal.

Failed sign-ins record the attempted login name (never the password) so brute force shows up in the log.
"""

from __future__ import annotations

from allauth.account.signals import user_logged_in
from allauth.mfa.signals import authentication_failed, authenticator_added, authenticator_removed
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver

from accessrequests import audit


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs) -> None:
    audit.record(action="auth.login", object_type="user", object_id=user.pk, actor=user, http_request=request)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs) -> None:
    attempted = str(
        credentials.get("username") or credentials.get("email") or credentials.get("login") or ""
    )[:150]
    audit.record(
        action="auth.login_failed",
        object_type="user",
        actor_label=f"anonymous ({attempted or 'no login given'})",
        after={"login": attempted},
        http_request=request,
    )


@receiver(authenticator_added)
def _mfa_added(sender, request, user, authenticator, **kwargs) -> None:
    audit.record(
        action="auth.mfa_enrolled",
        object_type="authenticator",
        object_id=authenticator.pk,
        actor=user,
        after={"type": authenticator.type},
        http_request=request,
    )


@receiver(authenticator_removed)
def _mfa_removed(sender, request, user, authenticator, **kwargs) -> None:
    audit.record(
        action="auth.mfa_removed",
        object_type="authenticator",
        object_id=authenticator.pk,
        actor=user,
        before={"type": authenticator.type},
        http_request=request,
    )


@receiver(authentication_failed)
def _mfa_failed(sender, request, user, authenticator, **kwargs) -> None:
    audit.record(
        action="auth.mfa_failed",
        object_type="authenticator",
        object_id=authenticator.pk,
        actor=user,
        http_request=request,
    )
