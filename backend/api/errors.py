"""Every error leaves as {"error", "field", "reason"}: OIP clients read "error", people the rest."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.routing import Route, compile_path

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


def _reason(error: Any) -> str:
    """Pydantic's message, without the "Value error, " it puts before our own validators'."""
    raised = (error.get("ctx") or {}).get("error")
    if error.get("type") == "value_error" and raised is not None:
        return str(raised)
    return str(error.get("msg", "invalid value"))


def body_error_response(exc: ValueError, status: int = 422) -> JSONResponse:
    """A pydantic error from parsing a request body by hand, in the same shape as the rest."""
    errors = exc.errors() if isinstance(exc, ValidationError) else []
    if not errors:
        return error_response(400, str(exc), "body")
    first = errors[0]
    if first.get("type") == "json_invalid":
        return error_response(400, "the body is not valid JSON", "body")
    return error_response(status, _reason(first), _location(tuple(first.get("loc", ()))))


def allowed_methods(app: FastAPI, path: str) -> list[str]:
    """Every method some route answers at this path."""
    table: list[tuple[re.Pattern[str], set[str]]] | None = getattr(app.state, "methods", None)
    if table is None:
        table = _method_table(app)
        app.state.methods = table
    allowed: set[str] = set()
    for pattern, methods in table:
        if pattern.match(path):
            allowed |= methods
    return sorted(allowed)


def _method_table(app: FastAPI) -> list[tuple[re.Pattern[str], set[str]]]:
    # The published description lists every route with its methods (the fast path's too);
    # the documentation pages themselves are plain routes outside it.
    table = []
    for template, operations in app.openapi()["paths"].items():
        pattern, _format, _convertors = compile_path(template)
        table.append((pattern, {method.upper() for method in operations}))
    for route in app.routes:
        if isinstance(route, Route) and not route.include_in_schema:
            table.append((route.path_regex, set(route.methods or ())))
    return table


def _is_json(content_type: str | None) -> bool:
    """No content type (read as JSON) or application/json, +json, with any parameters."""
    if not content_type:
        return True
    media = content_type.split(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServeDeckError)
    async def _servedeck_error(_request: Request, exc: ServeDeckError) -> JSONResponse:
        return error_response(exc.status, exc.reason, exc.field, exc.details)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        field = _location(tuple(first.get("loc", ())))
        reason = _reason(first)
        if first.get("type") == "json_invalid":
            field, reason = "body", "the body is not valid JSON"
        elif field == "body" and not _is_json(request.headers.get("content-type")):
            # curl -d sends form encoding unless told otherwise: FastAPI then never reads the
            # JSON, and its own message ("a valid dictionary") would not say why.
            sent = (request.headers.get("content-type") or "").split(";")[0]
            reason = f"the body must be JSON sent as Content-Type: application/json, not {sent}"
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
            # RFC 9110: a 405 says what is allowed. FastAPI's included routers leave Starlette's
            # Allow empty, and one path may have several routes (GET and PUT of a rollout).
            allowed = allowed_methods(request.app, request.url.path)
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
