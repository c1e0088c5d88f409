"""The rules every report change follows: the workflow's transitions, what an answer must be
to fit a model's output, tag hygiene, and the stored row turned into its wire form."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.db.report_tables import ErrorReportRow
from backend.db.tables import ModelRow, ModelVersionRow
from backend.errors import InputError
from backend.schemas.reports import (
    MAX_TAG,
    REPORT_STATUSES,
    SEVERITIES,
    ReportStatus,
    ReportSummary,
)

# From each status, where a report may go next (the workflow). "duplicate" needs the
# original; leaving "duplicate" clears the link.
TRANSITIONS: dict[str, tuple[ReportStatus, ...]] = {
    "new": ("in_review", "needs_info", "confirmed", "not_model_error", "duplicate"),
    "in_review": ("needs_info", "confirmed", "not_model_error", "duplicate", "new"),
    "needs_info": ("in_review", "confirmed", "not_model_error", "duplicate"),
    "confirmed": ("resolved", "in_review"),
    "not_model_error": ("in_review",),
    "duplicate": ("in_review",),
    "resolved": ("in_review",),
}
STATUS_RANK: dict[str, int] = {status: rank for rank, status in enumerate(REPORT_STATUSES)}
# 0 is "no severity yet", so that sorting by severity puts unjudged reports last (descending).
SEVERITY_RANK: dict[str, int] = {
    severity: rank for rank, severity in enumerate(SEVERITIES, start=1)
}


def epoch_to_utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def clean_tags(tags: Sequence[str], field: str) -> list[str]:
    """Trimmed, printable tags of at most MAX_TAG characters, each once, in the given order."""
    cleaned: list[str] = []
    for i, raw in enumerate(tags):
        tag = raw.strip()
        if not tag:
            raise InputError("a tag may not be empty", f"{field}[{i}]")
        if len(tag) > MAX_TAG:
            raise InputError(f"a tag is at most {MAX_TAG} characters", f"{field}[{i}]")
        if not tag.isprintable():
            raise InputError(
                "a tag may hold printable characters only (no control characters)",
                f"{field}[{i}]",
            )
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def model_outputs(session: Session, model: str) -> dict[str, tuple[str, list[Any], list[Any]]]:
    """version -> (task, class labels, class names) for every registered version of ``model``."""
    rows = session.execute(
        select(
            ModelVersionRow.number,
            ModelVersionRow.task,
            ModelVersionRow.class_labels,
            ModelVersionRow.class_names,
        )
        .join(ModelRow, ModelVersionRow.model_id == ModelRow.id)
        .where(ModelRow.name == model)
    ).all()
    return {
        str(number): (task, list(labels or []), list(names or []))
        for number, task, labels, names in rows
    }


def fitted_answer(
    answer: Any,
    versions: Mapping[str, tuple[str, list[Any], list[Any]]],
    version: str | None,
    field: str,
) -> Any:
    """``answer`` as the model's output type: for a classifier one of its class labels (a
    class's name is taken as its label), for a regressor a finite number. Without a known
    version (a prediction still on its way to the log), what fits any version of the model."""
    chosen = (
        [versions[version]]
        if version is not None and version in versions
        else list(versions.values())
    )
    if not chosen:
        raise InputError("the model has no registered version to check the answer against", field)
    tasks = {task for task, _, _ in chosen}
    if tasks != {"classification"}:
        if "classification" in tasks:
            raise InputError(
                "the model's versions disagree on the output type; name a logged prediction",
                field,
            )
        if isinstance(answer, bool) or not isinstance(answer, int | float):
            raise InputError(f"this model answers a number; got {answer!r}", field)
        if not math.isfinite(answer):
            raise InputError("the expected number must be finite", field)
        return answer
    labels: list[Any] = []
    names: dict[str, Any] = {}
    for _task, version_labels, version_names in chosen:
        for i, label in enumerate(version_labels):
            if label not in labels:
                labels.append(label)
            if i < len(version_names):
                names.setdefault(str(version_names[i]), label)
    if isinstance(answer, bool):
        raise InputError(f"not one of the model's classes {labels}: {answer!r}", field)
    for label in labels:
        if answer == label or (isinstance(answer, str) and answer == str(label)):
            return label
    if isinstance(answer, str) and answer in names:
        return names[answer]
    known = labels + [name for name in names if name not in map(str, labels)]
    raise InputError(f"not one of the model's classes {known}: {answer!r}", field)


def summary_of(row: ErrorReportRow, tags: Sequence[str], notes: int) -> ReportSummary:
    return ReportSummary(
        id=row.id,
        model=row.model,
        version=row.version,
        request_id=row.request_id,
        row=row.row_index,
        category=row.category,  # type: ignore[arg-type]
        status=row.status,  # type: ignore[arg-type]
        severity=row.severity,  # type: ignore[arg-type]
        assignee=row.assignee,
        tags=list(tags),
        description=row.description,
        expected=row.expected,
        correction=row.correction,
        filed_by=row.filed_by,
        reporter=row.reporter,
        filed_at=epoch_to_utc(row.filed_at),
        updated_at=epoch_to_utc(row.updated_at),
        duplicate_of=row.duplicate_of,
        fixed_in_version=row.fixed_in_version,
        notes=notes,
    )
