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


class DriftCheck(models.Model):
    """The newest comparison of AWS with what Gatehouse applied (beat's drift check, and ``make demo`` when it
    rebuilds its AWS world): one row, so the dashboard can say when the last check ran and what it found, not
    only that it found nothing."""

    SINGLETON = 1

    checked_at = models.DateTimeField()
    checked = models.PositiveIntegerField(default=0)  # principal-in-account pairs compared with AWS
    drifted = models.PositiveIntegerField(default=0)
    repaired = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)  # work in flight: their own reconcile writes them
    errors = models.PositiveIntegerField(default=0)  # AWS could not be read or written

    def __str__(self) -> str:
        return f"drift check {self.checked_at:%Y-%m-%d %H:%M}: {self.drifted} of {self.checked} drifted"

    @classmethod
    def current(cls) -> DriftCheck | None:
        return cls.objects.filter(pk=cls.SINGLETON).first()

    @classmethod
    def record(cls, *, counts: dict[str, int]) -> None:
        fields = ("checked", "drifted", "repaired", "skipped", "errors")
        cls.objects.update_or_create(
            pk=cls.SINGLETON,
            defaults={"checked_at": timezone.now(), **{name: counts.get(name, 0) for name in fields}},
        )
