"""What an export holds: its columns (from the versions' signatures), and each logged row
resolved to its best label, its provenance and whether the model could have shaped it.

Provenance, one label per row: a held-out review label (``labels.source`` "review" and stored
as not influenced: a token may be named "review") over a confirmed error report's correction
(status confirmed or resolved; its correction, else the reporter's expected answer; the newest
report wins) over any other label (source "feedback", named by the token that sent it).
Influenced: False for a held-out row (answered without the model) and for a review label,
otherwise True for a labelled row; a label marked as not influenced in the store stays so.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pyarrow as pa
from sqlalchemy import Text, cast, select
from sqlalchemy.orm import Session

from backend.db.report_tables import ErrorReportRow
from backend.db.tables import ReviewAssignmentRow, ReviewItemRow
from backend.errors import InputError
from backend.predictions import export_reads as reads
from backend.predictions.summary_layout import category_text
from backend.schemas import ExportColumn, ExportRequest, FeatureSpec, ModelInfo

REVIEW_SOURCE = "review"
HELD_OUT_ROUTE = "held_out"
CONFIRMED = ("confirmed", "resolved")
NO_LABEL = "(none)"
NUMBER = "(number)"

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
    # A class no chosen version knows would export nothing, and say nothing about why.
    for i, value in enumerate(request.classes if request.classes and classes else []):
        if (category_text(value) or NO_LABEL) not in classes:
            raise InputError(
                f"no chosen version of model {model.name!r} has class {value!r}; classes: "
                f"{', '.join(classes)}",
                f"classes[{i}]",
            )
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


# (request id, row) -> (correction, who filed it, when it last changed)
Corrections = dict[tuple[str, int], tuple[Any, str, float]]
# Who a review answer is by, in the export's label_by (the review queue's labels' source).
REVIEW_BY = "review"


def confirmed_corrections(session: Session, model: str) -> Corrections:
    """Every confirmed error report's correction of the model (or else the reporter's expected
    answer), the newest report's where a row has several. Read once per export: confirmed
    reports are triaged by people, a few per thousand predictions at most."""
    r = ErrorReportRow
    found: Corrections = {}
    rows = session.execute(
        select(
            r.request_id,
            r.row_index,
            cast(r.correction, Text),
            cast(r.expected, Text),
            r.filed_by,
            r.updated_at,
        )
        .where(r.model == model, r.status.in_(CONFIRMED))
        .order_by(r.updated_at, r.id)
    )
    for request_id, row_index, correction, expected, filed_by, updated_at in rows:
        value = _json(correction)
        if value is None:
            value = _json(expected)
        if value is not None:
            # Ordered by time: the newest report is the last one kept.
            found[(request_id, int(row_index))] = (value, filed_by, float(updated_at))
    return found


def review_answers(session: Session, model: str) -> Corrections:
    """Every reviewed held-out example's first answer (the review queue's label), by
    (request id, row): the best label there is, also where the stored label is another one
    (a feedback label stored before the review, or after it, replaces nothing here). Read
    once per export: people review a few examples a minute."""
    item, answer = ReviewItemRow, ReviewAssignmentRow
    found: Corrections = {}
    rows = session.execute(
        select(item.request_id, item.row_index, cast(answer.label, Text), answer.decided_at)
        .join(answer, answer.item_id == item.id)
        .where(item.model == model, answer.decision == "answer")
        # Newest first: the first answer is the last one kept.
        .order_by(answer.decided_at.desc(), answer.id.desc())
    )
    for request_id, row_index, label, decided_at in rows:
        value = _json(label)
        if value is not None:
            found[(request_id, int(row_index))] = (value, REVIEW_BY, float(decided_at or 0.0))
    return found


def _json(text: str | None) -> Any:
    return None if text is None else orjson.loads(text)
