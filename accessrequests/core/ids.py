"""Object ids from the outside world (paths, forms, query strings), bounded before they reach the database.

A 30-digit number is a valid Python int, but no row has it: SQLite cannot even bind it (OverflowError) and it is
beyond PostgreSQL's bigint. Ids are therefore 1 to 18 digits everywhere input comes in; anything else is
"no such object", never a server error.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.db.models import BooleanField, Expression, F
from django.urls import register_converter

ID_DIGITS = 18  # every id below 10**18 fits a signed 64-bit integer


def parse_id(value: Any) -> int | None:
    text = str(value).strip() if value is not None else ""
    if not text.isascii() or not text.isdigit() or len(text) > ID_DIGITS:
        return None
    return int(text)


class IdConverter:
    """``<id:pk>`` in URL patterns: 1 to 18 digits, or the URL does not match (a 404)."""

    regex = f"[0-9]{{1,{ID_DIGITS}}}"

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: Any) -> str:
        return str(value)


register_converter(IdConverter, "id")


class _BoundedIds:
    def _check_id(self, value: Any) -> None:
        model = self.queryset.model  # type: ignore[attr-defined]
        if isinstance(value, model):
            return
        if parse_id(value) is None:
            raise ValidationError(
                self.error_messages["invalid_choice"],  # type: ignore[attr-defined]
                code="invalid_choice",
                params={"value": str(value)[:40]},
            )


class FetchedChoices(forms.models.ModelChoiceIterator):
    """A choice list read in one query. Django's iterator reads it with ``QuerySet.iterator()``, which on
    PostgreSQL is a server-side cursor (declare, fetch, close: three round trips) for a list of a few rows."""

    def __iter__(self) -> Any:
        if self.field.empty_label is not None:
            yield ("", self.field.empty_label)
        for obj in self.queryset:  # the form's own copy of the query: read once, however often it is listed
            yield self.choice(obj)


class IdChoiceField(_BoundedIds, forms.ModelChoiceField):
    """A model choice whose value must look like an id before the database is asked."""

    iterator = FetchedChoices

    def to_python(self, value: Any) -> Any:
        if value in self.empty_values:
            return None
        self._check_id(value)
        return super().to_python(value)


class IdMultipleChoiceField(_BoundedIds, forms.ModelMultipleChoiceField):
    iterator = FetchedChoices

    def _check_values(self, value: Any) -> Any:
        for item in value if isinstance(value, (list, tuple)) else [value]:
            if item not in self.empty_values:
                self._check_id(item)
        return super()._check_values(value)  # type: ignore[misc]  # Django's, untyped in the stubs


class NoneOf(Expression):
    """A filter: ``column`` is none of ``ids``. On PostgreSQL the list is one array parameter (``<> ALL``), so a
    list of thousands of ids costs the ORM and the driver one value instead of one each; elsewhere ``NOT IN`` with
    the integers written out."""

    conditional = True
    output_field = BooleanField()

    def __init__(self, column: str, ids: Iterable[int]) -> None:
        super().__init__()
        self.column: Any = F(column)
        self.ids = [int(i) for i in ids]

    def get_source_expressions(self) -> list[Any]:
        return [self.column]

    def set_source_expressions(self, exprs: Sequence[Any]) -> None:
        (self.column,) = exprs

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        column, params = compiler.compile(self.column)
        if not self.ids:
            return "1 = 1", list(params)
        if connection.vendor == "postgresql":
            return f"{column} <> ALL(%s)", [*params, self.ids]
        # SQLite's default bound is 32,766 parameters a statement: the ids are integers (``int`` each), written out.
        return f"{column} NOT IN ({', '.join(map(str, self.ids))})", list(params)
