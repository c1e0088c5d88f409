"""Performance API: a version's realized and estimated quality per time window."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.api.report_span import (
    EndQuery,
    VersionQuery,
    WindowQuery,
    WindowsQuery,
    reported_version,
)
from backend.auth import read_scope
from backend.monitoring.performance import CalibrationCache, performance_report
from backend.schemas import PerformanceReport

router = APIRouter(prefix="/api/v1", tags=["Monitoring"], responses=ERRORS)


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
    version: VersionQuery = None,
    window_s: WindowQuery = 3600,
    windows: WindowsQuery = 24,
    end: EndQuery = None,
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
    info = reported_version(registry, name, version)
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
