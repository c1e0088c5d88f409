"""Request-scoped dependencies: the caller's identity and the shared services."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Header, Request

from backend.auth import Principal, TokenService
from backend.monitoring.feed import PredictionFeed
from backend.monitoring.live_stats import LiveStats
from backend.serving.service import ServingService
from backend.workspace import Workspace


# Every dependency is async: FastAPI runs a sync one in its thread pool on every request.
async def get_workspace(request: Request) -> Workspace:
    workspace: Workspace = request.app.state.workspace
    return workspace


async def get_serving(request: Request) -> ServingService:
    serving: ServingService = request.app.state.serving
    return serving


async def get_feed(request: Request) -> PredictionFeed:
    feed: PredictionFeed = request.app.state.feed
    return feed


async def get_live_stats(request: Request) -> LiveStats:
    live_stats: LiveStats = request.app.state.live_stats
    return live_stats


async def resolve_principal(tokens: TokenService, authorization: str | None) -> Principal:
    # A cached token is resolved on the loop in microseconds; only a token never seen (or
    # cached as unknown) costs a database read, and that runs in a thread, off the loop.
    cached = tokens.authenticate_cached(authorization)
    if cached is not None:
        return cached
    return await asyncio.to_thread(tokens.authenticate, authorization)


async def authenticate(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <token>")] = None,
) -> Principal:
    return await resolve_principal(request.app.state.workspace.tokens, authorization)


CurrentPrincipal = Annotated[Principal, Depends(authenticate)]
CurrentWorkspace = Annotated[Workspace, Depends(get_workspace)]
CurrentServing = Annotated[ServingService, Depends(get_serving)]
CurrentFeed = Annotated[PredictionFeed, Depends(get_feed)]
CurrentLiveStats = Annotated[LiveStats, Depends(get_live_stats)]
