"""The prediction routes, dispatched without FastAPI's routing and dependency injection.

Profiling one-row requests showed FastAPI's route matching and dependency solving costing a
fifth of a cheap model's request. These three routes are the hot path, so they are matched
here by pattern and handed straight to the same handler functions the FastAPI routes call;
everything else, and the OpenAPI description of these routes, stays with FastAPI.

This is the outermost layer of the app (inside Starlette's error handler), and it does for a
prediction request what the other layers do for every other request, in one place: the NUL
check (``url_text``), the body size limit (``limits``), the count of requests in flight
(``CrowdGauge``) and the count of refusals (``refusals``). Each layer was an ASGI wrapper with
its own calls and ``send`` wrapper per request: together ~15% of lr20's instructions per
request (callgrind, against b543ac0).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from backend.api import oip, records
from backend.api.deps import resolve_principal
from backend.api.errors import error_response
from backend.api.limits import TOO_LARGE, limited_receive
from backend.api.refusals import RefusalCounter
from backend.api.url_text import NUL_REASON, field_with_nul
from backend.auth import Principal, TokenService
from backend.errors import ServeDeckError
from backend.serving.crowd import CrowdGauge
from backend.serving.service import ServingService

Handler = Callable[[Request, ServingService, Principal, dict[str, str]], Awaitable[Response]]


async def _infer(
    request: Request, serving: ServingService, principal: Principal, path: dict[str, str]
) -> Response:
    return await oip.run_infer(request, serving, principal, path["name"], path.get("version"))


async def _records(
    request: Request, serving: ServingService, principal: Principal, path: dict[str, str]
) -> Response:
    return await records.predict_records(path["name"], request, serving, principal)


_ROUTES: list[tuple[re.Pattern[str], Handler]] = [
    (re.compile(r"^/v2/models/(?P<name>[^/]+)/infer$"), _infer),
    (re.compile(r"^/v2/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)/infer$"), _infer),
    (re.compile(r"^/v1/models/(?P<name>[^/]+):predict$"), _records),
]


class PredictionFastPath:
    def __init__(
        self,
        app: ASGIApp,
        serving: ServingService,
        tokens: TokenService,
        crowd: CrowdGauge,
        refusals: RefusalCounter,
        max_bytes: int,
    ):
        self.app = app
        self.serving = serving
        self.tokens = tokens
        self.crowd = crowd
        self.refusals = refusals
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for pattern, handler in _ROUTES:
                match = pattern.match(scope["path"])
                if match is not None:
                    crowd = self.crowd
                    crowd.enter()
                    try:
                        await self._handle(handler, match.groupdict(), scope, receive, send)
                    finally:
                        crowd.leave()
                    return
        await self.app(scope, receive, send)

    async def _handle(
        self, handler: Handler, path: dict[str, str], scope: Scope, receive: Receive, send: Send
    ) -> None:
        model, version = path["name"], path.get("version") or ""
        field = field_with_nul(scope)
        if field is not None:
            response: Response = error_response(400, NUL_REASON, field)
        else:
            limited = await limited_receive(scope, receive, send, self.max_bytes)
            if isinstance(limited, int):
                if limited == TOO_LARGE:  # answered; else the client left: nobody to answer
                    self.refusals.count(scope, model, version, TOO_LARGE)
                return
            request = Request(scope, limited)
            try:
                principal = await resolve_principal(
                    self.tokens, request.headers.get("authorization")
                )
                response = await handler(request, self.serving, principal, path)
            except ServeDeckError as exc:
                response = error_response(exc.status, exc.reason, exc.field, exc.details)
            except ClientDisconnect:
                return  # the client hung up: nobody to answer
            except Exception:
                # The model itself failed: Starlette's error handler answers 500 after this.
                self.refusals.count(scope, model, version, 500)
                raise
        if response.status_code >= 400:
            self.refusals.count(scope, model, version, response.status_code)
        await response(scope, receive, send)
