"""Wire types of the retraining export: what to export, its preview and its manifest.

An export is the prediction log's own feature values (never recomputed) of one model, each
row with the best label it has and where that label came from: a held-out review label over a
confirmed error report's correction over a feedback label.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backend.schemas.common import RequestBody, StorableScalar, UtcDateTime

# Where a row's label came from; "unlabelled": the row has none (exported only when asked).
ExportSource = Literal["review", "report", "feedback", "unlabelled"]
EXPORT_SOURCES: tuple[ExportSource, ...] = ("review", "report", "feedback", "unlabelled")
ExportFormat = Literal["parquet", "csv"]
MAX_FILTER_VALUES = 1_000


def _labelled_sources() -> list[ExportSource]:
    return ["review", "report", "feedback"]


class ExportRequest(RequestBody):
    """The rows of one model to export. Every filter left out takes everything."""

    model: str = Field(min_length=1, max_length=128)
    versions: list[str] | None = Field(
        default=None, min_length=1, max_length=MAX_FILTER_VALUES, description="none: all"
    )
    start: UtcDateTime | None = Field(default=None, description="predictions made from then on")
    end: UtcDateTime | None = Field(default=None, description="predictions made before then")
    sources: list[ExportSource] = Field(
        default_factory=_labelled_sources,
        min_length=1,
        max_length=len(EXPORT_SOURCES),
        description='where the label came from; add "unlabelled" for rows without a label',
    )
    uninfluenced_only: bool = Field(
        default=False,
        description="only labels the model's answer could not have shaped (held-out traffic, "
        "review)",
    )
    classes: list[StorableScalar] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_FILTER_VALUES,
        description="only rows whose label is one of these classes (classifiers)",
    )
    format: ExportFormat = "parquet"


class SourceCount(BaseModel):
    source: ExportSource
    rows: int


class ClassCount(BaseModel):
    # The label as text ("1", "fraud"); "(none)" for unlabelled rows; every value of a
    # regression model's labels counts as "(number)".
    label: str
    rows: int


class ExportColumn(BaseModel):
    name: str
    # The Arrow type ("double", "int64", "string", "bool", "timestamp[us, tz=UTC]").
    type: str
    meaning: str


class ExportPreview(BaseModel):
    """What an export with these filters holds, counted before it runs."""

    model: str
    rows: int
    by_source: list[SourceCount]
    by_class: list[ClassCount]
    # The first and last prediction time among the rows (None without rows).
    first_at: UtcDateTime | None
    last_at: UtcDateTime | None
    # The log rows the export reads (before the label filters): a client's progress total.
    rows_read: int
    columns: list[ExportColumn]
    explanation: str


class ExportFile(BaseModel):
    name: str
    rows: int
    bytes: int
    sha256: str


class ExportManifest(BaseModel):
    """``manifest.json`` beside the data file: what it holds and how it was chosen."""

    model: str
    format: ExportFormat
    created_at: UtcDateTime
    created_by: str
    filters: ExportRequest
    rows: int
    by_source: list[SourceCount]
    by_class: list[ClassCount]
    first_at: UtcDateTime | None
    last_at: UtcDateTime | None
    columns: list[ExportColumn]
    files: list[ExportFile]
    explanation: str
