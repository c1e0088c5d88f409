"""Calls to a rollout candidate and how many failed, counted by every serving worker.

A candidate that fails leaves no prediction row, so its calls are counted where they happen
(the request path and loading) and written to ``candidate_calls``, where whoever judges the
step sums every worker's counts. A step is named by its rollout's candidate and the time the
step started (``RolloutState.step_key``): the same in every worker and in the database.
"""

from __future__ import annotations

import os
import socket

from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import CandidateCallsRow
from backend.schemas import RolloutState, StepKey


class CandidateCalls:
    """This worker's count of candidate calls and failures, for each model's current step."""

    def __init__(self) -> None:
        self._counts: dict[str, tuple[StepKey, int, int]] = {}  # model -> (step, calls, fails)
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def record(self, model: str, rollout: RolloutState | None, failed: bool) -> None:
        """Count one call of the model's rollout candidate (nothing without a rollout)."""
        if rollout is None:
            return
        step = rollout.step_key()
        known, calls, fails = self._counts.get(model, (step, 0, 0))
        if known != step:
            calls, fails = 0, 0
        self._counts[model] = (step, calls + 1, fails + int(failed))

    def save(self, sessions: sessionmaker[Session]) -> None:
        """Write this worker's counts (absolute, so writing twice changes nothing)."""
        if not self._counts:
            return
        with sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = sqlite_insert if dialect == "sqlite" else postgresql_insert
            for model, ((candidate, started), calls, fails) in list(self._counts.items()):
                statement = insert(CandidateCallsRow).values(
                    model=model,
                    candidate=candidate,
                    step_started=started,
                    worker=self.worker,
                    calls=calls,
                    failures=fails,
                )
                session.execute(
                    statement.on_conflict_do_update(
                        index_elements=["model", "candidate", "step_started", "worker"],
                        set_={"calls": calls, "failures": fails},
                    )
                )
