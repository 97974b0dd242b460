"""Free text people type (a justification, a ticket, a comment) must read the same to everyone who sees it.

Invisible characters can make text read differently from what it holds: a right-to-left override (U+202E) shows
"GH-1 approved‮ton" as something else, zero-width and format characters hide words from a search, and a NUL byte is
refused by PostgreSQL (a 500) and never part of real text. Gatehouse does not store them: the services refuse such
text with a message that names each character and where it is, and the web form takes them out and says so, keeping
the rest of what was typed. Standard library only.
"""

from __future__ import annotations

import unicodedata

from accessrequests.core.wording import counted

# Line breaks and tabs are text; every other control character is not.
_KEPT_CONTROLS = frozenset("\t\n\r")
# Joiners shape letters in Persian, Indic scripts and emoji sequences and cannot reorder anything.
_KEPT_FORMATS = frozenset("\u200c\u200d")
# Line and paragraph separators break lines where HTML shows none: a line may seem to end where it does not.
_SEPARATORS = frozenset("\u2028\u2029")
_CONTROL_NAMES = {"\x00": "NUL", "\x7f": "DELETE"}


def is_hidden(char: str) -> bool:
    """Whether ``char`` is one Gatehouse does not store in text (see the module docstring)."""
    if char in _KEPT_CONTROLS or char in _KEPT_FORMATS:
        return False
    return char in _SEPARATORS or unicodedata.category(char) in ("Cc", "Cf")


def char_name(char: str) -> str:
    """``U+202E (RIGHT-TO-LEFT OVERRIDE)``: the code point, and the name people can look up."""
    name = _CONTROL_NAMES.get(char) or unicodedata.name(char, "") or "a control character"
    return f"U+{ord(char):04X} ({name})"


def hidden_characters(text: str) -> list[tuple[int, str]]:
    """Each hidden character of ``text`` with its position, counted from 1 as people count."""
    return [(at, char) for at, char in enumerate(text or "", start=1) if is_hidden(char)]


def _listed(found: list[tuple[int, str]]) -> str:
    shown = [f"{char_name(char)} at character {at}" for at, char in found[:3]]
    more = len(found) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more else "")


def hidden_character_problem(what: str, text: str | None) -> str | None:
    """Why ``text`` (named ``what``: "The justification") cannot be stored, or None when it can."""
    found = hidden_characters(text or "")
    if not found:
        return None
    return (
        f"{what} contains {counted(len(found), 'invisible character')} ({_listed(found)}). Such characters can "
        "make text read differently from what it says, so Gatehouse does not accept them: remove "
        f"{'it' if len(found) == 1 else 'them'}."
    )


def without_hidden_characters(text: str) -> str:
    return "".join(char for char in text if not is_hidden(char))


def removed_problem(what: str, text: str) -> str:
    """What the web form says when it took hidden characters out of ``text`` for the person to check."""
    found = hidden_characters(text)
    return (
        f"Gatehouse removed {counted(len(found), 'invisible character')} from {what} ({_listed(found)}): such "
        "characters can make text read differently from what it says. Check that it still says what you mean, "
        "then send it again."
    )


def shown(text: str) -> str:
    """``text`` with each hidden character written out where it is (``[U+202E]``): what pages show of text stored
    before these characters were refused, so none of it can disguise itself."""
    return "".join(f"[U+{ord(char):04X}]" if is_hidden(char) else char for char in text or "")
