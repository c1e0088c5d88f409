"""What a rollout step has shown so far, read from the prediction log and the labels.

Every worker logs to the same store, so any worker sees the whole traffic of the step.
Failures leave no prediction row: each worker counts its candidate calls and failures
(``serving.candidates``) and writes them to ``candidate_calls``, where they are summed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import CandidateCallsRow
from backend.monitoring.quality import live_metric
from backend.predictions.reads import labelled_since, window_rows
from backend.schemas import ModelVersionInfo, RolloutState

# The newest rows a step is judged on: bounds the work of one evaluation.
MAX_ROWS = 100_000
# Labelled candidate predictions needed before the live metric counts.
MIN_LABELLED = 30
# Regression answers agree when this close, relative to the active version's answer.
REGRESSION_AGREEMENT = 0.05


@dataclass
class StepObservation:
    candidate_samples: int = 0
    active_samples: int = 0
    candidate_p99_ms: float | None = None
    active_p99_ms: float | None = None
    compared: int = 0
    agreeing: int = 0
    labelled: int = 0
    live_metric: float | None = None
    metric_note: str = ""
    attempts: int = 0
    failures: int = 0


def step_calls(
    sessions: sessionmaker[Session], model: str, rollout: RolloutState
) -> tuple[int, int]:
    """(calls, failures) of the candidate in the current step, summed over every worker."""
    candidate, started = rollout.step_key()
    with sessions() as session:
        calls, failures = session.execute(
            select(
                func.coalesce(func.sum(CandidateCallsRow.calls), 0),
                func.coalesce(func.sum(CandidateCallsRow.failures), 0),
            ).where(
                CandidateCallsRow.model == model,
                CandidateCallsRow.candidate == candidate,
                CandidateCallsRow.step_started == started,
            )
        ).one()
    return int(calls), int(failures)


def observe_step(
    sessions: sessionmaker[Session],
    model: str,
    rollout: RolloutState,
    candidate: ModelVersionInfo,
) -> StepObservation:
    since = rollout.step_started_at.timestamp()
    # The active version's baseline spans the whole rollout: at a 100% step it gets no traffic.
    baseline_since = rollout.started_at.timestamp()
    candidate_route = "shadow" if rollout.phase == "shadow" else "canary"
    observation = StepObservation()
    shadow = rollout.phase == "shadow"
    # Answers are decoded only where they are compared (the shadow phase): decoding tens of
    # thousands of JSON documents every round would take CPU from the requests being served.
    rows = window_rows(sessions, model, baseline_since, with_answers=shadow, limit=MAX_ROWS)
    labelled = labelled_since(
        sessions, model, rollout.candidate, candidate_route, since, limit=MAX_ROWS
    )
    candidate_rows = [
        r
        for r in rows
        if r.route == candidate_route and r.version == rollout.candidate and r.created_at >= since
    ]
    active_rows = [r for r in rows if r.route == "active"]
    observation.candidate_samples = len(candidate_rows)
    observation.active_samples = len(active_rows)
    observation.candidate_p99_ms = _p99([r.latency_ms for r in candidate_rows])
    observation.active_p99_ms = _p99([r.latency_ms for r in active_rows])
    if shadow:
        answers = {
            (r.request_id, r.row_index): r.outputs.get("predict")
            for r in active_rows
            if r.created_at >= since
        }
        for row in candidate_rows:
            key = (row.request_id, row.row_index)
            if key in answers:
                observation.compared += 1
                observation.agreeing += _agree(answers[key], row.outputs.get("predict"))
    measured = live_metric(
        labelled, candidate.validity.metric, candidate.class_labels, MIN_LABELLED
    )
    observation.labelled = measured.labelled
    observation.live_metric = measured.value
    observation.metric_note = measured.note
    observation.attempts, observation.failures = step_calls(sessions, model, rollout)
    return observation


def _p99(values: list[float]) -> float | None:
    return float(np.percentile(values, 99)) if values else None


def _agree(active: Any, candidate: Any) -> bool:
    if isinstance(active, float) or isinstance(candidate, float):
        try:
            a, b = float(active), float(candidate)
        except (TypeError, ValueError):
            return False
        return math.isclose(a, b, rel_tol=REGRESSION_AGREEMENT, abs_tol=1e-9)
    return bool(active == candidate)
