"""Deployment API: deploy, roll back, run rollouts, read gate reports and the audit trail.

Every change runs in a thread (gates load and score the model), then this worker re-reads
the serving state at once; the other workers follow within their poll interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request

from backend.api.deps import CurrentPrincipal, CurrentServing, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.auth import read_scope
from backend.auth.tokens import require
from backend.deploy.audit import list_events
from backend.deploy.controller import RolloutController
from backend.schemas import (
    ActionRequest,
    AuditPage,
    DeploymentState,
    DeployRequest,
    ErrorBody,
    GateReport,
    GateReportList,
    PolicyRequest,
    RollbackRequest,
    RolloutRequest,
    RolloutStatus,
    ServingPolicy,
)
from backend.schemas.common import INT64_MAX
from backend.serving.service import ServingService

router = APIRouter(prefix="/api/v1", tags=["Deployments"], responses=ERRORS)


class DeploymentRefused(ErrorBody):
    """409 of a change that runs the gates: the usual error, plus the whole report when a
    gate refused the version. Other conflicts (the version already serves, a rollout runs,
    the model changed meanwhile) ran no gate and carry no report."""

    gate_report: GateReport | None = None


# Deploy, rollback and starting a rollout run the gates; a refusal carries their report.
GATED: dict[int | str, dict[str, Any]] = {
    409: {
        "model": DeploymentRefused,
        "description": "refused: a gate failed (gate_report says which), or a conflict",
    }
}
# Pause, resume, promote and abort run no gate: a conflict is the usual error only.
UNGATED: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "conflict: no rollout runs, or it is already so"}
}
OptionalAction = Annotated[ActionRequest | None, Body()]


async def _apply(serving: ServingService, change: Callable[[], DeploymentState]) -> DeploymentState:
    state = await asyncio.to_thread(change)
    await serving.state.refresh_state()
    return state


@router.post("/models/{name}/deploy", response_model=DeploymentState, responses=GATED)
async def deploy(
    name: str,
    body: DeployRequest,
    workspace: CurrentWorkspace,
    serving: CurrentServing,
    principal: CurrentPrincipal,
) -> DeploymentState:
    """Run the gates on a version and, if all pass, serve it for all traffic."""
    require(principal, "deploy", name)
    return await _apply(
        serving,
        lambda: workspace.deploy.deploy(
            name, body.version, body.reason, principal, body.force_signature
        ),
    )


@router.post("/models/{name}/rollback", response_model=DeploymentState, responses=GATED)
async def rollback(
    name: str,
    body: RollbackRequest,
    workspace: CurrentWorkspace,
    serving: CurrentServing,
    principal: CurrentPrincipal,
) -> DeploymentState:
    """Return to the version served before this one, through the same gates."""
    require(principal, "deploy", name)
    return await _apply(
        serving,
        lambda: workspace.deploy.rollback(
            name, body.reason, principal, body.force_signature, body.from_version
        ),
    )


@router.put("/models/{name}/rollout", response_model=DeploymentState, responses=GATED)
async def start_rollout(
    name: str,
    body: RolloutRequest,
    workspace: CurrentWorkspace,
    serving: CurrentServing,
    principal: CurrentPrincipal,
) -> DeploymentState:
    """Gate a candidate, then roll it out: shadow first (mode "shadow") or canary steps."""
    require(principal, "deploy", name)
    return await _apply(serving, lambda: workspace.deploy.start_rollout(name, body, principal))


@router.get("/models/{name}/rollout", response_model=RolloutStatus)
async def get_rollout(name: str, request: Request, principal: CurrentPrincipal) -> RolloutStatus:
    """The running rollout (null when none), its step's checks and what it waits for."""
    require(principal, "read", name)
    controller: RolloutController = request.app.state.rollouts
    return await asyncio.to_thread(controller.status, name)


def _rollout_action(action: str, summary: str) -> None:
    async def handler(
        name: str,
        workspace: CurrentWorkspace,
        serving: CurrentServing,
        principal: CurrentPrincipal,
        body: OptionalAction = None,
    ) -> DeploymentState:
        require(principal, "deploy", name)
        reason = body.reason if body is not None else ""
        method = getattr(workspace.deploy, action)
        return await _apply(serving, lambda: method(name, reason, principal))

    handler.__name__ = f"rollout_{action}"
    router.post(
        f"/models/{{name}}/rollout/{action}",
        response_model=DeploymentState,
        responses=UNGATED,
        summary=summary,
    )(handler)


_rollout_action("promote", "Serve the candidate for all traffic and end the rollout")
_rollout_action("abort", "Send all traffic back to the serving version and end the rollout")
_rollout_action("pause", "Hold the rollout at its current step (traffic shares stay)")
_rollout_action("resume", "Let a paused rollout advance again")


@router.put("/models/{name}/policy", response_model=ServingPolicy)
def set_policy(
    name: str, body: PolicyRequest, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> ServingPolicy:
    """How the serving version is watched: auto-rollback when its live metric leaves range."""
    require(principal, "deploy", name)
    policy = ServingPolicy(**body.model_dump(exclude={"reason"}))
    return workspace.deploy.set_policy(name, policy, body.reason, principal)


@router.get("/models/{name}/gate-reports", response_model=GateReportList)
def gate_reports(
    name: str,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    version: str | None = None,
) -> GateReportList:
    """Every gate report of the model (or of one version), newest first."""
    require(principal, "read", name)
    return GateReportList(reports=workspace.deploy.gate_reports(name, version))


@router.get("/audit", response_model=AuditPage)
def audit(
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    model: str | None = None,
    before_id: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    """The audit trail, newest first; page back with before_id."""
    scope = read_scope(principal, "read", model)
    events = list_events(
        workspace.sessions,
        model=scope.model,
        before_id=before_id,
        limit=limit,
        visible_models=scope.models,
    )
    return AuditPage(events=events)
