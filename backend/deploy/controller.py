"""Rollouts move by themselves: a step advances when its checks pass, aborts when one fails.

A step is judged once it has run ``min_dwell_s`` and the candidate answered (or shadowed)
``min_samples`` requests. Before that only a failure can act: a candidate that errors or
is far slower is stopped at once rather than after the dwell time. The shadow phase is
followed by the first canary step; the last canary step is followed by promotion.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from backend.deploy.estimates import RATE_WINDOW_S, request_rate, step_estimates
from backend.deploy.observe import MIN_LABELLED, StepObservation, observe_step
from backend.deploy.reactions import react_to_quality
from backend.deploy.service import SYSTEM, DeployService
from backend.errors import ServeDeckError
from backend.schemas import RolloutCheck, RolloutState, RolloutStatus, UnjudgedQuality


class ServingWorker(Protocol):
    """What the controller needs of this worker's serving state (``serving.ServingState``)."""

    def models_serving(self) -> list[str]: ...

    def models_in_rollout(self) -> list[str]: ...

    def save_candidate_calls(self, sessions: sessionmaker[Session]) -> None: ...

    async def refresh_state(self) -> None: ...


log = logging.getLogger(__name__)

# The serving versions' live metrics are judged every this many rollout rounds.
WATCH_EVERY = 5
# Failed calls needed before the error-rate check may abort ahead of min_samples.
MIN_FAILURES_TO_ABORT_EARLY = 5
# Checks judged on labels, which may arrive late or never: the model's policy
# (``unjudged_quality``) decides whether a step waits for them.
LABEL_CHECKS = frozenset({"live_metric"})


@dataclass
class Verdict:
    action: str  # "wait", "advance", "promote", "abort"
    checks: list[RolloutCheck]
    detail: str
    # Checks that could not be judged when the step moved on (the policy allowed it).
    not_judged: list[RolloutCheck] = field(default_factory=list)


def evaluate(
    rollout: RolloutState,
    observation: StepObservation,
    metric_range: tuple[float, float],
    now: datetime,
    unjudged_quality: UnjudgedQuality = "wait",
) -> Verdict:
    """What the step does now. A check that could not be judged is not a pass: the step
    waits for it, unless the model's policy (``unjudged_quality``) lets it proceed, and then
    the verdict names what was not judged."""
    checks = rollout.checks
    enough = observation.candidate_samples >= rollout.min_samples
    dwelt = (now - rollout.step_started_at).total_seconds()
    results = [
        # Not there yet is waiting (None), never failing: only time and traffic fix it.
        RolloutCheck(
            name="samples",
            passed=True if enough else None,
            value=observation.candidate_samples,
            limit=rollout.min_samples,
            detail=f"{observation.candidate_samples} of {rollout.min_samples} requests seen",
        ),
        RolloutCheck(
            name="dwell",
            passed=True if dwelt >= rollout.min_dwell_s else None,
            value=round(dwelt, 1),
            limit=rollout.min_dwell_s,
            detail=f"{dwelt:.0f} s of {rollout.min_dwell_s:g} s at this step",
        ),
        _error_rate(observation, checks.max_error_rate, enough),
        _latency(observation, checks.max_p99_ratio, enough),
    ]
    if rollout.phase == "shadow":
        results.append(_agreement(observation, checks.min_agreement, enough))
    results.append(_metric(observation, metric_range))

    failed = [c for c in results if c.passed is False]
    if failed:
        return Verdict("abort", results, "; ".join(f"{c.name}: {c.detail}" for c in failed))
    if rollout.paused:
        return Verdict("wait", results, "paused: the checks run, the step does not move")
    waiting = [c for c in results if c.passed is None and c.name not in LABEL_CHECKS]
    if waiting:
        return Verdict("wait", results, "; ".join(c.detail for c in waiting))
    unjudged = [c for c in results if c.passed is None]
    if unjudged and unjudged_quality == "wait":
        return Verdict(
            "wait",
            results,
            "; ".join(f"{c.name} {c.detail}" for c in unjudged)
            + ". The step waits until it can be judged (the model's policy unjudged_quality "
            "is 'wait'; set it to 'proceed' to move on without it, which the audit trail "
            "then records).",
        )
    last = rollout.phase == "canary" and rollout.step_index == len(rollout.steps) - 1
    passed = "the last step passed its checks" if last else "the step passed its checks"
    if unjudged:
        passed = (
            passed.replace("its checks", "the checks that could be judged")
            + "; NOT judged: "
            + "; ".join(f"{c.name} ({c.detail})" for c in unjudged)
            + " — moved on without it, as the model's policy unjudged_quality='proceed' allows"
        )
    return Verdict("promote" if last else "advance", results, passed, unjudged)


def _error_rate(observation: StepObservation, limit: float, enough: bool) -> RolloutCheck:
    calls, failures = observation.attempts, observation.failures
    rate = failures / calls if calls else 0.0
    # Failures are counted by each worker: one that saw no candidate calls cannot judge them.
    judged = calls > 0 and (enough or failures >= MIN_FAILURES_TO_ABORT_EARLY)
    return RolloutCheck(
        name="error_rate",
        passed=(rate <= limit) if judged else None,
        value=rate,
        limit=limit,
        detail=f"{failures} of {calls} candidate calls failed ({rate:.1%}, at most {limit:.1%})",
    )


def _latency(observation: StepObservation, limit: float, enough: bool) -> RolloutCheck:
    candidate, active = observation.candidate_p99_ms, observation.active_p99_ms
    if candidate is None or active is None or active <= 0 or not enough:
        return RolloutCheck(
            name="p99_latency",
            passed=None,
            value=None,
            limit=limit,
            detail="waiting for enough requests on both versions",
        )
    ratio = candidate / active
    return RolloutCheck(
        name="p99_latency",
        passed=ratio <= limit,
        value=ratio,
        limit=limit,
        detail=f"candidate p99 {candidate:.1f} ms is {ratio:.2f}x the active "
        f"{active:.1f} ms (at most {limit:g}x)",
    )


def _agreement(observation: StepObservation, limit: float, enough: bool) -> RolloutCheck:
    if not observation.compared or not enough:
        return RolloutCheck(
            name="agreement",
            passed=None,
            value=None,
            limit=limit,
            detail="waiting for requests scored by both versions",
        )
    share = observation.agreeing / observation.compared
    return RolloutCheck(
        name="agreement",
        passed=share >= limit,
        value=share,
        limit=limit,
        detail=f"same answer on {share:.1%} of {observation.compared} requests "
        f"(at least {limit:.0%})",
    )


def _metric(observation: StepObservation, metric_range: tuple[float, float]) -> RolloutCheck:
    low, high = metric_range
    value = observation.live_metric
    if value is None:
        note = observation.metric_note or f"needs {MIN_LABELLED} labelled predictions"
        return RolloutCheck(
            name="live_metric",
            passed=None,
            value=None,
            limit=None,
            detail=f"not judged: {note}",
        )
    return RolloutCheck(
        name="live_metric",
        passed=low <= value <= high,
        value=value,
        limit=None,
        detail=f"{value:.4g} on {observation.labelled} labelled predictions, "
        f"acceptable [{low:g}, {high:g}]",
    )


def rollout_status(deploy: DeployService, model: str) -> RolloutStatus:
    """The rollout of ``model`` judged now, on what every worker logged and counted, with
    the model's current traffic and what it means for each step's time."""
    status, _ = judge_rollout(deploy, model)
    return status


def judge_rollout(deploy: DeployService, model: str) -> tuple[RolloutStatus, Verdict | None]:
    state = deploy.state(model)
    active, rollout = state.active, state.rollout
    now = datetime.now(UTC)
    rate = request_rate(deploy.sessions, model, now.timestamp())
    status = RolloutStatus(
        model=model,
        active_version=active,
        rollout=rollout,
        request_rate=rate,
        rate_window_s=RATE_WINDOW_S,
    )
    if rollout is None:
        return status, None
    candidate = deploy.registry.get_version(model, rollout.candidate)
    observation = observe_step(deploy.sessions, model, rollout, candidate)
    unjudged_quality = state.policy.unjudged_quality
    verdict = evaluate(
        rollout, observation, candidate.validity.acceptable_range, now, unjudged_quality
    )
    status.checks = verdict.checks
    status.verdict = verdict.action  # type: ignore[assignment]
    status.detail = verdict.detail
    status.estimates = step_estimates(
        rollout, rate, observation.candidate_samples, now, unjudged_quality
    )
    return status, verdict


class RolloutController:
    """Runs in every serving worker: judges the running rollouts every few seconds."""

    def __init__(self, deploy: DeployService, serving: ServingWorker, interval_s: float):
        self.deploy = deploy
        self.serving = serving
        self.interval_s = interval_s

    def status(self, model: str) -> RolloutStatus:
        """The rollout with its checks as they stand now (also for people asking)."""
        return rollout_status(self.deploy, model)

    def step(self, model: str) -> RolloutStatus:
        """Judge one model's rollout and act on the verdict."""
        status, verdict = judge_rollout(self.deploy, model)
        rollout = status.rollout
        if rollout is None or verdict is None or verdict.action == "wait":
            return status
        details: dict[str, Any] = {"checks": [c.model_dump(mode="json") for c in status.checks]}
        if verdict.not_judged:
            details["not_judged"] = [c.name for c in verdict.not_judged]
        try:
            if verdict.action == "abort":
                self.deploy.abort(
                    model, f"a check failed: {verdict.detail}", SYSTEM, details, expected=rollout
                )
            elif verdict.action == "promote":
                self.deploy.promote(model, verdict.detail, SYSTEM, details, expected=rollout)
            elif verdict.action == "advance":
                self.deploy.advance(model, rollout, details, verdict.detail)
        except ServeDeckError as exc:  # another worker acted first, or a person did
            log.info("rollout of %s not moved: %s", model, exc.reason)
        return status

    async def run(self) -> None:
        rounds = 0
        while True:
            await asyncio.sleep(self.interval_s)
            rounds += 1
            if rounds % WATCH_EVERY == 0:
                await self._watch_live_metrics()
            rollouts = self.serving.models_in_rollout()
            if rollouts:
                try:  # this worker's candidate calls first, so the verdict counts them
                    await asyncio.to_thread(self.serving.save_candidate_calls, self.deploy.sessions)
                except Exception:
                    log.exception("could not save the candidate call counts")
            for model in rollouts:
                try:
                    await asyncio.to_thread(self.step, model)
                    await self.serving.refresh_state()
                except Exception:
                    log.exception("could not judge the rollout of %s", model)

    async def _watch_live_metrics(self) -> None:
        for model in self.serving.models_serving():
            try:
                outcome = await asyncio.to_thread(
                    react_to_quality, self.deploy, self.deploy.alerts, model
                )
                if outcome.startswith("alerted"):
                    log.warning("%s: %s", model, outcome)
                    await self.serving.refresh_state()
            except Exception:
                log.exception("could not judge the live metric of %s", model)
