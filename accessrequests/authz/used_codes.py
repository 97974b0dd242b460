"""A TOTP code counts once: its use is recorded in the database for as long as it stays valid.

allauth checks codes for sign-in and the web's step-up and remembers used ones in the cache; the API checks codes
for decisions. Both go through ``mark_used`` (``install`` points allauth's check at it), so a code used in one
place is refused in every other, and the check works while Redis restarts. Two processes marking the same code at
once: the unique constraint lets one insert win; the other waits for it and is refused.
"""

from __future__ import annotations

from datetime import timedelta

from allauth.core.internal.cryptokit import normalize_user_code
from allauth.mfa import app_settings
from django.db import connection
from django.utils import timezone

from accessrequests.models import UsedTotpCode


def window() -> timedelta:
    """How long a code stays valid: every step of the tolerance allauth accepts around the current one."""
    return timedelta(seconds=app_settings.TOTP_PERIOD * (2 * app_settings.TOTP_TOLERANCE + 1))


def mark_used(user_id: int, code: str) -> bool:
    """True when this is the code's first use within its window (and it is now recorded), False for a replay.

    One statement: the record is made, or an expired record of the same code is renewed; a record still in its
    window is left as it is and nothing comes back. (Expired records of other codes are ``prune``'s.)"""
    now = timezone.now()
    table = connection.ops.quote_name(UsedTotpCode._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (user_id, code, expires_at) VALUES (%s, %s, %s) "  # noqa: S608 - our table's name
            f"ON CONFLICT (user_id, code) DO UPDATE SET expires_at = excluded.expires_at "
            f"WHERE {table}.expires_at <= %s RETURNING id",
            [user_id, normalize_user_code(code), now + window(), now],
        )
        return cursor.fetchone() is not None


def prune() -> int:
    """Forget the records whose window has passed (beat, ``prune-used-codes``); how many went."""
    return UsedTotpCode.objects.filter(expires_at__lte=timezone.now()).delete()[0]


def install() -> None:
    """Point allauth's used-code record (``TOTP._mark_code_used``, a cache ``add``) at ``mark_used``.

    allauth is pinned (requirements.txt); ``tests/test_used_codes.py`` fails if a new version stops calling it."""
    from allauth.mfa.totp.internal.auth import TOTP

    def _mark_code_used(self: TOTP, code: str) -> bool:
        return mark_used(self.instance.user_id, code)

    TOTP._mark_code_used = _mark_code_used  # type: ignore[method-assign]
