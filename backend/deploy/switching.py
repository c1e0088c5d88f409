"""Switching the serving version: a deployment and a rollback, through the same gates.

A rollback returns to the previous good version: versions rolled back from, or that raised a
quality alert while serving, are skipped until someone deploys them again on purpose; when
none is left, ``rollback_option`` says why in words and what would make a rollback possible.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from sqlalchemy.orm import Session, sessionmaker

from backend.auth.tokens import Principal
from backend.deploy.audit import deployment_history, return_points
from backend.deploy.changes import Change, ModelState, apply_change, read_model_state
from backend.deploy.gating import GateKeeper, GateRequest
from backend.errors import Conflict
from backend.registry import Registry, parse_version
from backend.schemas import (
    AuditEvent,
    DeploymentState,
    ModelVersionInfo,
    RollbackOption,
    SkippedVersion,
)


class Switching:
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

    def deploy(
        self, model: str, version: str, reason: str, actor: Principal, force_signature: bool = False
    ) -> DeploymentState:
        version = str(parse_version(version))
        state = read_model_state(self.sessions, model)
        # First, so that an unknown version is a 404 whatever the model's state; kept for the
        # gates, which would otherwise read it again.
        info = self.registry.get_version(model, version)
        if state.rollout is not None:
            raise Conflict(
                f"a rollout of version {state.rollout.candidate} is running; promote or abort "
                "it before deploying",
                "rollout",
            )
        if version == state.active:
            raise Conflict(f"version {version} is already serving", "version")
        return self._switch(model, state, actor, "deploy", version, reason, force_signature, info)

    def rollback(
        self,
        model: str,
        reason: str,
        actor: Principal,
        force_signature: bool = False,
        from_version: str | None = None,
    ) -> DeploymentState:
        """Back to the version served before this one, through the same gates.

        ``from_version``: the version the caller saw serving; refused (409) if another action
        changed it meanwhile, so two rollbacks racing never go back two steps."""
        state = read_model_state(self.sessions, model)
        active = state.active
        if from_version is not None and str(parse_version(from_version)) != active:
            raise Conflict(
                f"version {from_version} no longer serves {model!r} (version {active} does); "
                "look at its new state before rolling back",
                "from_version",
            )
        with self.sessions() as session:
            option = rollback_option(model, state, deployment_history(session, model, True))
        if option.target is None:
            field = "rollout" if state.rollout else "version" if active else "model"
            raise Conflict(option.unavailable_reason or "nothing to roll back to", field)
        target = option.target
        return self._switch(model, state, actor, "rollback", target, reason, force_signature)

    def _switch(
        self,
        model: str,
        state: ModelState,
        actor: Principal,
        action: Literal["deploy", "rollback"],
        target: str,
        reason: str,
        force_signature: bool,
        info: ModelVersionInfo | None = None,
    ) -> DeploymentState:
        """Gate ``target`` and make it the serving version: a deployment and a rollback are
        the same path, only the version chosen differs."""
        report = self.gates.passing_report(
            GateRequest(model, target, action, actor, state.active, reason, force_signature, info)
        )

        def on_purpose(session: Session) -> None:
            # A rollback returns to a version that served before: not a fresh start.
            if action == "deploy":
                self.on_serving(model, target, actor, session)

        change = Change(
            action,
            actor,
            state.active,
            target,
            reason,
            {"active_version": target},
            report,
            also=on_purpose,
        )
        return apply_change(self.sessions, model, state.generation, change)


def rollback_option(model: str, state: ModelState, history: list[AuditEvent]) -> RollbackOption:
    """Where a rollback of ``model`` would go now, or why it cannot, and how to make it
    possible: the same words for the API's refusal, the model's state, the CLI and console."""
    active = state.active
    if active is None:
        return RollbackOption(
            target=None,
            unavailable_reason=f"{model} serves no version yet: nothing to roll back. Deploy "
            "a version first.",
        )
    points = return_points(history)
    stack = points.stack[:-1] if points.stack and points.stack[-1] == active else points.stack
    skipped: list[SkippedVersion] = []
    for version in reversed(stack):
        why = points.skipped.get(version)
        if why is not None and version != active and all(s.version != version for s in skipped):
            skipped.append(SkippedVersion(version=version, why=why))
    good = [v for v in stack if v not in points.skipped and v != active]
    if state.rollout is not None:
        return RollbackOption(
            target=None,
            unavailable_reason=f"a rollout of version {state.rollout.candidate} is running: "
            f"abort it to send all traffic back to version {active}; rollback is possible "
            "again once it has ended.",
            skipped=skipped,
        )
    if good:
        return RollbackOption(target=good[-1], skipped=skipped)
    if not skipped:
        return RollbackOption(
            target=None,
            unavailable_reason=f"version {active} is the first version {model} served: there "
            "is no earlier version to return to. Once another version has been deployed, a "
            f"rollback can return to version {active}.",
        )
    passed_over = "; ".join(f"version {s.version}: {s.why}" for s in skipped)
    again = " or ".join(f"version {s.version}" for s in skipped)
    return RollbackOption(
        target=None,
        unavailable_reason=f"no earlier version of {model} is good to return to. A rollback "
        "passes over versions that raised a quality alert while serving or were rolled back "
        f"from ({passed_over}). To serve {again} anyway, deploy it again on purpose (its "
        "checks run again); it then counts as good once more.",
        skipped=skipped,
    )
