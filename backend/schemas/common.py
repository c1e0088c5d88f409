"""Wire-format pieces used by more than one schema module."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, field_validator

Metric = Literal[
    "accuracy",
    "balanced_accuracy",
    "f1",
    "precision",
    "recall",
    "roc_auc",
    "log_loss",
    "mae",
    "rmse",
    "r2",
]

# The integers every store and encoder here can hold (orjson, PostgreSQL bigint, SQLite).
INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1


def _as_utc(value: datetime) -> datetime:
    # SQLite keeps no time zone and hands back naive datetimes; everything is written in UTC.
    # The OpenAPI type is date-time, which needs a zone: every datetime leaves as UTC.
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


# Every datetime of the wire format: always with its zone (UTC), whatever the store returned.
UtcDateTime = Annotated[datetime, AfterValidator(_as_utc)]

# Request bodies: JSON parsers here accept NaN, Infinity and 1e400 (read as infinity) for a
# float field; none of them is a value anyone means, and none can be stored or sent back.
REQUEST_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


# PostgreSQL's text cannot hold NUL: a request carrying one must be refused, not fail in the store.
NUL = "\x00"


def refuse_nul(value: Any) -> Any:
    """Raise ValueError if a string in ``value`` (nested in lists and dicts, keys too) holds NUL."""
    return _check_nested(value, numbers=False)


class RequestBody(BaseModel):
    """A request body kept or compared in the store: no unknown fields, NaN, infinity or NUL."""

    model_config = REQUEST_CONFIG

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: Any) -> Any:
        return refuse_nul(value)


def shown_number(value: int | float) -> str:
    """A number for an error message: a 400-digit integer is cut short."""
    text = repr(value)
    return text if len(text) <= 32 else f"{text[:24]}... ({len(text)} digits)"


def out_of_range_number(value: Any) -> str | None:
    """Why a JSON number cannot be kept (an int beyond 64 bits, NaN or infinity), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return None
        return (
            f"{shown_number(value)} is beyond the 64-bit integer range [{INT64_MIN}, {INT64_MAX}]"
        )
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value!r} is not a finite number (numbers beyond float64 read as infinite)"
    return None


def _check_storable_json(value: Any) -> Any:
    """Raise ValueError for what no store here can keep: a number out of range, NUL in a text
    or in a map's key (PostgreSQL's text and jsonb cannot hold it)."""
    return _check_nested(value, numbers=True)


def _check_nested(value: Any, numbers: bool) -> Any:
    stack = [value]
    # Iterative: a deeply nested value must not exhaust the interpreter's stack.
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if NUL in item:
                raise ValueError("text may not contain the NUL character (\\u0000)")
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
        elif numbers:
            problem = out_of_range_number(item)
            if problem is not None:
                raise ValueError(problem)
    return value


# Free-form JSON sent by a client and kept or sent back (labels, examples, defaults, OIP
# parameters): numbers within what every store and encoder here holds, no NUL.
StorableJson = Annotated[Any, AfterValidator(_check_storable_json)]
# A free-form map of such values, its keys checked too (an error names the key it is under).
StorableMap = dict[Annotated[str, AfterValidator(refuse_nul)], StorableJson]
# A plain value compared as such (a token's allowed inputs), with the same number rule.
StorableScalar = Annotated[str | int | float | bool, AfterValidator(_check_storable_json)]
