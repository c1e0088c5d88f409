"""How long a rollout's steps take at the model's current traffic.

A step needs its dwell time and its ``min_samples`` requests; at 1% of 20 requests/s, 100
requests take over 8 minutes. Operators see that up front instead of a step that seems stuck.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session, sessionmaker

from backend.predictions.reads import window_rows
from backend.schemas import (
    RolloutState,
    StepEstimate,
    UnjudgedQuality,
    expected_step_seconds,
    plain_duration,
)

# The traffic rate is measured over this many seconds of the log.
RATE_WINDOW_S = 60.0
# At most this many rows are read to measure it; beyond, the rate comes from their time span.
RATE_MAX_ROWS = 20_000


def request_rate(sessions: sessionmaker[Session], model: str, now: float) -> float:
    """Requests per second (prediction rows, every worker, shadow copies not counted) the
    model answered over the last ``RATE_WINDOW_S`` seconds."""
    since = now - RATE_WINDOW_S
    rows = window_rows(sessions, model, since, with_answers=False, limit=RATE_MAX_ROWS)
    answered = [r for r in rows if r.route != "shadow"]
    if not answered:
        return 0.0
    span = RATE_WINDOW_S
    if len(rows) == RATE_MAX_ROWS:  # capped: the rows read cover less than the window
        span = max(now - min(r.created_at for r in rows), 1.0)
    return len(answered) / span


def step_estimates(
    rollout: RolloutState,
    rate: float,
    candidate_samples: int,
    now: datetime,
    unjudged_quality: UnjudgedQuality,
) -> list[StepEstimate]:
    """Every step of ``rollout`` with its expected time at ``rate``; the current one with
    what is left of it (from the requests it has seen and the time it has run)."""
    stages: list[tuple[int, str, float]] = []
    if rollout.mode == "shadow":
        stages.append((-1, "shadow", 100.0))  # the candidate scores every request, unseen
    stages += [(i, f"canary {p:g}%", p) for i, p in enumerate(rollout.steps)]
    labels = (
        "; it also waits for enough labelled answers to judge its quality"
        if unjudged_quality == "wait"
        else ""
    )
    estimates = []
    for index, name, percent in stages:
        expected = expected_step_seconds(rate, percent, rollout.min_samples, rollout.min_dwell_s)
        current = index == rollout.step_index
        done = index < rollout.step_index
        if done:
            detail = "done"
            remaining = None
        elif current:
            remaining = _remaining(rollout, rate, percent, candidate_samples, now)
            detail = (
                f"about {plain_duration(remaining)} left: {candidate_samples} of "
                f"{rollout.min_samples} requests seen at {rate:.2g} requests/s to the model"
                if remaining is not None
                else "cannot finish: the model gets no requests now"
            ) + labels
        else:
            remaining = None
            detail = (
                f"about {plain_duration(expected)} ({rollout.min_samples} requests at "
                f"{percent:g}% of the traffic, at least {plain_duration(rollout.min_dwell_s)})"
                if expected is not None
                else "cannot finish: the model gets no requests now"
            )
        estimates.append(
            StepEstimate(
                stage=name,
                percent=percent,
                expected_s=expected,
                remaining_s=remaining,
                current=current,
                detail=detail,
            )
        )
    return estimates


def _remaining(
    rollout: RolloutState, rate: float, percent: float, seen: int, now: datetime
) -> float | None:
    dwell_left = max(0.0, rollout.min_dwell_s - (now - rollout.step_started_at).total_seconds())
    missing = max(0, rollout.min_samples - seen)
    if missing == 0:
        return dwell_left
    candidate_rate = rate * percent / 100.0
    if candidate_rate <= 0:
        return None
    return max(dwell_left, missing / candidate_rate)
