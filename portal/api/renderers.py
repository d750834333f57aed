"""The APIs' JSON renderer: DRF's output, written by orjson.

A page of detailed servers is some hundred and eighty kilobytes of JSON; Python's encoder spent more time
writing it than the view spent building it. orjson writes the same document (compact, UTF-8, U+2028 and
U+2029 escaped) and hands what it does not know natively (timestamps, decimals, lazy strings) to DRF's
encoder, so those look as before. A body orjson cannot write at all (an integer beyond 64 bits) and an
indented one (``Accept: application/json; indent=4``) go to DRF's renderer.
"""

from __future__ import annotations

import orjson
from rest_framework import renderers

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS
_LINE_SEPARATOR = "\u2028".encode()
_PARAGRAPH_SEPARATOR = "\u2029".encode()


class JSONRenderer(renderers.JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        if data is None:
            return b""
        if self.get_indent(accepted_media_type, renderer_context or {}) is not None:
            return super().render(data, accepted_media_type, renderer_context)
        try:
            body = orjson.dumps(data, default=self.encoder_class().default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        # Escaped as DRF does, so that the JSON is also valid JavaScript.
        if _LINE_SEPARATOR in body:
            body = body.replace(_LINE_SEPARATOR, b"\\u2028")
        if _PARAGRAPH_SEPARATOR in body:
            body = body.replace(_PARAGRAPH_SEPARATOR, b"\\u2029")
        return body
