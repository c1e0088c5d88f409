"""Request-scoped dependencies: the caller's identity and the shared services."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request

from backend.auth import Principal
from backend.serving import ServingService
from backend.workspace import Workspace


# Every dependency is async: FastAPI runs a sync one in its thread pool on every request.
async def get_workspace(request: Request) -> Workspace:
    workspace: Workspace = request.app.state.workspace
    return workspace


async def get_serving(request: Request) -> ServingService:
    serving: ServingService = request.app.state.serving
    return serving


async def authenticate(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
) -> Principal:
    # async on purpose: a sync dependency costs a thread hop on every request, and a cached
    # token is resolved in microseconds (a miss reads the database once per cache TTL).
    workspace: Workspace = request.app.state.workspace
    return workspace.tokens.authenticate(authorization)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
CurrentWorkspace = Annotated[Workspace, Depends(get_workspace)]
CurrentServing = Annotated[ServingService, Depends(get_serving)]
