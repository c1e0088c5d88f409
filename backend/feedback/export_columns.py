"""One page of the log as an Arrow record batch of the export's schema, built by columns.

A million rows must export in seconds, so no Python code runs per row and per feature: the
page's features and outputs (JSON text, one object per row) are parsed by Arrow's JSON reader
straight into typed columns, and the label's provenance is decided with Arrow compute over
whole columns (the rule: ``export_query``'s docstring). Values that do not fit their column's
type (a class label sent as text, a version whose classes differ) fall back to a conversion
value by value for that page only.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from backend.feedback.export_query import (
    HELD_OUT_ROUTE,
    NO_LABEL,
    NUMBER,
    REVIEW_SOURCE,
    UTC_TIME,
    Corrections,
    ExportPlan,
)
from backend.predictions import export_reads as reads
from backend.predictions.summary_layout import category_text

# Arrow's JSON reader parses blocks of this many bytes (in parallel); a row's JSON must fit.
JSON_BLOCK = 16 << 20

_PAYLOAD = (reads.R_FEATURES, reads.R_OUTPUTS)

# What the label columns come out as, before the features are added.
LABEL_SCHEMA = pa.schema(
    [
        ("label_source", pa.string()),
        ("label_by", pa.string()),
        ("labelled_at", UTC_TIME),
        ("influenced", pa.bool_()),
    ]
)


def page_batch(
    plan: ExportPlan,
    rows: Sequence[Sequence[Any]],
    reports: Corrections,
    reviews: Corrections,
    *,
    payload: bool,
) -> pa.RecordBatch:
    """The page's rows that pass the plan's label filters, in the plan's schema (without the
    payload: the fixed columns and the label columns only, for counting)."""
    # Column by column (``zip(*rows)`` over a page of rows costs several times more).
    columns: list[Sequence[Any]] = [
        [row[i] for row in rows] if payload or i not in _PAYLOAD else ()
        for i in range(reads.R_LABEL_INFLUENCED + 1)
    ]
    label, source, by, at, influenced = _labels(plan, columns, reports, reviews)
    keep = _filter(plan, label, source, influenced)
    kept = pc.indices_nonzero(keep)
    all_kept = len(kept) == len(rows)

    def picked(values: Sequence[Any]) -> Sequence[Any]:
        if all_kept:
            return values
        return [values[i] for i in kept.to_pylist()]

    def take(array: pa.Array) -> pa.Array:
        return array if all_kept else array.take(kept)

    fixed = [
        _array(picked(columns[reads.R_REQUEST_ID]), pa.string()),
        _array(picked(columns[reads.R_ROW_INDEX]), pa.int64()),
        _array(picked(columns[reads.R_ENTITY_ID]), pa.string()),
        _times(_array(picked(columns[reads.R_CREATED_AT]), pa.float64())),
        _array(picked(columns[reads.R_VERSION]), pa.string()),
        _array(picked(columns[reads.R_ROUTE]), pa.string()),
    ]
    tail = [take(label), take(source), take(by), _times(take(at)), take(influenced)]
    if not payload:
        names = [f.name for f in plan.schema][: len(fixed)]
        names += ["label", *LABEL_SCHEMA.names]
        return pa.RecordBatch.from_arrays([*fixed, *tail], names=names)
    features = _features(plan, picked(columns[reads.R_FEATURES]))
    answers, probabilities = _outputs(
        plan, picked(columns[reads.R_OUTPUTS]), picked(columns[reads.R_VERSION])
    )
    return pa.RecordBatch.from_arrays(
        [*fixed, *features, answers, *probabilities, *tail], schema=plan.schema
    )


def class_texts(plan: ExportPlan, batch: pa.RecordBatch) -> pa.Array:
    """Each row's label as the counts name its class ("(none)" unlabelled, "(number)" for a
    regression model's labels)."""
    label = batch.column("label")
    unlabelled = pc.equal(batch.column("label_source"), "unlabelled")
    if plan.task != "classification":
        texts: pa.Array = pa.array([NUMBER] * len(label), pa.string())
    elif pa.types.is_floating(label.type):
        texts = pa.array([category_text(v) for v in label.to_pylist()], pa.string())
    else:
        texts = pc.cast(label, pa.string())
    return pc.if_else(unlabelled, NO_LABEL, pc.fill_null(texts, NO_LABEL))


# ---------------------------------------------------------------- provenance


def _looked_up(
    plan: ExportPlan, columns: list[Sequence[Any]], found: Corrections
) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array]:
    """(has one, label, by, at) of every row of the page in ``found``."""
    n = len(columns[reads.R_CREATED_AT])
    if not found:
        return (
            pa.array([False] * n, pa.bool_()),
            pa.nulls(n, plan.answer_type),
            pa.nulls(n, pa.string()),
            pa.nulls(n, pa.float64()),
        )
    hits = [
        found.get(key)
        for key in zip(columns[reads.R_REQUEST_ID], columns[reads.R_ROW_INDEX], strict=True)
    ]
    return (
        pa.array([h is not None for h in hits], pa.bool_()),
        _array([h[0] if h else None for h in hits], plan.answer_type),
        pa.array([h[1] if h else None for h in hits], pa.string()),
        pa.array([h[2] if h else None for h in hits], pa.float64()),
    )


def _labels(
    plan: ExportPlan, columns: list[Sequence[Any]], reports: Corrections, reviews: Corrections
) -> tuple[pa.Array, pa.Array, pa.Array, pa.Array, pa.Array]:
    """(label, source, by, at, influenced) of every row of the page, by the provenance rule."""
    n = len(columns[reads.R_CREATED_AT])
    stored = _json_values(columns[reads.R_LABEL], plan.answer_type)
    stored_by = pa.array(columns[reads.R_LABEL_SOURCE], pa.string())
    present = pc.is_valid(stored)
    # Booleans come as the driver gives them (SQLite: 0 and 1).
    stored_influenced = pa.array(columns[reads.R_LABEL_INFLUENCED]).cast(pa.bool_())
    marked_not = pc.fill_null(pc.equal(stored_influenced, False), False)
    # A feedback label's source is its token's name, and a token may be called "review":
    # only the review queue stores its labels marked as not influenced.
    stored_review = pc.and_(
        pc.and_(present, marked_not), pc.fill_null(pc.equal(stored_by, REVIEW_SOURCE), False)
    )
    # The review queue's answer is the best label, whatever label is stored beside it.
    queued, queued_label, queued_by, queued_at = _looked_up(plan, columns, reviews)
    review = pc.or_(stored_review, queued)
    has_report, report_label, report_by, report_at = _looked_up(plan, columns, reports)
    by_report = pc.and_(has_report, pc.invert(review))
    source = pc.if_else(
        review,
        "review",
        pc.if_else(by_report, "report", pc.if_else(present, "feedback", "unlabelled")),
    )
    stored_at = pa.array(columns[reads.R_LABEL_AT], pa.float64())
    label = pc.if_else(queued, queued_label, pc.if_else(by_report, report_label, stored))
    by = pc.if_else(queued, queued_by, pc.if_else(by_report, report_by, stored_by))
    at = pc.if_else(queued, queued_at, pc.if_else(by_report, report_at, stored_at))
    served = pc.not_equal(pa.array(columns[reads.R_ROUTE], pa.string()), HELD_OUT_ROUTE)
    influenced = pc.if_else(
        review,
        False,
        pc.if_else(
            by_report,
            served,
            pc.if_else(present, pc.and_(served, pc.invert(marked_not)), pa.nulls(n, pa.bool_())),
        ),
    )
    return label, source, by, at, influenced


def _filter(plan: ExportPlan, label: pa.Array, source: pa.Array, influenced: pa.Array) -> pa.Array:
    request = plan.request
    keep = pc.is_in(source, pa.array(request.sources, pa.string()))
    if request.uninfluenced_only:
        keep = pc.and_(keep, pc.fill_null(pc.equal(influenced, False), False))
    if plan.class_filter is not None:
        batch = pa.RecordBatch.from_arrays([label, source], names=["label", "label_source"])
        wanted = pa.array(sorted(plan.class_filter), pa.string())
        keep = pc.and_(keep, pc.is_in(class_texts(plan, batch), wanted))
    return keep


# ---------------------------------------------------------------- features and outputs


def _features(plan: ExportPlan, texts: Sequence[str]) -> list[pa.Array]:
    schema = pa.schema([(name, kind) for name, kind in plan.features.items()])
    parsed = _read_json(texts, schema)
    if parsed is not None:
        return [parsed.column(name).combine_chunks() for name in plan.features]
    values = [orjson.loads(text) for text in texts]
    return [_array([row.get(name) for row in values], kind) for name, kind in plan.features.items()]


def _outputs(
    plan: ExportPlan, texts: Sequence[str], versions: Sequence[str]
) -> tuple[pa.Array, list[pa.Array]]:
    schema = pa.schema([("predict", plan.answer_type), ("predict_proba", pa.list_(pa.float64()))])
    parsed = _read_json(texts, schema)
    same_classes = all(
        [category_text(c) or NO_LABEL for c in info.class_labels or []] == plan.classes
        for info in plan.model.versions
        if info.version in set(versions)
    )
    if parsed is not None and same_classes:
        probabilities = parsed.column("predict_proba").combine_chunks()
        lengths = pc.fill_null(pc.list_value_length(probabilities), len(plan.classes))
        if pc.all(pc.equal(lengths, len(plan.classes))).as_py() is not False:
            return parsed.column("predict").combine_chunks(), [
                pc.list_element(pc.fill_null(probabilities, [None] * len(plan.classes)), i)
                for i in range(len(plan.classes))
            ]
    return _outputs_by_row(plan, texts, versions)


def _outputs_by_row(
    plan: ExportPlan, texts: Sequence[str], versions: Sequence[str]
) -> tuple[pa.Array, list[pa.Array]]:
    """The slow path: each version's probabilities put under its own classes' columns."""
    position = {name: i for i, name in enumerate(plan.classes)}
    of_version = {
        info.version: [category_text(c) or NO_LABEL for c in info.class_labels or []]
        for info in plan.model.versions
    }
    answers: list[Any] = []
    probabilities: list[list[Any]] = [[None] * len(texts) for _ in plan.classes]
    for i, (text, version) in enumerate(zip(texts, versions, strict=True)):
        outputs = orjson.loads(text)
        answers.append(outputs.get("predict"))
        for name, p in zip(
            of_version.get(version, ()), outputs.get("predict_proba") or (), strict=False
        ):
            if name in position:
                probabilities[position[name]][i] = p
    return _array(answers, plan.answer_type), [_array(v, pa.float64()) for v in probabilities]


def _read_json(texts: Sequence[str], schema: pa.Schema) -> pa.Table | None:
    """One JSON object per text as a table of ``schema`` (other keys ignored); None when a
    value does not fit its type."""
    if not texts:
        return pa.table({f.name: pa.array([], f.type) for f in schema}, schema=schema)
    try:
        return pa_json.read_json(
            io.BytesIO("\n".join(texts).encode()),
            # One thread: the page ahead is read meanwhile, and 2 cores are the target.
            read_options=pa_json.ReadOptions(block_size=JSON_BLOCK, use_threads=False),
            parse_options=pa_json.ParseOptions(
                explicit_schema=schema, unexpected_field_behavior="ignore"
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None


def _json_values(texts: Sequence[str | None], kind: pa.DataType) -> pa.Array:
    """JSON texts of scalars (None: missing) as one typed column. A number's or a boolean's
    JSON text is Arrow's own text form of it, so a cast reads it; text values are parsed."""
    raw = pa.array(texts, pa.string())
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        try:
            return pc.cast(raw, kind)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    wrapped = ['{"v":' + text + "}" if text is not None else "{}" for text in texts]
    parsed = _read_json(wrapped, pa.schema([("v", kind)]))
    if parsed is not None:
        return parsed.column("v").combine_chunks()
    return _array([None if t is None else orjson.loads(t) for t in texts], kind)


def _times(seconds: pa.Array) -> pa.Array:
    micros = pc.round(pc.multiply(seconds.cast(pa.float64()), 1_000_000.0))
    return micros.cast(pa.int64()).cast(UTC_TIME)


def _array(values: Sequence[Any], kind: pa.DataType) -> pa.Array:
    """Values as one Arrow type; the few that do not convert as they are (a class label
    sent as text, a whole number stored as 3.0) one by one (None when they cannot be)."""
    if pa.types.is_integer(kind) and any(isinstance(v, float) for v in values):
        # Arrow turns 0.7 into 0 without a word: a float becomes an integer only if whole.
        return pa.array([_coerce(v, kind) for v in values], type=kind)
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
            if isinstance(value, bool):
                return value
            return {"true": True, "false": False}.get(str(value).lower())
        number = float(value)
        if pa.types.is_integer(kind):
            fits = number.is_integer() and -(2.0**63) <= number < 2.0**63
            return int(number) if fits else None
        return number if math.isfinite(number) else None
    except (TypeError, ValueError):
        return None
