"""TOTP codes already used, so that a code works once wherever it is typed (the API, the web's step-up, sign-in).

A code stays valid for every step of the tolerance window, so its use is remembered for that long. The record is
kept in the database rather than the shared cache: a replay check must not depend on Redis answering (a decision
during a Redis restart is checked, not refused), and a cache may evict a key it was told to keep.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models


class UsedTotpCode(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    code = models.CharField(max_length=16)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "code"], name="%(app_label)s_usedtotpcode_once")
        ]

    def __str__(self) -> str:
        return f"a code of user {self.user_id}, remembered until {self.expires_at:%H:%M:%S}"
