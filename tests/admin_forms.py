"""Posting an admin form as a browser would: every field with the value the page shows, then the test's changes."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any


class _FormFields(HTMLParser):
    """The fields of the page's main form (``id=<model>_form``) and the values the page shows for them."""

    def __init__(self) -> None:
        super().__init__()
        self.data: dict[str, Any] = {}
        self.in_form = False
        self.select: str | None = None
        self.multiple = False
        self.textarea: str | None = None

    def _put(self, name: str, value: str, many: bool) -> None:
        if many:
            self.data.setdefault(name, []).append(value)
        else:
            self.data[name] = value

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form" and str(a.get("id", "")).endswith("_form"):
            self.in_form = True
        if not self.in_form or (not a.get("name") and tag != "option"):
            return
        if tag == "input":
            kind = a.get("type", "text")
            if kind in ("submit", "button", "file"):
                return
            if kind in ("checkbox", "radio"):
                if "checked" in a:
                    self._put(
                        a["name"], a.get("value") or "on", kind == "checkbox" and a.get("value") is not None
                    )
                return
            self.data[a["name"]] = a.get("value") or ""
        elif tag == "select":
            self.select, self.multiple = a["name"], "multiple" in a
            if self.multiple:
                self.data.setdefault(self.select, [])
        elif tag == "option" and self.select and "selected" in a:
            self._put(self.select, a.get("value") or "", self.multiple)
        elif tag == "textarea":
            self.textarea = a["name"]
            self.data[self.textarea] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self.select = None
        elif tag == "textarea":
            self.textarea = None
        elif tag == "form":
            self.in_form = False

    def handle_data(self, data):
        if self.textarea:
            self.data[self.textarea] += data.lstrip("\n") if not self.data[self.textarea] else data


def admin_form(client, url: str, **changes: Any) -> dict[str, Any]:
    """What the admin page at ``url`` would post, with ``changes`` (None removes a field)."""
    page = client.get(url)
    assert page.status_code == 200, page.status_code
    parser = _FormFields()
    parser.feed(page.content.decode())
    data = {k: v for k, v in parser.data.items() if not k.startswith("_")}
    data.pop("csrfmiddlewaretoken", None)
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}
