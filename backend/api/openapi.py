"""OpenAPI for routes that parse their own bodies (for speed) instead of via FastAPI.

FastAPI only lists a body schema it parses itself, so these routes declare theirs here and
the schemas are added to the document's components.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

_HAND_PARSED: list[type[BaseModel]] = []


def hand_parsed_body(model: type[BaseModel]) -> dict[str, Any]:
    """The ``openapi_extra`` of a route whose JSON body is ``model``."""
    if model not in _HAND_PARSED:
        _HAND_PARSED.append(model)
    reference = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {
        "requestBody": {"content": {"application/json": {"schema": reference}}, "required": True}
    }


def install_hand_parsed_schemas(app: FastAPI) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in _HAND_PARSED:
                schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
                for name, definition in schema.pop("$defs", {}).items():
                    schemas.setdefault(name, definition)
                schemas.setdefault(model.__name__, schema)
            _declare_no_nul(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


# JSON Schema's spelling of "any text without NUL" (ECMA 262 regex).
NO_NUL = "^[^\\u0000]*$"


def _declare_no_nul(document: dict[str, Any]) -> None:
    """Every text of a request is refused with NUL in it (PostgreSQL cannot store it; see
    url_text and schemas.RequestBody): say so on every string the document describes, and on
    the keys of every map (an object whose keys are free, such as feature names)."""
    stack: list[Any] = [document]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if item.get("type") == "string" and "pattern" not in item and "format" not in item:
                item["pattern"] = NO_NUL
            if _is_map(item) and "propertyNames" not in item:
                item["propertyNames"] = {"pattern": NO_NUL}
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _is_map(schema: dict[str, Any]) -> bool:
    """An object schema whose keys are data (a dict), not the fields of a model."""
    if schema.get("type") != "object":
        return False
    if "properties" not in schema:
        return schema.get("additionalProperties", True) is not False
    return schema.get("additionalProperties", False) not in (False, None)
