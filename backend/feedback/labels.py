"""Labels arrive late and in bulk; each one is kept against its (request id, row)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from backend.auth import Principal
from backend.db.tables import LabelRow, ModelRow, ModelVersionRow
from backend.errors import Forbidden, InputError
from backend.predictions.reads import models_of
from backend.schemas import LabelIn


def store_labels(
    sessions: sessionmaker[Session], labels: Sequence[LabelIn], principal: Principal
) -> tuple[int, int]:
    """Validate then upsert every label in one transaction; returns (accepted, unmatched).

    A label for a prediction that is not in the log yet (still in the writer's buffer, or
    logged by another worker) is kept: it joins when the prediction lands.
    """
    keys = [(item.request_id, item.row) for item in labels]
    seen: set[tuple[str, int]] = set()
    for i, key in enumerate(keys):
        if key in seen:
            raise InputError("the same prediction is labelled twice", f"labels[{i}]")
        seen.add(key)
    with sessions.begin() as session:
        known = models_of(session, keys)
        classes = _class_labels(session, {model_version for model_version in known.values()})
        for i, item in enumerate(labels):
            found = known.get((item.request_id, item.row))
            if found is None:
                continue
            model, version = found
            if not principal.may_use_model(model):
                raise Forbidden(
                    f"token may not label predictions of model {model!r}", f"labels[{i}].request_id"
                )
            _check_label(item.label, classes.get((model, version)), f"labels[{i}].label")
        now = time.time()
        rows = [
            {
                "request_id": item.request_id,
                "row_index": item.row,
                "label": item.label,
                "received_at": now,
                "source": principal.name,
            }
            for item in labels
        ]
        dialect = session.get_bind().dialect.name
        insert = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(LabelRow)
        statement = statement.on_conflict_do_update(
            index_elements=["request_id", "row_index"],
            set_={
                "label": statement.excluded.label,
                "received_at": statement.excluded.received_at,
                "source": statement.excluded.source,
            },
        )
        session.execute(statement, rows)
    return len(labels), len(labels) - len(known)


def _class_labels(
    session: Session, model_versions: set[tuple[str, str]]
) -> dict[tuple[str, str], list[Any] | None]:
    if not model_versions:
        return {}
    rows = session.execute(
        select(
            ModelRow.name,
            ModelVersionRow.number,
            ModelVersionRow.task,
            ModelVersionRow.class_labels,
        )
        .join(ModelRow, ModelVersionRow.model_id == ModelRow.id)
        .where(
            tuple_(ModelRow.name, ModelVersionRow.number).in_(
                [(name, int(version)) for name, version in model_versions if version.isdigit()]
            )
        )
    ).all()
    return {
        (name, str(number)): labels if task == "classification" else None
        for name, number, task, labels in rows
    }


def _check_label(label: Any, classes: list[Any] | None, field: str) -> None:
    if label is None:
        raise InputError("a label is required", field)
    if classes is None:
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise InputError(f"a regression label is a number, got {label!r}", field)
        return
    if label not in classes and str(label) not in {str(c) for c in classes}:
        raise InputError(f"unknown class {label!r}; classes: {classes}", field)
