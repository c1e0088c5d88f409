"""What an export holds: its columns (from the versions' signatures), and each logged row
resolved to its best label, its provenance and whether the model could have shaped it.

Provenance, one label per row: a held-out review label (``labels.source`` "review") over a
confirmed error report's correction (status confirmed or resolved, the correction or else the
reporter's expected answer; the newest report wins) over any other label (a feedback label,
source "feedback", named by the token that sent it). Influenced: False for a held-out row
(answered without the model) and for a review label, otherwise True for a labelled row;
a label marked as not influenced in the store stays so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa
from sqlalchemy import Engine, Text, cast, column, inspect, select, table
from sqlalchemy.orm import Session, sessionmaker

from backend.errors import InputError
from backend.predictions import export_reads as reads
from backend.predictions.summary_layout import category_text
from backend.schemas import ExportColumn, ExportRequest, FeatureSpec, ModelInfo

REVIEW_SOURCE = "review"
HELD_OUT_ROUTE = "held_out"
CONFIRMED = ("confirmed", "resolved")
NO_LABEL = "(none)"
NUMBER = "(number)"
LOOKUP_CHUNK = 400

ARROW_TYPES: dict[str, pa.DataType] = {
    "float": pa.float64(),
    "int": pa.int64(),
    "bool": pa.bool_(),
    "category": pa.string(),
    "string": pa.string(),
}
UTC_TIME = pa.timestamp("us", tz="UTC")

# Columns before the features, and their meaning (the manifest and preview list them).
FIXED_COLUMNS: list[tuple[str, pa.DataType, str]] = [
    ("request_id", pa.string(), "the request's id (unique within the model)"),
    ("row_index", pa.int64(), "the row within its request"),
    ("entity_id", pa.string(), "the entity the request named, if any"),
    ("created_at", UTC_TIME, "when the prediction was made (UTC)"),
    ("version", pa.string(), "the model version that answered (or was routed around)"),
    ("route", pa.string(), "active, canary or held_out (answered without the model)"),
]


@dataclass
class Resolved:
    label: Any
    source: str  # review, report, feedback or unlabelled
    by: str | None
    at: float | None
    influenced: bool | None


@dataclass
class ExportPlan:
    """One export's filters made concrete: the versions, the columns and the log window."""

    request: ExportRequest
    model: ModelInfo
    window: reads.LogWindow
    features: dict[str, pa.DataType]
    task: str
    classes: list[str]  # the probability columns' classes (as text), in order
    answer_type: pa.DataType
    class_filter: frozenset[str] | None = None
    meanings: dict[str, str] = field(default_factory=dict)

    @property
    def schema(self) -> pa.Schema:
        fields = [pa.field(name, kind) for name, kind, _ in FIXED_COLUMNS]
        fields += [pa.field(f"feature.{name}", kind) for name, kind in self.features.items()]
        fields.append(pa.field("prediction", self.answer_type))
        fields += [pa.field(f"proba.{name}", pa.float64()) for name in self.classes]
        fields += [
            pa.field("label", self.answer_type),
            pa.field("label_source", pa.string()),
            pa.field("label_by", pa.string()),
            pa.field("labelled_at", UTC_TIME),
            pa.field("influenced", pa.bool_()),
        ]
        return pa.schema(fields)

    def columns(self) -> list[ExportColumn]:
        meaning = {name: words for name, _, words in FIXED_COLUMNS}
        for name in self.features:
            meaning[f"feature.{name}"] = f"input {name!r} exactly as the model received it"
        meaning["prediction"] = "the model's answer (held_out: the no-model policy's answer)"
        for name in self.classes:
            meaning[f"proba.{name}"] = f"the model's probability of class {name}"
        meaning.update(
            label="the best label: review over a confirmed report over feedback",
            label_source="where the label came from: review, report, feedback (or unlabelled)",
            label_by="who gave it: the feedback token, the reviewer source, the report's filer",
            labelled_at="when the label was given or the report last changed (UTC)",
            influenced="whether the model's answer could have shaped the label (false: "
            "held-out traffic or review; null: no label)",
        )
        return [
            ExportColumn(name=f.name, type=str(f.type), meaning=meaning[f.name])
            for f in self.schema
        ]

    def passes(self, found: Resolved) -> bool:
        if found.source not in self.request.sources:
            return False
        if self.request.uninfluenced_only and found.influenced is not False:
            return False
        return self.class_filter is None or class_text(found, self.task) in self.class_filter


def class_text(found: Resolved, task: str) -> str:
    """A label's class as the counts name it."""
    if found.source == "unlabelled":
        return NO_LABEL
    if task != "classification":
        return NUMBER
    return category_text(found.label) or NO_LABEL


def plan_export(model: ModelInfo, request: ExportRequest, now: float | None = None) -> ExportPlan:
    """The plan of an export of ``model`` (its versions with their signatures)."""
    by_number = {v.version: v for v in model.versions}
    if request.versions is not None:
        for i, number in enumerate(request.versions):
            if number not in by_number:
                raise InputError(
                    f"model {model.name!r} has no version {number!r}; versions: "
                    f"{', '.join(by_number) or 'none'}",
                    f"versions[{i}]",
                )
    chosen = [by_number[v] for v in request.versions or by_number]
    start = request.start.timestamp() if request.start is not None else None
    end = request.end.timestamp() if request.end is not None else None
    if start is not None and end is not None and not end > start:
        raise InputError("the end must be after the start", "end")
    # Rows logged while the export runs are left out: the preview and the export agree.
    moment = time.time() if now is None else now
    end = moment if end is None else min(end, moment)
    classes: list[str] = []
    class_values: list[Any] = []
    for info in chosen:
        for value in info.class_labels or []:
            text = category_text(value) or NO_LABEL
            if text not in classes:
                classes.append(text)
                class_values.append(value)
    task = model.task
    if request.classes is not None and task != "classification":
        raise InputError("a regression model's labels have no classes to filter on", "classes")
    return ExportPlan(
        request=request,
        model=model,
        window=reads.LogWindow(
            model.name,
            tuple(request.versions) if request.versions is not None else None,
            start,
            end,
        ),
        features=_feature_types([spec for info in chosen for spec in info.signature]),
        task=task,
        classes=classes if task == "classification" else [],
        answer_type=_answer_type(task, class_values),
        class_filter=(
            frozenset(category_text(c) or NO_LABEL for c in request.classes)
            if request.classes is not None
            else None
        ),
    )


def _feature_types(specs: Sequence[FeatureSpec]) -> dict[str, pa.DataType]:
    """Each feature's column type, newest version's order first; a feature whose type
    differs between versions is exported as text (every value fits)."""
    found: dict[str, pa.DataType] = {}
    for spec in reversed(specs):
        kind = ARROW_TYPES[spec.type]
        found[spec.name] = kind if found.get(spec.name, kind) == kind else pa.string()
    return found


def _answer_type(task: str, classes: list[Any]) -> pa.DataType:
    if task != "classification":
        return pa.float64()
    if classes and all(isinstance(c, int) and not isinstance(c, bool) for c in classes):
        return pa.int64()
    if classes and all(isinstance(c, bool) for c in classes):
        return pa.bool_()
    return pa.string()


# ---------------------------------------------------------------- reports


class ReportCorrections:
    """Confirmed error reports' corrections, looked up per page of rows. The reports table
    comes with the error reports (migration 0017); without it there are none."""

    def __init__(self, engine: Engine):
        self.present = inspect(engine).has_table("error_reports")
        self.reports = table(
            "error_reports",
            column("model"),
            column("request_id"),
            column("row_index"),
            column("status"),
            column("expected"),
            column("correction"),
            column("filed_by"),
            column("updated_at"),
        )

    def lookup(
        self, session: Session, model: str, keys: Sequence[tuple[str, int]]
    ) -> dict[tuple[str, int], tuple[Any, str, float]]:
        """(request id, row) -> (correction, filed by, updated at) of the newest confirmed
        report with a correction."""
        found: dict[tuple[str, int], tuple[Any, str, float]] = {}
        if not self.present or not keys:
            return found
        r = self.reports.c
        wanted = set(keys)
        ids = sorted({request_id for request_id, _ in keys})
        for start in range(0, len(ids), LOOKUP_CHUNK):
            rows = session.execute(
                select(
                    r.request_id,
                    r.row_index,
                    cast(r.correction, Text),
                    cast(r.expected, Text),
                    r.filed_by,
                    r.updated_at,
                )
                .where(
                    r.model == model,
                    r.request_id.in_(ids[start : start + LOOKUP_CHUNK]),
                    r.status.in_(CONFIRMED),
                )
                .order_by(r.updated_at)
            )
            for request_id, row_index, correction, expected, filed_by, updated_at in rows:
                key = (request_id, int(row_index))
                value = _json(correction)
                if value is None:
                    value = _json(expected)
                if key in wanted and value is not None:
                    # Ordered by time: the newest report is the last one kept.
                    found[key] = (value, filed_by, float(updated_at))
        return found


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)


# ---------------------------------------------------------------- rows


def resolve(row: Sequence[Any], report: tuple[Any, str, float] | None) -> Resolved:
    """One logged row's best label and its provenance (the module's docstring)."""
    held_out = row[reads.R_ROUTE] == HELD_OUT_ROUTE
    stored = row[reads.R_LABEL]
    source = row[reads.R_LABEL_SOURCE]
    if stored is not None and source == REVIEW_SOURCE:
        return Resolved(_json(stored), "review", source, row[reads.R_LABEL_AT], False)
    if report is not None:
        value, filed_by, updated_at = report
        return Resolved(value, "report", filed_by, updated_at, not held_out)
    if stored is not None:
        label = _json(stored)
        if label is not None:
            influenced = not held_out and row[reads.R_LABEL_INFLUENCED] is not False
            return Resolved(label, "feedback", source, row[reads.R_LABEL_AT], influenced)
    return Resolved(None, "unlabelled", None, None, None)


def resolved_pages(
    sessions: sessionmaker[Session],
    engine: Engine,
    plan: ExportPlan,
    *,
    payload: bool = True,
    page_rows: int = reads.PAGE_ROWS,
) -> Iterator[list[tuple[Sequence[Any], Resolved]]]:
    """The plan's rows that pass its label filters, each with its resolved label, a page of
    the log at a time (a page may come out empty after the filters)."""
    corrections = ReportCorrections(engine)
    for page in reads.export_pages(sessions, plan.window, payload=payload, page_rows=page_rows):
        reports: dict[tuple[str, int], tuple[Any, str, float]] = {}
        if corrections.present:
            with sessions() as session:
                reports = corrections.lookup(
                    session,
                    plan.model.name,
                    [(row[reads.R_REQUEST_ID], row[reads.R_ROW_INDEX]) for row in page],
                )
        kept = []
        for row in page:
            found = resolve(row, reports.get((row[reads.R_REQUEST_ID], row[reads.R_ROW_INDEX])))
            if plan.passes(found):
                kept.append((row, found))
        yield kept


def record_batch(plan: ExportPlan, rows: list[tuple[Sequence[Any], Resolved]]) -> pa.RecordBatch:
    """One page of resolved rows as Arrow columns of the plan's schema."""
    n = len(rows)
    features = {name: [None] * n for name in plan.features}
    probabilities = {name: [None] * n for name in plan.classes}
    answers: list[Any] = [None] * n
    class_index = {name: i for i, name in enumerate(plan.classes)}
    version_classes = _version_classes(plan)
    loads = orjson.loads
    for i, (row, _found) in enumerate(rows):
        values = loads(row[reads.R_FEATURES])
        for name, column_values in features.items():
            column_values[i] = values.get(name)
        outputs = loads(row[reads.R_OUTPUTS])
        answers[i] = outputs.get("predict")
        proba = outputs.get("predict_proba")
        if proba:
            for name, p in zip(version_classes.get(row[reads.R_VERSION], ()), proba, strict=False):
                if name in class_index:
                    probabilities[name][i] = p
    schema = plan.schema
    arrays = [
        _array([row[reads.R_REQUEST_ID] for row, _ in rows], pa.string()),
        _array([row[reads.R_ROW_INDEX] for row, _ in rows], pa.int64()),
        _array([row[reads.R_ENTITY_ID] for row, _ in rows], pa.string()),
        _times([row[reads.R_CREATED_AT] for row, _ in rows]),
        _array([row[reads.R_VERSION] for row, _ in rows], pa.string()),
        _array([row[reads.R_ROUTE] for row, _ in rows], pa.string()),
    ]
    arrays += [_array(values, plan.features[name]) for name, values in features.items()]
    arrays.append(_array(answers, plan.answer_type))
    arrays += [_array(values, pa.float64()) for values in probabilities.values()]
    arrays += [
        _array([found.label for _, found in rows], plan.answer_type),
        _array([found.source for _, found in rows], pa.string()),
        _array([found.by for _, found in rows], pa.string()),
        _times([found.at for _, found in rows]),
        _array([found.influenced for _, found in rows], pa.bool_()),
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _version_classes(plan: ExportPlan) -> dict[str, list[str]]:
    return {
        info.version: [category_text(c) or NO_LABEL for c in info.class_labels or []]
        for info in plan.model.versions
    }


def _times(values: list[float | None]) -> pa.Array:
    micros = [None if v is None else round(v * 1_000_000) for v in values]
    return pa.array(micros, type=pa.int64()).cast(UTC_TIME)


def _array(values: list[Any], kind: pa.DataType) -> pa.Array:
    """Values as one Arrow type; the few that do not convert as they are (a class label
    sent as text, a whole number stored as 3.0) one by one (None when they cannot be)."""
    try:
        return pa.array(values, type=kind)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError, OverflowError):
        return pa.array([_coerce(v, kind) for v in values], type=kind)


def _coerce(value: Any, kind: pa.DataType) -> Any:
    if value is None:
        return None
    if pa.types.is_string(kind):
        return value if isinstance(value, str) else orjson.dumps(value).decode()
    try:
        if pa.types.is_boolean(kind):
            return (
                value
                if isinstance(value, bool)
                else {"true": True, "false": False}.get(str(value).lower())
            )
        number = float(value)
        if pa.types.is_integer(kind):
            return int(number) if number.is_integer() else None
        return number if math.isfinite(number) else None
    except (TypeError, ValueError):
        return None
