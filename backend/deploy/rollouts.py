"""The rollout state machine: shadow, canary steps, promotion or abort; pause and resume.

Each transition is one guarded change of the model's row (``changes.apply_change``); a
verdict of the controller names the rollout it judged (``expected``) and lands only on it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from backend.auth.tokens import Principal
from backend.deploy.changes import SYSTEM, Change, apply_change, read_model_state
from backend.deploy.gating import GateKeeper, GateRequest
from backend.errors import Conflict, InputError
from backend.registry import Registry, parse_version
from backend.schemas import AuditAction, DeploymentState, RolloutRequest, RolloutState


class Rollouts:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: Registry,
        gates: GateKeeper,
        on_serving: Callable[[str, str, Principal, Session], None],
    ):
        self.sessions = sessions
        self.registry = registry
        self.gates = gates
        # Told (inside the change's transaction) when a version starts serving on purpose.
        self.on_serving = on_serving

    def start(self, model: str, request: RolloutRequest, actor: Principal) -> DeploymentState:
        candidate = str(parse_version(request.candidate))
        state = read_model_state(self.sessions, model)
        info = self.registry.get_version(model, candidate)
        if state.rollout is not None:
            raise Conflict(
                f"a rollout of version {state.rollout.candidate} is already running; promote "
                "or abort it first",
                "rollout",
            )
        if state.active is None:
            raise Conflict(
                f"model {model!r} serves no version yet: deploy one first (a rollout compares "
                "a candidate with the version serving)",
                "model",
            )
        if candidate == state.active:
            raise Conflict(f"version {candidate} is already serving", "candidate")
        _check_steps(request.steps)
        report = self.gates.passing_report(
            GateRequest(
                model,
                candidate,
                "rollout",
                actor,
                state.active,
                request.reason,
                request.force_signature,
                info,
            )
        )
        now = datetime.now(UTC)
        shadow_first = request.mode == "shadow"
        rollout = RolloutState(
            candidate=candidate,
            mode=request.mode,
            phase="shadow" if shadow_first else "canary",
            steps=request.steps,
            step_index=-1 if shadow_first else 0,
            percent=0.0 if shadow_first else request.steps[0],
            paused=False,
            min_dwell_s=request.min_dwell_s,
            min_samples=request.min_samples,
            checks=request.checks,
            started_by=actor.name,
            started_at=now,
            step_started_at=now,
        )
        change = Change(
            "rollout_start",
            actor,
            state.active,
            candidate,
            request.reason,
            {"rollout": rollout.model_dump(mode="json")},
            report,
            details={"mode": request.mode, "steps": request.steps, "stage": stage(rollout)},
        )
        return apply_change(self.sessions, model, state.generation, change)

    def set_paused(
        self, model: str, paused: bool, reason: str, actor: Principal
    ) -> DeploymentState:
        def pause_or_resume(active: str | None, rollout: RolloutState) -> Change:
            if rollout.paused == paused:
                state = "paused" if paused else "running"
                raise Conflict(f"the rollout is already {state}", "rollout")
            # The step keeps its start: the requests and time it has seen while paused (its
            # share of traffic stays) and before still count after resuming.
            changed = rollout.model_copy(update={"paused": paused})
            action: AuditAction = "rollout_pause" if paused else "rollout_resume"
            return Change(
                action,
                actor,
                active,
                rollout.candidate,
                reason,
                {"rollout": changed.model_dump(mode="json")},
                details={
                    "stage": stage(rollout),
                    "step_started_at": rollout.step_started_at.isoformat(),
                },
            )

        return self._transition(model, None, pause_or_resume)

    def promote(
        self,
        model: str,
        reason: str,
        actor: Principal,
        details: dict[str, Any] | None = None,
        expected: RolloutState | None = None,
    ) -> DeploymentState:
        """The candidate becomes the serving version for all traffic; the rollout ends."""
        return self._transition(
            model,
            expected,
            lambda active, rollout: Change(
                "promote",
                actor,
                active,
                rollout.candidate,
                reason,
                {"active_version": rollout.candidate, "rollout": None},
                details={"stage": stage(rollout), **(details or {})},
                also=lambda session: self.on_serving(model, rollout.candidate, actor, session),
            ),
        )

    def abort(
        self,
        model: str,
        reason: str,
        actor: Principal,
        details: dict[str, Any] | None = None,
        expected: RolloutState | None = None,
    ) -> DeploymentState:
        """All traffic back to the serving version; the candidate stops scoring."""
        return self._transition(
            model,
            expected,
            lambda active, rollout: Change(
                "abort",
                actor,
                rollout.candidate,
                active,
                reason,
                {"rollout": None},
                details={"stage": stage(rollout), **(details or {})},
            ),
        )

    def advance(
        self,
        model: str,
        expected: RolloutState,
        details: dict[str, Any],
        judged: str = "the step passed its checks",
    ) -> DeploymentState:
        """The next stage, when ``expected`` is still the state (one worker wins the race);
        ``judged``: what the checks showed, for the audit trail (including what was not
        judged, where the model's policy let the step move on without it)."""

        def next_stage(active: str | None, rollout: RolloutState) -> Change:
            following = rollout.model_copy(
                update={
                    "phase": "canary",
                    "step_index": rollout.step_index + 1,
                    "percent": rollout.steps[rollout.step_index + 1],
                    "step_started_at": datetime.now(UTC),
                }
            )
            return Change(
                "rollout_step",
                SYSTEM,
                active,
                rollout.candidate,
                f"{judged}; now {stage(following)}",
                {"rollout": following.model_dump(mode="json")},
                details={"from_stage": stage(rollout), "stage": stage(following), **details},
            )

        return self._transition(model, expected, next_stage)

    def _transition(
        self,
        model: str,
        expected: RolloutState | None,
        change_of: Callable[[str | None, RolloutState], Change],
    ) -> DeploymentState:
        """One step of the running rollout: read it (409 if none, or not ``expected``), make
        the change from (serving version, rollout), apply it guarded by the generation read."""
        state = read_model_state(self.sessions, model)
        rollout = state.running_rollout(model, expected)
        return apply_change(
            self.sessions, model, state.generation, change_of(state.active, rollout)
        )


def _check_steps(steps: list[float]) -> None:
    for i, step in enumerate(steps):
        if not 0 < step <= 100:
            raise InputError(
                f"each step is a percentage above 0 and at most 100, got {step}", f"steps[{i}]"
            )
        if i and step <= steps[i - 1]:
            raise InputError(
                "steps must increase: each share of traffic above the last", f"steps[{i}]"
            )


def stage(rollout: RolloutState) -> str:
    return "shadow" if rollout.phase == "shadow" else f"canary {rollout.percent:g}%"
