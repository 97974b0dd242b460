"""Operational state: what the health check reads."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class WorkerHeartbeat(models.Model):
    """The last time each Celery worker (by hostname) said it was alive."""

    hostname = models.CharField(max_length=255, unique=True)
    last_seen = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.hostname} @ {self.last_seen:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def touch(cls, hostname: str) -> None:
        cls.objects.update_or_create(hostname=hostname, defaults={"last_seen": timezone.now()})

    @classmethod
    def latest_age_seconds(cls) -> float | None:
        last = cls.objects.order_by("-last_seen").values_list("last_seen", flat=True).first()
        if last is None:
            return None
        return (timezone.now() - last).total_seconds()


class AuditIntegrity(models.Model):
    """The outcome of the newest periodic verification of the audit trail: one row, read by the audit pages (red
    banner), the API and /healthz. Someone who can rewrite the audit table can reset it too, but the next
    verification, which does not trust it, sets it again."""

    SINGLETON = 1

    checked_at = models.DateTimeField(null=True, blank=True)
    ok = models.BooleanField(default=True)
    broken_seq = models.PositiveBigIntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    failing_since = models.DateTimeField(null=True, blank=True)
    report = models.JSONField(default=dict, blank=True)

    class Meta:
        verbose_name_plural = "audit integrity"

    def __str__(self) -> str:
        return "intact" if self.ok else f"broken at seq {self.broken_seq}"

    @classmethod
    def current(cls) -> AuditIntegrity | None:
        return cls.objects.filter(pk=cls.SINGLETON).first()
