"""Pagination without COUNT(*): a page fetches one id more than it shows to know whether another follows.

Counting every matching row costs time proportional to the table (measured: most of the review queue's time at
100,000 requests); pages of a work queue do not need the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import QuerySet


@dataclass
class Page:
    object_list: list[Any]
    number: int
    has_next: bool

    @property
    def has_previous(self) -> bool:
        return self.number > 1

    @property
    def has_other_pages(self) -> bool:
        return self.has_next or self.has_previous

    @property
    def next_page_number(self) -> int:
        return self.number + 1

    @property
    def previous_page_number(self) -> int:
        return self.number - 1


def paginate(queryset: QuerySet, page: str | None, size: int = 25, max_page: int = 10_000) -> Page:
    number = int(page) if page and page.isdigit() else 1
    number = min(max(number, 1), max_page)
    offset = (number - 1) * size
    # Two steps: the ids of the page alone (the database can walk an index and stop), then those rows with
    # their related objects. One query joining everything first made PostgreSQL join every matching row
    # before sorting: 169 ms for the review queue at 100,000 requests.
    ids = list(queryset.select_related(None).values_list("pk", flat=True)[offset : offset + size + 1])
    by_id = queryset.filter(pk__in=ids[:size]).in_bulk() if ids else {}
    return Page(object_list=[by_id[pk] for pk in ids[:size]], number=number, has_next=len(ids) > size)
