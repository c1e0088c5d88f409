"""Labels and user signals (undo, complaint) arrive late and in bulk; each one is kept against
its (model, request id, row).

A request id is only unique within a model (a caller may choose it, and two models may
answer the same one), and a token may label only the predictions of models it may use. So a
label is bound to one model when it is accepted: the model of the logged prediction the
token may see, or, for a prediction not logged yet, the model the label names or the
token's only model. It joins that model's prediction and no other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from backend.auth import Principal
from backend.db.tables import LabelRow, ModelRow, ModelVersionRow
from backend.errors import Forbidden, InputError
from backend.predictions.loop_counts import sync_label_outcomes
from backend.predictions.reads import models_of
from backend.predictions.signal_counts import store_signals
from backend.schemas import LabelIn


def store_labels(
    sessions: sessionmaker[Session], labels: Sequence[LabelIn], principal: Principal
) -> tuple[int, int]:
    """Validate then upsert every label in one transaction; returns (accepted, unmatched).

    A label for a prediction that is not in the log yet (still in the writer's buffer, or
    logged by another worker) is kept for its model: it joins when the prediction lands.
    """
    for i, item in enumerate(labels):
        if item.model is not None and not principal.may_use_model(item.model):
            raise Forbidden(
                f"token {principal.name!r} may not label predictions of model {item.model!r}",
                f"labels[{i}].model",
            )
    _check_kinds(labels)
    keys = [(item.request_id, item.row) for item in labels]
    with sessions.begin() as session:
        logged = models_of(session, keys)
        bound: list[tuple[str, str | None]] = []  # (model, version when logged)
        for i, item in enumerate(labels):
            bound.append(_bind_to_model(item, logged.get(keys[i], []), principal, i))
        seen: set[tuple[str, str, int, str]] = set()
        for i, (model, _version) in enumerate(bound):
            key = (model, labels[i].request_id, labels[i].row, labels[i].kind)
            if key in seen:
                what = "labelled" if labels[i].kind == "label" else f"given {labels[i].kind}"
                raise InputError(f"the same prediction is {what} twice", f"labels[{i}]")
            seen.add(key)
        now = time.time()
        is_label = [item.kind == "label" for item in labels]
        _check_labels(session, labels, bound)
        _upsert_labels(
            session,
            [
                (model, item.request_id, item.row, item.label)
                for item, (model, _), keep in zip(labels, bound, is_label, strict=True)
                if keep
            ],
            principal.name,
            now,
        )
        # Signals are kept apart from labels (a prediction may have both), once per kind.
        store_signals(
            session,
            [
                (model, item.request_id, item.row, item.kind)
                for item, (model, _), keep in zip(labels, bound, is_label, strict=True)
                if not keep
            ],
            principal.name,
            now,
        )
    unmatched = sum(1 for _model, version in bound if version is None)
    return len(labels), unmatched


def _check_kinds(labels: Sequence[LabelIn]) -> None:
    """A label needs its value; a signal (undo, complaint) has none."""
    for i, item in enumerate(labels):
        if item.kind == "label" and item.label is None:
            raise InputError('a label is required (kind is "label")', f"labels[{i}].label")
        if item.kind != "label" and item.label is not None:
            raise InputError(
                f'a {item.kind} carries no label: send the label as its own item of kind "label"',
                f"labels[{i}].label",
            )


def _upsert_labels(
    session: Session, labels: Sequence[tuple[str, str, int, Any]], source: str, now: float
) -> None:
    if not labels:
        return
    rows = [
        {
            "model": model,
            "request_id": request_id,
            "row_index": row,
            "label": label,
            "received_at": now,
            "source": source,
        }
        for model, request_id, row, label in labels
    ]
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(LabelRow)
    statement = statement.on_conflict_do_update(
        index_elements=["model", "request_id", "row_index"],
        set_={
            "label": statement.excluded.label,
            "received_at": statement.excluded.received_at,
            "source": statement.excluded.source,
            # A label from elsewhere replaces a reviewer's: whether it was influenced by
            # the model is unknown again.
            "influenced": statement.excluded.influenced,
        },
    )
    session.execute(statement, rows)
    # The feedback-loop counts follow the labels in the same transaction (a replaced
    # label takes its old contribution out first).
    sync_label_outcomes(session, [(model, request_id, row) for model, request_id, row, _ in labels])


def _bind_to_model(
    item: LabelIn, logged: list[tuple[str, str]], principal: Principal, i: int
) -> tuple[str, str | None]:
    """The model (and version, when logged) this label belongs to.

    Predictions of models the token may not use are never considered: they neither take the
    label nor make it ambiguous, and the answer does not reveal that they exist.
    """
    visible = [
        (model, version)
        for model, version in logged
        if principal.may_use_model(model) and item.model in (None, model)
    ]
    if len(visible) == 1:
        return visible[0]
    if len(visible) > 1:
        names = ", ".join(sorted(model for model, _ in visible))
        raise InputError(
            f"request id {item.request_id!r} was answered by several models ({names}); "
            "name the model of the prediction to label",
            f"labels[{i}].model",
        )
    if item.model is not None:
        return item.model, None
    if principal.models is not None and len(principal.models) == 1:
        return next(iter(principal.models)), None
    raise InputError(
        f"no prediction {item.request_id!r} row {item.row} is in the log yet; name its model "
        "so that the label joins that model's prediction only (a request id is unique only "
        "within a model)",
        f"labels[{i}].model",
    )


def _check_labels(
    session: Session, labels: Sequence[LabelIn], bound: Sequence[tuple[str, str | None]]
) -> None:
    """A label must fit its prediction's version; a pending one every version of its model.
    A signal's model must exist."""
    versions = _versions(session, {model for model, _ in bound})
    for i, (item, (model, version)) in enumerate(zip(labels, bound, strict=True)):
        field = f"labels[{i}].label"
        of_model = versions.get(model)
        if of_model is None:
            raise InputError(f"no model named {model!r}", f"labels[{i}].model")
        if item.kind != "label":
            continue
        if version is not None and version in of_model:
            _check_label(item.label, *of_model[version], field)
        else:
            tasks = {task for task, _ in of_model.values()}
            classes = list(
                dict.fromkeys(
                    c for task, cs in of_model.values() if task == "classification" for c in cs
                )
            )
            task = tasks.pop() if len(tasks) == 1 else "regression"
            _check_label(item.label, task, classes, field)


def _versions(session: Session, models: set[str]) -> dict[str, dict[str, tuple[str, list[Any]]]]:
    """model -> version -> (task, class labels) for every registered version of ``models``."""
    if not models:
        return {}
    rows = session.execute(
        select(
            ModelRow.name,
            ModelVersionRow.number,
            ModelVersionRow.task,
            ModelVersionRow.class_labels,
        )
        .join(ModelRow, ModelVersionRow.model_id == ModelRow.id)
        .where(ModelRow.name.in_(models))
    ).all()
    found: dict[str, dict[str, tuple[str, list[Any]]]] = {}
    for name, number, task, classes in rows:
        found.setdefault(name, {})[str(number)] = (task, list(classes or []))
    return found


def _check_label(label: Any, task: str, classes: list[Any], field: str) -> None:
    if task != "classification":
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise InputError(f"a regression label is a number, got {label!r}", field)
        return
    if label not in classes and str(label) not in {str(c) for c in classes}:
        raise InputError(f"unknown class {label!r}; classes: {classes}", field)
