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
