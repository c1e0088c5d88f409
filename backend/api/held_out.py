"""Held-out traffic API: a model's held-out share, its no-model policy and what it covers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.api.report_span import MAX_WINDOW_S, MIN_WINDOW_S
from backend.auth import read_scope
from backend.auth.tokens import require
from backend.schemas import HeldOutRequest, HeldOutSettings, HeldOutStatus
from backend.schemas.deploy import Reason

router = APIRouter(prefix="/api/v1", tags=["Held-out traffic"], responses=ERRORS)


@router.get("/models/{name}/held-out", response_model=HeldOutStatus)
def held_out_status(
    name: str,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    window_s: Annotated[
        int,
        Query(description="the coverage window, in seconds", ge=MIN_WINDOW_S, le=MAX_WINDOW_S),
    ] = 3600,
) -> HeldOutStatus:
    """The share held out, its policy, and how many requests and entities it covered."""
    read_scope(principal, "read", name)
    return workspace.deploy.held_out.status(name, window_s)


@router.put("/models/{name}/held-out", response_model=HeldOutStatus)
def set_held_out(
    name: str, body: HeldOutRequest, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> HeldOutStatus:
    """Hold a sticky share of entities out of the model's influence, answered by the policy
    (checked against the serving version; audited). Workers route by it within one poll."""
    require(principal, "deploy", name)
    if body.policy.kind == "fallback":
        # Its answers would reach this model's callers: the actor must be able to read it.
        require(principal, "read", body.policy.model)
    settings = HeldOutSettings(**body.model_dump(exclude={"reason"}))
    workspace.deploy.held_out.set(name, settings, body.reason, principal)
    return workspace.deploy.held_out.status(name, 3600)


@router.delete("/models/{name}/held-out", response_model=HeldOutStatus)
def clear_held_out(
    name: str,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    reason: Annotated[Reason, Query(description="why (audited)")] = "",
) -> HeldOutStatus:
    """Hold nothing out any more (audited)."""
    require(principal, "deploy", name)
    workspace.deploy.held_out.set(name, None, reason, principal)
    return workspace.deploy.held_out.status(name, 3600)
