"""Labelled outcomes per prediction minute, kept as labels arrive (the feedback-loop counts).

Labels come after their predictions, so the counts are kept at label time: in the transaction
that stores a label (any source), ``sync_label_outcomes`` adds its contribution to the row of
its prediction's (model, version, route, minute) in ``feedback_loop_counts``, and records
what it added in ``feedback_loop_contributions`` (compactly: the labelled ``Outcome`` the
counts expand from, about 200 bytes a label). A label replaced or taken back first
subtracts what it had added, so syncing a label any number of times counts it once.

A label whose prediction is not logged yet (still in the writer's buffer) adds nothing then
and is marked as waiting (a contribution row of minute ``PENDING``); ``count_recent_labels``
(run by the feedback-loop watch every round) counts the recent waiting ones whose prediction
has landed since.

A minute's counts are a map from a key (a JSON list, encoded as text) to a number:

- ``["n"]`` labelled predictions; ``["pn"]`` of them with class probabilities;
- ``["cm", answer, label]`` the confusion counts (the model's own answer x the label);
- ``["p", class]`` the sum of the predicted probability of each class;
- ``["inf", label, "true" | "false" | "unknown"]`` labels by whether the model's answer could
  have decided them (``labels.influenced``);
- ``["s", feature, bin, "n" | "pn"]``, ``["s", feature, bin, "y", label]``,
  ``["s", feature, bin, "p", class]`` the same per slice of every input feature, kept in a
  row of that feature (a report reads the base row and the one feature it slices by).

Classes, answers and labels are counted as text (``category_text``: 1 and 1.0 alike). A
regression model's rows hold only ``n`` and ``inf`` (label "*"): its other indicators are
about classes. Slices come from the version's drift reference: a numerical feature's deciles
(from its quantile edges), a categorical one's ten most frequent categories and ``(other)``;
a missing value is the slice ``(missing)``. Predictions per route and answer are not counted
here: the drift window counts have them (``window_reads``).
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import and_, delete, exists, false, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import (
    DriftReferenceRow,
    LabelRow,
    LoopContributionRow,
    LoopCountRow,
    ModelRow,
    ModelVersionRow,
    PredictionRow,
)
from backend.predictions.reads import SHADOW_ROUTE, logged_by_keys
from backend.predictions.summary_layout import (
    CONFIDENCE,
    PREDICTION,
    category_text,
    numeric_value,
)

MINUTE_S = 60
# The feature of a minute's base row (its other rows hold one sliced feature each).
BASE = ""
# The minute of a label still waiting for its prediction.
PENDING = -1
SLICES = 10
MISSING = "(missing)"
OTHER = "(other)"
REGRESSION_LABEL = "*"
LOOKUP_CHUNK = 500
# Counts this close to zero after a subtraction are zero (float sums of probabilities).
ZERO = 1e-9

Key = tuple[Any, ...]
LabelKey = tuple[str, str, int]  # (model, request id, row index)


Counts = dict[Key, float]


def merge(into: Counts, other: Mapping[Key, float], sign: float = 1.0) -> Counts:
    """Add (``sign`` -1: subtract) ``other`` into ``into``; returns ``into``."""
    for key, value in other.items():
        into[key] = into.get(key, 0.0) + sign * value
    return into


def encode_key(key: Key) -> str:
    return orjson.dumps(list(key)).decode()


def decode_counts(text: str) -> dict[Key, float]:
    return {tuple(orjson.loads(k)): float(v) for k, v in orjson.loads(text).items()}


# ---------------------------------------------------------------- slices


@dataclass(frozen=True)
class Slicer:
    """The slices of one feature, from its drift reference."""

    feature: str
    kind: str  # "numerical" or "categorical"
    # Numerical: the cut points (a value v is in slice bisect_left(edges, v)).
    edges: tuple[float, ...] = ()
    # Categorical: the categories with a slice of their own.
    categories: tuple[str, ...] = ()

    def slice_of(self, value: Any) -> str:
        if self.kind == "numerical":
            number = numeric_value(value)
            if number is None:
                return MISSING
            return str(bisect.bisect_left(self.edges, number))
        text = category_text(value)
        if text is None:
            return MISSING
        return text if text in self.categories else OTHER

    def ordered(self) -> list[str]:
        """Every slice, in the order a person reads them."""
        if self.kind == "numerical":
            return [str(i) for i in range(len(self.edges) + 1)] + [MISSING]
        return [*self.categories, OTHER, MISSING]

    def words(self, slice_key: str) -> str:
        if self.kind != "numerical" or slice_key == MISSING:
            return slice_key
        i, edges = int(slice_key), self.edges
        if not edges:
            return "all values"
        if i == 0:
            return f"<= {edges[0]:.4g}"
        if i == len(edges):
            return f"> {edges[-1]:.4g}"
        return f"({edges[i - 1]:.4g}, {edges[i]:.4g}]"


def slicers_of(summary: dict[str, Any]) -> dict[str, Slicer]:
    """Every input feature's slicer, in the reference's order (the model's outputs left out)."""
    found: dict[str, Slicer] = {}
    for name, feature in summary.get("features", {}).items():
        if name in (PREDICTION, CONFIDENCE):
            continue
        if feature.get("kind") == "numerical":
            fine = feature.get("edges") or []
            # The fine edges are quantiles at evenly spaced levels: every tenth of them is a
            # decile (unique values: a feature with few distinct values has fewer slices).
            picks = [fine[round(i * (len(fine) - 1) / SLICES)] for i in range(1, SLICES)]
            edges = tuple(sorted(set(float(e) for e in picks))) if fine else ()
            found[name] = Slicer(name, "numerical", edges=edges)
        elif feature.get("kind") == "categorical":
            ranked = sorted(feature.get("categories", {}).items(), key=lambda kv: (-kv[1], kv[0]))
            found[name] = Slicer(
                name, "categorical", categories=tuple(k for k, _ in ranked[:SLICES])
            )
    return found


def reference_slicers(session: Session, model: str, version: str) -> dict[str, Slicer]:
    text = session.scalar(
        select(DriftReferenceRow.summary).where(
            DriftReferenceRow.model == model, DriftReferenceRow.version == version
        )
    )
    return {} if text is None else slicers_of(orjson.loads(text))


# ---------------------------------------------------------------- one label's contribution


@dataclass(frozen=True)
class Outcome:
    """What one labelled prediction says, compactly: what a label's contribution is made of
    (kept per label, about 200 bytes, and expanded into counts when added or taken out)."""

    mark: str  # "true", "false", "unknown": influenced by the model's answer?
    truth: str | None  # the label as text; None for a regression model
    answer: str | None
    probabilities: tuple[float, ...] | None
    # feature -> its slice
    slices: dict[str, str]

    def to_json(self) -> str:
        return orjson.dumps(
            {
                "i": self.mark,
                "y": self.truth,
                "a": self.answer,
                "p": self.probabilities,
                "s": self.slices,
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> Outcome:
        data = orjson.loads(text)
        probabilities = data.get("p")
        return cls(
            mark=data["i"],
            truth=data.get("y"),
            answer=data.get("a"),
            probabilities=None if probabilities is None else tuple(probabilities),
            slices=dict(data.get("s") or {}),
        )


def labelled_outcome(
    classes: Sequence[str] | None,
    outputs: dict[str, Any],
    features: dict[str, Any],
    label: Any,
    influenced: bool | None,
    slicers: dict[str, Slicer],
) -> Outcome:
    """One labelled prediction as the counts take it (``classes`` None: regression)."""
    mark = "unknown" if influenced is None else ("true" if influenced else "false")
    if classes is None:
        return Outcome(mark, None, None, None, {})
    probabilities = outputs.get("predict_proba")
    usable = (
        isinstance(probabilities, list)
        and len(probabilities) == len(classes) > 0
        and all(isinstance(p, int | float) and math.isfinite(p) for p in probabilities)
    )
    return Outcome(
        mark=mark,
        truth=category_text(label) or MISSING,
        answer=category_text(outputs.get("predict")) or MISSING,
        probabilities=tuple(float(p) for p in probabilities or ()) if usable else None,
        slices={
            feature: slicer.slice_of(features.get(feature) if isinstance(features, dict) else None)
            for feature, slicer in slicers.items()
        },
    )


def expand(outcome: Outcome, classes: Sequence[str] | None) -> Counts:
    """The counts one labelled outcome adds (the keys of the module's docstring)."""
    added: Counts = defaultdict(float)
    added[("n",)] += 1
    if outcome.truth is None or classes is None:
        added[("inf", REGRESSION_LABEL, outcome.mark)] += 1
        return added
    truth, probabilities = outcome.truth, outcome.probabilities
    usable = probabilities is not None and len(probabilities) == len(classes)
    added[("cm", outcome.answer, truth)] += 1
    added[("inf", truth, outcome.mark)] += 1
    if usable:
        assert probabilities is not None
        added[("pn",)] += 1
        for name, p in zip(classes, probabilities, strict=True):
            added[("p", name)] += p
    for feature, where in outcome.slices.items():
        added[("s", feature, where, "n")] += 1
        added[("s", feature, where, "y", truth)] += 1
        if usable:
            assert probabilities is not None
            added[("s", feature, where, "pn")] += 1
            for name, p in zip(classes, probabilities, strict=True):
                added[("s", feature, where, "p", name)] += p
    return added


# ---------------------------------------------------------------- kept at label time


def sync_label_outcomes(session: Session, keys: Iterable[LabelKey]) -> int:
    """Bring the counts in line with the current labels of ``keys`` (inside the caller's
    transaction): what a key added before is taken out, what its label adds now goes in.
    Returns how many labels are counted now."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return 0
    if session.get_bind().dialect.name == "sqlite":
        # The store's write lock before the reads below (pysqlite begins a transaction only at
        # the first write): a label counted by two writers at once would be counted twice.
        session.execute(delete(LoopContributionRow).where(false()))
    labels = _labels(session, wanted)
    predictions = logged_by_keys(session, wanted, with_payload=True, chunk=LOOKUP_CHUNK)
    before = _contributions(session, wanted)
    versions = _version_classes(session, {model for model, _, _ in wanted})
    slicers: dict[tuple[str, str], dict[str, Slicer]] = {}
    groups: dict[tuple[str, str, str, int], Counts] = {}
    counted = 0
    for key in wanted:
        old = before.get(key)
        if old is not None:
            if old.minute != PENDING:
                group = groups.setdefault((key[0], old.version, old.route, old.minute), {})
                taken = expand(Outcome.from_json(old.outcome), versions.get((key[0], old.version)))
                merge(group, taken, -1.0)
            session.delete(old)
        found = labels.get(key)
        logged = predictions.get(key)
        if found is None:
            continue
        if logged is None:
            # Counted once its prediction lands (``count_recent_labels``): marked so that the
            # catch-up reads these few, never every recent label.
            session.add(
                LoopContributionRow(
                    model=key[0],
                    request_id=key[1],
                    row_index=key[2],
                    version="",
                    route="",
                    minute=PENDING,
                    outcome="",
                )
            )
            continue
        version, route, created_at, features, outputs = logged
        if (key[0], version) not in slicers:
            slicers[(key[0], version)] = reference_slicers(session, key[0], version)
        classes = versions.get((key[0], version))
        outcome = labelled_outcome(
            classes,
            outputs if isinstance(outputs, dict) else {},
            features if isinstance(features, dict) else {},
            found[0],
            found[1],
            slicers[(key[0], version)],
        )
        added = expand(outcome, classes)
        minute = int(created_at // MINUTE_S) * MINUTE_S
        merge(groups.setdefault((key[0], version, route, minute), {}), added)
        session.add(
            LoopContributionRow(
                model=key[0],
                request_id=key[1],
                row_index=key[2],
                version=version,
                route=route,
                minute=minute,
                outcome=outcome.to_json(),
            )
        )
        counted += 1
    session.flush()
    # Always in the same order, or two writers locking minutes in turn deadlock (PostgreSQL).
    for where, delta in sorted(groups.items()):
        _apply(session, where, delta)
    return counted


def _encode(counts: Mapping[Key, float]) -> str:
    return orjson.dumps({encode_key(k): v for k, v in counts.items()}).decode()


def _apply(session: Session, group: tuple[str, str, str, int], delta: Counts) -> None:
    """Add ``delta`` to one minute's rows: its base row (feature "") and one row per sliced
    feature, so that a report reads the one feature it slices by. Each row is made first when
    missing and locked while it is read and written (PostgreSQL; SQLite holds the whole
    store's write lock already)."""
    parts: dict[str, Counts] = {}
    for key, value in delta.items():
        feature = str(key[1]) if key[0] == "s" else BASE
        parts.setdefault(feature, {})[key] = value
    model, version, route, minute = group
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    for feature, part in sorted(parts.items()):
        session.execute(
            insert(LoopCountRow)
            .values(
                model=model,
                version=version,
                route=route,
                minute=minute,
                feature=feature,
                labelled=0,
                counts="{}",
            )
            .on_conflict_do_nothing(
                index_elements=["model", "version", "route", "minute", "feature"]
            )
        )
        where = and_(
            LoopCountRow.model == model,
            LoopCountRow.version == version,
            LoopCountRow.route == route,
            LoopCountRow.minute == minute,
            LoopCountRow.feature == feature,
        )
        text = session.scalar(select(LoopCountRow.counts).where(where).with_for_update())
        counts = merge(decode_counts(text or "{}"), part)
        kept = {k: _tidy(v) for k, v in counts.items() if abs(v) > ZERO}
        labelled = round(
            sum(v for k, v in kept.items() if k == ("n",) or (k[0] == "s" and k[3:] == ("n",)))
        )
        # A row whose labels were all taken out stays (empty): deleting it would let a writer
        # that found it before the delete add its counts to a row that is gone (PostgreSQL).
        session.execute(
            update(LoopCountRow)
            .where(where)
            .values(labelled=max(labelled, 0), counts=_encode(kept))
        )


def _tidy(value: float) -> float:
    # Counts stay whole numbers through additions and subtractions of float sums.
    nearest = round(value)
    return float(nearest) if abs(value - nearest) < ZERO else value


def _chunks(keys: Sequence[LabelKey]) -> Iterable[Sequence[LabelKey]]:
    for start in range(0, len(keys), LOOKUP_CHUNK):
        yield keys[start : start + LOOKUP_CHUNK]


def _labels(session: Session, keys: Sequence[LabelKey]) -> dict[LabelKey, tuple[Any, bool | None]]:
    found: dict[LabelKey, tuple[Any, bool | None]] = {}
    wanted = set(keys)
    for chunk in _chunks(keys):
        rows = session.execute(
            select(
                LabelRow.model,
                LabelRow.request_id,
                LabelRow.row_index,
                LabelRow.label,
                LabelRow.influenced,
            )
            .where(
                LabelRow.model.in_({k[0] for k in chunk}),
                LabelRow.request_id.in_({k[1] for k in chunk}),
            )
            # Held until commit: a label is counted by one writer at a time (PostgreSQL).
            .with_for_update()
        )
        for model, request_id, row_index, label, influenced in rows:
            key = (model, request_id, row_index)
            if key in wanted and label is not None:
                found[key] = (label, influenced)
    return found


def _contributions(session: Session, keys: Sequence[LabelKey]) -> dict[LabelKey, Any]:
    found: dict[LabelKey, Any] = {}
    wanted = set(keys)
    for chunk in _chunks(keys):
        rows = session.scalars(
            select(LoopContributionRow)
            .where(
                LoopContributionRow.model.in_({k[0] for k in chunk}),
                LoopContributionRow.request_id.in_({k[1] for k in chunk}),
            )
            .with_for_update()
        )
        for row in rows:
            key = (row.model, row.request_id, row.row_index)
            if key in wanted:
                found[key] = row
    return found


def _version_classes(session: Session, models: set[str]) -> dict[tuple[str, str], list[str] | None]:
    """(model, version) -> its classes as text (None: a regression model)."""
    rows = session.execute(
        select(
            ModelRow.name,
            ModelVersionRow.number,
            ModelVersionRow.task,
            ModelVersionRow.class_labels,
        )
        .join(ModelRow, ModelVersionRow.model_id == ModelRow.id)
        .where(ModelRow.name.in_(models))
    )
    return {
        (name, str(number)): (
            [category_text(c) or MISSING for c in classes or []]
            if task == "classification"
            else None
        )
        for name, number, task, classes in rows
    }


def count_recent_labels(sessions: sessionmaker[Session], since: float, limit: int = 5_000) -> int:
    """Count the labels received since ``since`` that waited for their prediction (they came
    before it was written) and whose prediction is logged now. Reads the waiting labels only
    (marked at label time), so a round costs in proportion to them, not to the labels."""
    logged = exists().where(
        PredictionRow.request_id == LoopContributionRow.request_id,
        PredictionRow.row_index == LoopContributionRow.row_index,
        PredictionRow.model == LoopContributionRow.model,
        PredictionRow.route != SHADOW_ROUTE,
    )
    pending = LoopContributionRow
    with sessions.begin() as session:
        keys: list[LabelKey] = [
            (model, request_id, row_index)
            for model, request_id, row_index in session.execute(
                select(pending.model, pending.request_id, pending.row_index)
                .join(
                    LabelRow,
                    and_(
                        LabelRow.model == pending.model,
                        LabelRow.request_id == pending.request_id,
                        LabelRow.row_index == pending.row_index,
                    ),
                )
                .where(pending.minute == PENDING, LabelRow.received_at >= since, logged)
                .limit(limit)
            )
        ]
        return sync_label_outcomes(session, keys)


# ---------------------------------------------------------------- reads


def read_loop_counts(
    session: Session,
    model: str,
    version: str,
    routes: Sequence[str],
    start: float,
    end: float,
    slice_feature: str | None = None,
) -> list[tuple[int, str, dict[Key, float]]]:
    """(minute, route, counts) of the counted rows of [start, end) (by prediction time): the
    base counts, and the slices of ``slice_feature`` (none: no slices)."""
    rows = session.execute(
        select(LoopCountRow.minute, LoopCountRow.route, LoopCountRow.counts).where(
            LoopCountRow.model == model,
            LoopCountRow.version == version,
            LoopCountRow.route.in_(list(routes)),
            LoopCountRow.minute >= math.floor(start),
            LoopCountRow.minute < math.ceil(end),
            LoopCountRow.feature.in_([BASE] if slice_feature is None else [BASE, slice_feature]),
        )
    )
    return [(int(minute), route, decode_counts(text)) for minute, route, text in rows]
