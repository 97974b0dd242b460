"""Personal API tokens: named by their owner, shown once, stored only as a SHA-256 hash.

A token carries scopes (what it may do), an expiry, and a stamp of its user's credentials at issue: a password
change, a deactivation or the expiry kills it at its next use, whichever comes first.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable
from datetime import timedelta

from django.conf import settings
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

TOKEN_PREFIX = "gh_"  # noqa: S105 - a public marker that makes leaked tokens easy to scan for, not a secret
MAX_LIFETIME = timedelta(days=365)
# "Last used" is written at most once a minute per token (the tokens page shows it to the minute): a write on every
# call would cost each API call an UPDATE of the same row.
LAST_USED_PRECISION = timedelta(minutes=1)


class TokenScope(models.TextChoices):
    READ = "read", "Read: requests, grants, catalog (and the audit trail for auditors)"
    REQUEST = "request", "Request: file, cancel, extend and revoke your own access"
    DECIDE = "decide", "Decide: approve or deny (each decision still needs a fresh TOTP code)"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def credential_stamp(user) -> str:
    """Changes whenever the user's password does (it hashes the stored password hash, which is salted)."""
    return hashlib.sha256(f"gatehouse-token:{user.pk}:{user.password}".encode()).hexdigest()[:32]


class ApiToken(models.Model):
    """A bearer token `gh_<key>_<secret>` that acts as its user; `key` finds the row, the secret's hash proves it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100)
    key = models.CharField(max_length=16, unique=True)
    secret_hash = models.CharField(max_length=64)
    scopes = models.JSONField(default=list, help_text="TokenScope values this token may use.")
    credential_stamp = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "name"],
                condition=Q(revoked_at__isnull=True),
                name="%(app_label)s_%(class)s_live_name",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    def allows(self, scope: str) -> bool:
        return scope in self.scopes

    @classmethod
    def issue(cls, *, user, name: str, scopes: Iterable[str], lifetime: timedelta) -> tuple[ApiToken, str]:
        """Create a token; the returned plain value is never stored and cannot be shown again."""
        key = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        # A savepoint: a duplicate live name raises IntegrityError without breaking the caller's transaction.
        with transaction.atomic():
            token = cls.objects.create(
                user=user,
                name=name,
                key=key,
                secret_hash=_digest(secret),
                scopes=sorted(set(scopes)),
                credential_stamp=credential_stamp(user),
                expires_at=timezone.now() + min(lifetime, MAX_LIFETIME),
            )
        return token, f"{TOKEN_PREFIX}{key}_{secret}"

    @classmethod
    def authenticate(cls, raw: str) -> ApiToken | None:
        if not raw.startswith(TOKEN_PREFIX) or raw.count("_") < 2:
            return None
        key, _, secret = raw[len(TOKEN_PREFIX) :].partition("_")
        token = cls.objects.select_related("user").filter(key=key, revoked_at__isnull=True).first()
        if token is None or not hmac.compare_digest(token.secret_hash, _digest(secret)):
            return None
        now = timezone.now()
        if not token.user.is_active or token.expires_at <= now:
            return None
        if not hmac.compare_digest(token.credential_stamp, credential_stamp(token.user)):
            return None  # the password changed since the token was made
        if token.last_used_at is None or now - token.last_used_at >= LAST_USED_PRECISION:
            cls.objects.filter(pk=token.pk).update(last_used_at=now)
            token.last_used_at = now
        return token
