"""An export's counts (per label source and class, time range) and its manifest.

The counts are kept as rows go by, so the preview (counting only) and the export (counting
while it writes) tell the same story, and the manifest needs no second pass.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from backend.feedback.export_columns import class_texts
from backend.feedback.export_query import ExportPlan
from backend.schemas import (
    EXPORT_SOURCES,
    ClassCount,
    ExportFile,
    ExportManifest,
    ExportPreview,
    SourceCount,
)


@dataclass
class Tally:
    rows: int = 0
    sources: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    first: float | None = None
    last: float | None = None

    def add(self, plan: ExportPlan, batch: pa.RecordBatch) -> None:
        if not batch.num_rows:
            return
        self.rows += batch.num_rows
        for counts, column in (
            (self.sources, batch.column("label_source")),
            (self.classes, class_texts(plan, batch)),
        ):
            for entry in pc.value_counts(column).to_pylist():
                counts[entry["values"]] += entry["counts"]
        # Pages come oldest first.
        times = batch.column("created_at")
        if self.first is None:
            self.first = times[0].as_py().timestamp()
        self.last = times[-1].as_py().timestamp()

    def by_source(self) -> list[SourceCount]:
        return [SourceCount(source=s, rows=self.sources[s]) for s in EXPORT_SOURCES]

    def by_class(self) -> list[ClassCount]:
        return [
            ClassCount(label=label, rows=rows)
            for label, rows in sorted(self.classes.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    def words(self, plan: ExportPlan) -> str:
        if self.rows == 0:
            return (
                f"No rows of model {plan.model.name!r} match these filters. Widen the time "
                'range or the label sources (add "unlabelled" for rows without a label).'
            )
        parts = [f"{self.sources[s]} from {s}" for s in EXPORT_SOURCES if self.sources[s]]
        return (
            f"{self.rows} rows of model {plan.model.name!r}: " + ", ".join(parts) + ". Each "
            "row holds the features exactly as the model received them and its best label "
            "(review over a confirmed report over feedback)."
            + (
                " Only labels the model could not have shaped (held-out traffic, review)."
                if plan.request.uninfluenced_only
                else " Train on influenced labels with care: the model's own answers shaped "
                "them (filter with uninfluenced_only)."
            )
        )


def _time(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)


def preview_of(plan: ExportPlan, tally: Tally, rows_read: int) -> ExportPreview:
    return ExportPreview(
        model=plan.model.name,
        rows=tally.rows,
        by_source=tally.by_source(),
        by_class=tally.by_class(),
        first_at=_time(tally.first),
        last_at=_time(tally.last),
        rows_read=rows_read,
        columns=plan.columns(),
        explanation=tally.words(plan),
    )


def manifest_of(
    plan: ExportPlan, tally: Tally, files: list[ExportFile], created_by: str, created_at: float
) -> ExportManifest:
    return ExportManifest(
        model=plan.model.name,
        format=plan.request.format,
        created_at=datetime.fromtimestamp(created_at, UTC),
        created_by=created_by,
        filters=plan.request,
        rows=tally.rows,
        by_source=tally.by_source(),
        by_class=tally.by_class(),
        first_at=_time(tally.first),
        last_at=_time(tally.last),
        columns=plan.columns(),
        files=files,
        explanation=tally.words(plan),
    )


class HashingWriter:
    """A file-like sink in front of another that keeps the sha256 and size of what passes:
    a file's digest is known when its last byte is written, with no second read."""

    def __init__(self, inner: Any):
        self.inner = inner
        self.digest = hashlib.sha256()
        self.size = 0
        self.closed = False

    def write(self, data: Any) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.size += view.nbytes
        self.inner.write(view)
        return view.nbytes

    def tell(self) -> int:
        return self.size

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def flush(self) -> None:
        self.inner.flush()

    def close(self) -> None:
        # The inner file is closed by its owner (a ZIP entry must be closed in order).
        self.closed = True
