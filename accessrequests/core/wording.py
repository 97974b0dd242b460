"""Counts in words: "1 item", "3 items". Standard library only (the offline audit verifier uses it too)."""

from __future__ import annotations


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """``count`` and the noun that agrees with it; ``plural`` where adding an "s" is wrong ("1 policy",
    "2 policies")."""
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"
