"""Performance API: a version's realized and estimated quality per time window."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.auth import read_scope
from backend.errors import NotFound
from backend.monitoring.performance import CalibrationCache, performance_report
from backend.schemas import PerformanceReport

router = APIRouter(prefix="/api/v1", tags=["Monitoring"], responses=ERRORS)

# A minute to a week per window, up to 48 windows (two days of hours, seven weeks of weeks):
# every window is a bounded read, so a request's cost is bounded too.
MIN_WINDOW_S = 60
MAX_WINDOW_S = 7 * 86_400
MAX_WINDOWS = 48
# The report's times are dates: its last window must end within year 9999 (a datetime's last
# second, 253402300799), or converting it fails (that was a 500 for end=2**40).
MAX_END_S = 253_402_300_799.0 - 2 * MAX_WINDOW_S


def _calibrations(request: Request) -> CalibrationCache:
    # One cache per app (per workspace), made by its first performance request.
    cache: CalibrationCache | None = getattr(request.app.state, "calibrations", None)
    if cache is None:
        cache = request.app.state.calibrations = CalibrationCache()
    return cache


@router.get("/models/{name}/performance", response_model=PerformanceReport)
def model_performance(
    name: str,
    request: Request,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    version: Annotated[
        str | None,
        Query(description="the version (default: the one serving)", max_length=32),
    ] = None,
    window_s: Annotated[
        int, Query(description="window length in seconds", ge=MIN_WINDOW_S, le=MAX_WINDOW_S)
    ] = 3600,
    windows: Annotated[
        int, Query(description="how many windows, the newest last", ge=1, le=MAX_WINDOWS)
    ] = 24,
    end: Annotated[
        float | None,
        Query(
            description="a time inside the newest window (Unix seconds; default: now)",
            allow_inf_nan=False,
            ge=0,
            le=MAX_END_S,
        ),
    ] = None,
    min_labels: Annotated[
        int,
        Query(description="labels a window needs before it is measured", ge=1, le=10_000),
    ] = 50,
) -> PerformanceReport:
    """Per window: predictions, labels so far and their delay, realized metrics (from labels;
    null with the reason where too few or undefined), metrics estimated from the model's own
    calibrated confidence (classifiers; with warnings when they cannot be trusted), and the
    validity metric against the version's acceptable range, each in plain words."""
    read_scope(principal, "read_predictions", name)
    registry = workspace.registry
    chosen = version or registry.get_model(name).active_version
    if chosen is None:
        raise NotFound(f"model {name!r} has no serving version: name one", "version")
    info = registry.get_version(name, chosen)
    return performance_report(
        workspace.sessions,
        registry,
        _calibrations(request),
        name,
        info,
        window_s=window_s,
        windows=windows,
        end=end,
        min_labels=min_labels,
    )
