"""Refuse a URL whose path or query holds NUL (400) before any route reads it.

PostgreSQL's text cannot hold NUL: a model name or query value carrying one (``/models/%00``)
reached the store and failed there as a 500. Refused here once for every route, the fast path
included; other control characters are stored as they are.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send


class RefuseNulInUrl:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            field = field_with_nul(scope)
            if field is not None:
                await _refuse(send, field)
                return
        await self.app(scope, receive, send)


def field_with_nul(scope: Scope) -> str | None:
    """ "path", the query parameter or "query" holding a NUL; None when the URL has none."""
    # The path arrives percent-decoded; the query string raw (%00, or a bare NUL).
    if "\x00" in scope["path"]:
        return "path"
    query = scope.get("query_string", b"")
    if b"%00" in query or b"\x00" in query:
        return _parameter_with_nul(query)
    return None


def _parameter_with_nul(query: bytes) -> str:
    for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
        if "\x00" in name or "\x00" in value:
            return name if "\x00" not in name else "query"
    return "query"


NUL_REASON = "the URL may not contain the NUL character (%00)"


async def _refuse(send: Send, field: str) -> None:
    reason = NUL_REASON
    payload = json.dumps({"error": f"{field}: {reason}", "field": field, "reason": reason})
    body = payload.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 400,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
