"""Every error leaves as {"error", "field", "reason"}: OIP clients read "error", people the rest."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Match
from starlette.types import Scope

from backend.errors import ServeDeckError
from backend.schemas import ErrorBody

# The error answers every router declares in its OpenAPI description.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody} for code in (400, 401, 403, 404, 409, 413, 422)
}


def error_response(
    status: int, reason: str, field: str | None = None, details: dict[str, Any] | None = None
) -> JSONResponse:
    message = f"{field}: {reason}" if field else reason
    body = {**(details or {}), "error": message, "field": field, "reason": reason}
    return JSONResponse(body, status_code=status)


def _location(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if item in ("body", "query", "path", "header") and not parts:
            continue
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "body"


def body_error_response(exc: ValueError, status: int = 422) -> JSONResponse:
    """A pydantic error from parsing a request body by hand, in the same shape as the rest."""
    errors = exc.errors() if isinstance(exc, ValidationError) else []
    if not errors:
        return error_response(400, str(exc), "body")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return error_response(400, "the body is not valid JSON", "body")
    return error_response(
        status, str(first.get("msg", "invalid value")), _location(tuple(first.get("loc", ())))
    )


def allowed_methods(app: Starlette, scope: Scope) -> list[str]:
    """Every method some route answers at this path (HEAD with GET, as Starlette does)."""
    methods: set[str] = set()
    for route in app.routes:
        match, _child = route.matches({**scope, "method": "GET"})
        if match != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    # The fast path answers POST itself; its FastAPI routes declare it as well.
    return sorted(methods)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeDeckError)
    async def _servedeck_error(_request: Request, exc: ServeDeckError) -> JSONResponse:
        return error_response(exc.status, exc.reason, exc.field, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = _location(tuple(first.get("loc", ())))
        reason = str(first.get("msg", "invalid value"))
        if first.get("type") == "json_invalid":
            field, reason = "body", "the body is not valid JSON"
        return error_response(422, reason, field)

    @app.exception_handler(ClientDisconnect)
    async def _client_left(_request: Request, _exc: ClientDisconnect) -> Response:
        # The client hung up before sending its whole body: nobody is left to answer, and an
        # ordinary disconnect is not a server error worth a traceback. 499 as nginx logs it.
        return Response(status_code=499)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        reason = exc.detail if isinstance(exc.detail, str) else "request refused"
        if exc.status_code == 404 and reason == "Not Found":
            reason = "no such endpoint; see /docs for the API"
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names only the methods of the first route matching the path; several
            # routes may share it (GET and PUT of a rollout): Allow lists them all (RFC 9110).
            allowed = allowed_methods(request.app, request.scope)
            headers["Allow"] = ", ".join(allowed)
            reason = f"method {request.method} not allowed here; allowed: {', '.join(allowed)}"
        response = error_response(exc.status_code, reason)
        response.headers.update(headers)
        return response

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the caller's fault: still the documented error shape, never a bare
        # "Internal Server Error" text. Starlette logs the traceback after this answer.
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")
