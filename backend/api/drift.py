"""Drift API: windows of live traffic against a version's reference, series of windows for
sparklines, each model's drift settings, and the ad-hoc report over two uploaded files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Path, Query, UploadFile
from pydantic import ValidationError

from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.auth import Principal, read_scope
from backend.auth.tokens import require
from backend.errors import InputError
from backend.monitoring.drift.files import file_drift_report
from backend.schemas import DriftReport, DriftSeries, DriftSettings, WindowDrift

router = APIRouter(prefix="/api/v1", tags=["Drift"], responses=ERRORS)

FILES_PATH = "/api/v1/drift/files"


async def reader(principal: CurrentPrincipal) -> Principal:
    # A dependency, so a token without the permission is refused (403) before its upload is
    # parsed. "read" is what every read-only role (support, engineer) holds: the files are the
    # caller's own, so no model scope applies.
    require(principal, "read")
    return principal


ModelName = Annotated[str, Path(min_length=1, max_length=128)]
Version = Annotated[
    str | None,
    Query(min_length=1, max_length=32, description="one version (default: every version)"),
]
Route = Annotated[
    str | None,
    Query(
        pattern="^(active|canary|shadow)$",
        description="one route (default: the traffic's routes, active and canary)",
    ),
]
# One minute to 30 days: windows are counted in whole minutes, and hour buckets are kept 90 days.
WindowSeconds = Annotated[int, Query(ge=60, le=30 * 86_400, description="the window's length")]


def _serving_version(workspace: CurrentWorkspace, model: str, version: str | None) -> str | None:
    """The version serving now: the reference of a window no version answered in yet; a
    version asked for must exist (404 naming it, as everywhere else), not answer an empty
    window."""
    if version is not None:
        workspace.registry.get_version(model, version)
    return workspace.registry.get_model(model).active_version


@router.get("/models/{name}/drift", response_model=WindowDrift)
def window_drift(
    name: ModelName,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    version: Version = None,
    route: Route = None,
    window_s: WindowSeconds = 900,
    histograms: Annotated[
        bool, Query(description="add display histograms (reference vs current) per feature")
    ] = False,
) -> WindowDrift:
    """The drift of the last ``window_s`` seconds of live traffic against the reference of the
    version that answered it: per feature the test, score, threshold and verdict in plain
    words, the model's outputs, and the dataset verdict. From counts kept as predictions are
    logged: as fast for a day as for a minute."""
    read_scope(principal, "read", name)
    serving = _serving_version(workspace, name, version)
    return workspace.drift.window(
        name, serving, version=version, route=route, window_s=window_s, histograms=histograms
    )


@router.get("/models/{name}/drift/series", response_model=DriftSeries)
def drift_series(
    name: ModelName,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    version: Version = None,
    route: Route = None,
    window_s: WindowSeconds = 3_600,
    windows: Annotated[int, Query(ge=1, le=168, description="how many windows")] = 24,
) -> DriftSeries:
    """``windows`` consecutive windows ending now, oldest first: every feature's score and
    verdict per window, for sparklines."""
    read_scope(principal, "read", name)
    serving = _serving_version(workspace, name, version)
    return workspace.drift.series(
        name, serving, version=version, route=route, window_s=window_s, windows=windows
    )


@router.get("/models/{name}/drift/settings", response_model=DriftSettings)
def drift_settings(
    name: ModelName, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> DriftSettings:
    """How the model's drift is judged: the defaults until someone stores their own."""
    read_scope(principal, "read", name)
    workspace.registry.get_model(name)  # 404 for a model that does not exist
    return workspace.drift.settings(name)


@router.put("/models/{name}/drift/settings", response_model=DriftSettings)
def store_drift_settings(
    name: ModelName,
    settings: DriftSettings,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
) -> DriftSettings:
    """Store the model's drift settings (thresholds, per-feature overrides); engineers and
    admins, as for the model's other policies."""
    require(principal, "deploy", name)
    return workspace.drift.store_settings(name, settings, principal.name)


def _settings(text: str | None) -> DriftSettings:
    if text is None or not text.strip():
        return DriftSettings()
    try:
        return DriftSettings.model_validate_json(text)
    except ValidationError as exc:
        first = exc.errors()[0]
        if first.get("type") == "json_invalid":
            raise InputError("not valid JSON", "settings") from None
        where = ".".join(str(part) for part in first.get("loc", ()))
        raise InputError(
            str(first.get("msg")), f"settings.{where}" if where else "settings"
        ) from None


@router.post(FILES_PATH.removeprefix("/api/v1"), response_model=DriftReport)
def drift_of_files(
    _principal: Annotated[Principal, Depends(reader)],
    reference: Annotated[UploadFile, File(description="the training data: Parquet or CSV")],
    current: Annotated[UploadFile, File(description="the data to check: Parquet or CSV")],
    settings: Annotated[
        str | None, Form(description="JSON DriftSettings: thresholds, per-feature overrides")
    ] = None,
    columns: Annotated[
        str | None, Form(max_length=10_000, description="only these columns, comma-separated")
    ] = None,
    include_histograms: Annotated[
        bool, Form(description="add display histograms (reference vs current) per feature")
    ] = False,
) -> DriftReport:
    """Drift of ``current`` against ``reference`` over their common columns: per feature the
    test, score, threshold, verdict and a plain-words explanation, and the dataset verdict.

    Both files may be up to the server's drift upload limit (SERVEDECK_MAX_DRIFT_UPLOAD_BYTES,
    512 MiB by default, for the whole request). Runs in a worker thread, off the event loop."""
    chosen = _settings(settings)
    wanted = None
    if columns is not None:
        wanted = [c.strip() for c in columns.split(",") if c.strip()]
        if not wanted:
            raise InputError("name at least one column", "columns")
    return file_drift_report(
        reference.file,
        current.file,
        chosen,
        columns=wanted,
        include_histograms=include_histograms,
    )
