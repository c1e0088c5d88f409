"""The query parameters every windowed report takes (performance, feedback loops): which
version, how wide each window is, how many, and when the newest ends; and the version a report
is about when none is named."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from backend.errors import NotFound
from backend.registry import Registry
from backend.schemas import ModelVersionInfo

# A minute to a week per window, up to 48 windows (two days of hours, seven weeks of weeks):
# every window is a bounded read, so a request's cost is bounded too.
MIN_WINDOW_S = 60
MAX_WINDOW_S = 7 * 86_400
MAX_WINDOWS = 48
# The report's times are dates: its last window must end within year 9999 (a datetime's last
# second, 253402300799), or converting it fails (that was a 500 for end=2**40).
MAX_END_S = 253_402_300_799.0 - 2 * MAX_WINDOW_S

VersionQuery = Annotated[
    str | None, Query(description="the version (default: the one serving)", max_length=32)
]
WindowQuery = Annotated[
    int, Query(description="window length in seconds", ge=MIN_WINDOW_S, le=MAX_WINDOW_S)
]
WindowsQuery = Annotated[
    int, Query(description="how many windows, the newest last", ge=1, le=MAX_WINDOWS)
]
EndQuery = Annotated[
    float | None,
    Query(
        description="a time inside the newest window (Unix seconds; default: now)",
        allow_inf_nan=False,
        ge=0,
        le=MAX_END_S,
    ),
]


def reported_version(registry: Registry, model: str, version: str | None) -> ModelVersionInfo:
    """The version named, else the one serving; 404 naming ``version`` when none serves."""
    chosen = version or registry.get_model(model).active_version
    if chosen is None:
        raise NotFound(f"model {model!r} has no serving version: name one", "version")
    return registry.get_version(model, chosen)
