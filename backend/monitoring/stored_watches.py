"""The alert rules judged on counts in the store (drift windows, feedback-loop counts, user
signals), together: built once, run together, wherever the composition root puts them.

A served server runs them in a process of their own (``backend.watcher``): a round reads and
parses an hour of stored counts per model and computes its statistics, a second of CPU
every 30 s that, in a serving worker, held the GIL the request path needs (measured with
py-spy at 16 connections: 6% of the worker's samples). ``create_app`` alone (tests, an
embedding application) runs them in the worker, as before.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session, sessionmaker

from backend.monitoring.alerts import AlertService
from backend.monitoring.drift.alerting import DriftAlertWatch
from backend.monitoring.drift.windows import DriftWindows
from backend.monitoring.evaluator import ModelsServing
from backend.monitoring.feedback_loops.alerting import FeedbackLoopWatch
from backend.monitoring.rules import RuleStore
from backend.monitoring.user_signals import UserSignalWatch
from backend.registry import Registry


class ModelsWithActiveVersion:
    """Which models serve, as the store says (a process that serves nothing itself)."""

    def __init__(self, registry: Registry):
        self.registry = registry

    def models_serving(self) -> list[str]:
        return [model.name for model in self.registry.list_models() if model.active_version]


@dataclass
class StoredWatches:
    drift: DriftAlertWatch
    loops: FeedbackLoopWatch
    signals: UserSignalWatch

    @classmethod
    def build(
        cls,
        sessions: sessionmaker[Session],
        registry: Registry,
        drift: DriftWindows,
        alerts: AlertService,
        serving: ModelsServing,
        interval_s: float | None = None,
    ) -> StoredWatches:
        """``interval_s``: how often each watch judges (None: each watch's own default)."""
        every = {} if interval_s is None else {"interval_s": interval_s}
        return cls(
            DriftAlertWatch(drift, RuleStore(sessions), alerts, serving, **every),
            FeedbackLoopWatch(sessions, registry, RuleStore(sessions), alerts, serving, **every),
            UserSignalWatch(sessions, registry, RuleStore(sessions), alerts, serving, **every),
        )

    async def run(
        self,
        after_drift_round: Callable[[], None] | None = None,
        first_round_at_once: bool = False,
    ) -> None:
        """Every watch's rounds, until cancelled. ``after_drift_round`` is called after each
        round of the drift watch (to publish its gauges to another process);
        ``first_round_at_once``: see ``StoredRuleWatch.run``."""
        await asyncio.gather(
            self.drift.run(after_round=after_drift_round, first_round_at_once=first_round_at_once),
            self.loops.run(first_round_at_once=first_round_at_once),
            self.signals.run(first_round_at_once=first_round_at_once),
        )
