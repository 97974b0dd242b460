"""Authentication events into the audit trail: sign-in, failed sign-in, MFA enrolment and removal, password
changes and deactivations (whichever way they happen: allauth, the admin, ``manage.py changepassword``).

Failed sign-ins record the attempted login name (never the password) so brute force shows up in the log. A
password change or a deactivation also revokes the user's API tokens (they would be refused at their next use
anyway, see ``ApiToken.authenticate``; revoking says so on the tokens page and in the trail).
"""

from __future__ import annotations

from allauth.account.signals import user_logged_in
from allauth.mfa.signals import authentication_failed, authenticator_added, authenticator_removed
from django.conf import settings
from django.contrib.auth.signals import user_logged_in as django_logged_in
from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from accessrequests.audit import trail as audit


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs) -> None:
    audit.record(action="auth.login", object_type="user", object_id=user.pk, actor=user, http_request=request)


@receiver(django_logged_in)
def _remember_break_glass(sender, request, user, **kwargs) -> None:
    from accessrequests.authz.selectors import MAY_BREAK_GLASS, break_glass_rules_for

    if request is not None and hasattr(request, "session"):
        request.session[MAY_BREAK_GLASS] = break_glass_rules_for(user).exists()


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
    if authenticator.type == "totp" and request is not None:
        # Turning TOTP on takes a valid code: a second factor presented now, as good as the sign-in stage's, so
        # an approver who just enrolled can decide without typing another code at once.
        from allauth.account.internal.flows.login import record_authentication

        record_authentication(request, user, "mfa", id=authenticator.pk, type="totp", enrolled=True)
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


def _watched(update_fields) -> bool:
    return update_fields is None or bool({"password", "is_active"} & set(update_fields))


@receiver(pre_save, sender=settings.AUTH_USER_MODEL)
def _remember_credentials(sender, instance, update_fields=None, **kwargs) -> None:
    if instance.pk is None or not _watched(update_fields):
        return
    instance._gatehouse_before = sender.objects.filter(pk=instance.pk).values("password", "is_active").first()


@receiver(post_save, sender=settings.AUTH_USER_MODEL)
def _credentials_changed(sender, instance, created=False, update_fields=None, **kwargs) -> None:
    before = getattr(instance, "_gatehouse_before", None)
    instance._gatehouse_before = None
    if created or before is None:
        return
    from accessrequests.models import ApiToken
    from portal.middleware import current_http_request

    http_request = current_http_request()
    actor = getattr(http_request, "user", None)
    # Who did it when it was no portal user: the SCIM client sets this on the request it authenticated.
    actor_label = getattr(http_request, "gatehouse_actor_label", None)
    changes: list[tuple[str, dict[str, bool], dict[str, bool]]] = []
    if before["password"] != instance.password:
        changes.append(("auth.password_changed", {}, {}))
    if before["is_active"] and not instance.is_active:
        changes.append(("auth.user_deactivated", {"is_active": True}, {"is_active": False}))
    for action, old, new in changes:
        revoked = ApiToken.objects.filter(user=instance, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        audit.record(
            action=action,
            object_type="user",
            object_id=instance.pk,
            actor=actor,
            actor_label=actor_label,
            before=old or None,
            after={**new, "user": instance.get_username(), "api_tokens_revoked": revoked},
            http_request=http_request,
        )
    if before["is_active"] and not instance.is_active:
        # Sessions and the weight of pending decisions go too, whichever path deactivated the user.
        from accessrequests.identity.people import user_offboard

        user_offboard(
            user=instance,
            reason="user deactivated",
            actor=actor,
            actor_label=actor_label,
            http_request=http_request,
        )


@receiver(user_logged_in)
def _idp_roles(sender, request, user, sociallogin=None, **kwargs) -> None:
    """Roles follow the identity provider's groups at every OIDC sign-in (GATEHOUSE_OIDC_GROUP_ROLES)."""
    if sociallogin is None or sociallogin.account.provider != settings.OIDC_PROVIDER_ID:
        return
    from accessrequests.identity.people import user_roles_sync

    data = sociallogin.account.extra_data or {}
    claims = {**(data.get("id_token") or {}), **(data.get("userinfo") or {})}
    groups = claims.get(settings.GATEHOUSE_OIDC_GROUPS_CLAIM) or []
    if isinstance(groups, str):
        groups = [groups]
    user_roles_sync(user=user, idp_groups=groups, source="oidc", http_request=request)
