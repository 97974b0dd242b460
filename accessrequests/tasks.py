"""Celery tasks: thin wrappers that reload rows by id and call one service. Every task is idempotent."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="accessrequests.tasks.echo")
def echo(value: str) -> str:
    """Round-trips a value through the broker and a worker; used by the health tooling and tests."""
    return value
