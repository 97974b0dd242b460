"""The API's only parser: DRF's JSON parser, with nesting bombs answered as bad JSON instead of a crash."""

from __future__ import annotations

from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser


class SafeJSONParser(JSONParser):
    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            # 256 KiB of "[" is valid-looking input that makes json.loads recurse past the interpreter's limit;
            # DRF only turns ValueError into a 400, so without this it would be a 500.
            raise ParseError("JSON parse error - nested too deeply.") from None
