"""The audit trail: append-only, hash-chained events.

Each row stores the SHA-256 of its canonical content including the previous row's hash, and a gap-free sequence
number assigned while the chain's tail is locked, so editing, deleting or reordering any row breaks the chain
from there on (``manage.py verify_audit`` finds where). A rewrite that recomputes every later hash is caught by
the signed checkpoints kept outside the database (``accessrequests/audit/checkpoints.py``). The ORM refuses update and
delete; on PostgreSQL a trigger refuses them too (migration 0004), so raw SQL cannot either.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models

from accessrequests.ledger.chain import GENESIS_HASH, compute_hash

__all__ = ["GENESIS_HASH", "AppendOnlyError", "AuditEvent", "compute_hash"]


class AppendOnlyError(Exception):
    """Raised on any attempt to change or remove an audit event."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs: Any) -> int:
        raise AppendOnlyError("audit events are append-only")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events are append-only")

    def bulk_update(self, *args: Any, **kwargs: Any) -> int:
        raise AppendOnlyError("audit events are append-only")


class AuditEvent(models.Model):
    """One thing that happened: who did what to which object, before and after, from where."""

    seq = models.PositiveBigIntegerField(
        help_text="Position in the chain: 1, 2, 3, … with no gaps (assigned under the chain's lock)."
    )
    created_at = models.DateTimeField(db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="audit_events"
    )
    actor_label = models.CharField(max_length=200, help_text="Username, 'system' or the API token's name.")
    action = models.CharField(max_length=64, db_index=True)
    object_type = models.CharField(max_length=64)
    object_id = models.CharField(max_length=64, blank=True)
    request_id = models.BigIntegerField(
        null=True, blank=True, db_index=True, help_text="Access request id, if any."
    )
    principal_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    account_id = models.CharField(max_length=12, blank=True, db_index=True)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    aws_request_ids = models.JSONField(default=list, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=400, blank=True)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["seq"]
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]
        constraints = [
            # Two writers can never take the same number, whatever happens to the lock.
            models.UniqueConstraint(fields=["seq"], name="%(app_label)s_%(class)s_unique_seq"),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} by {self.actor_label}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None or not self._state.adding:
            raise AppendOnlyError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise AppendOnlyError("audit events are append-only")

    def canonical(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at.isoformat(),
            "actor_id": self.actor_id,
            "actor_label": self.actor_label,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "request_id": self.request_id,
            "principal_id": self.principal_id,
            "account_id": self.account_id,
            "before": self.before,
            "after": self.after,
            "aws_request_ids": self.aws_request_ids,
            "ip": self.ip,
            "user_agent": self.user_agent,
            "prev_hash": self.prev_hash,
        }

    def compute_hash(self) -> str:
        return compute_hash(self.canonical())
