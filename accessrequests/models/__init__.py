"""Gatehouse's models, split by subdomain."""

from accessrequests.models.ops import WorkerHeartbeat

__all__ = ["WorkerHeartbeat"]
