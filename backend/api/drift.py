"""Drift API: the ad-hoc report over two uploaded files."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, UploadFile
from pydantic import ValidationError

from backend.api.deps import CurrentPrincipal
from backend.api.errors import ERRORS
from backend.auth import Principal
from backend.auth.tokens import require
from backend.errors import InputError
from backend.monitoring.drift.files import file_drift_report
from backend.schemas import DriftReport, DriftSettings

router = APIRouter(prefix="/api/v1", tags=["Drift"], responses=ERRORS)

FILES_PATH = "/api/v1/drift/files"


async def reader(principal: CurrentPrincipal) -> Principal:
    # A dependency, so a token without the permission is refused (403) before its upload is
    # parsed. "read" is what every read-only role (support, engineer) holds: the files are the
    # caller's own, so no model scope applies.
    require(principal, "read")
    return principal


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
