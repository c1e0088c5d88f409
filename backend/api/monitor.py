"""Live monitoring: the prediction event stream (server-sent events) and live statistics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from backend.api.deps import CurrentFeed, CurrentLiveStats, CurrentPrincipal
from backend.api.errors import ERRORS
from backend.api.stream_access import CHECK_INTERVAL_S, StreamAccess, stream_access
from backend.auth import read_scope
from backend.errors import InputError
from backend.monitoring.feed import PredictionFeed
from backend.monitoring.live_stats import RESOLUTIONS
from backend.schemas import LiveSeries

router = APIRouter(prefix="/api/v1", tags=["Monitoring"], responses=ERRORS)

KEEPALIVE_S = 15.0
# Events are gathered this long before being sent: at hundreds of predictions per second a
# message per prediction would cost the console more than the predictions themselves.
BATCH_WINDOW_S = 0.1
# 2**40 s is about the year 36800: later than any time a client means.
MAX_UNIX_SECONDS = float(2**40)


@router.get(
    "/events/predictions",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an event stream"}},
)
async def prediction_events(
    request: Request,
    principal: CurrentPrincipal,
    feed: CurrentFeed,
    model: Annotated[
        str | None, Query(description="only this model's predictions (default: every one)")
    ] = None,
    last_event_id: Annotated[str | None, Header(description="resume after this event")] = None,
) -> StreamingResponse:
    """Recent and new predictions as server-sent events (``event: predictions``), of the
    model named or of every model the token may read.

    Each message's data is a ``PredictionEventBatch``; its ``id`` resumes the stream (the
    ``Last-Event-ID`` header). A new subscriber first gets up to 500 recent predictions.
    A ``: keep-alive`` comment is sent every 15 s. The stream ends within about a second
    once its token is revoked or may no longer read these predictions.
    """
    access = stream_access(request, principal, "read_predictions", model)
    return StreamingResponse(
        _stream(feed, access, feed.resume_after(last_event_id)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    feed: PredictionFeed, access: StreamAccess, position: int
) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    last_sent = time.monotonic()
    while not feed.closed:
        # Before anything is sent: no prediction reaches a token that may no longer read it.
        if not await access.still_allowed():
            yield access.farewell()
            return
        events, missed, position = feed.since(position, access.scope.models)
        if events or missed:
            data = orjson.dumps({"events": events, "missed": missed})
            yield b"id: %s\nevent: predictions\ndata: %s\n\n" % (
                feed.event_id(position).encode(),
                data,
            )
            last_sent = time.monotonic()
            await asyncio.sleep(BATCH_WINDOW_S)
        elif not await feed.wait(CHECK_INTERVAL_S) and (
            time.monotonic() - last_sent >= KEEPALIVE_S
        ):
            # Counted from the last message: other models' predictions wake the stream
            # without giving it anything to send.
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()


@router.get("/monitor/live", response_model=LiveSeries)
async def live_series(
    principal: CurrentPrincipal,
    live_stats: CurrentLiveStats,
    resolution: Annotated[
        int,
        Query(
            description="bucket length in seconds: 1 or 60",
            ge=min(RESOLUTIONS),
            le=max(RESOLUTIONS),
            # The declaration says exactly which values are answered, not only their bounds.
            json_schema_extra={"enum": sorted(RESOLUTIONS)},
        ),
    ] = 1,
    since: Annotated[
        float | None,
        Query(
            description="only buckets after this time (Unix seconds)",
            allow_inf_nan=False,
            # Any real time lies between; beyond, bucket arithmetic leaves 64-bit integers.
            ge=0,
            le=MAX_UNIX_SECONDS,
        ),
    ] = None,
    model: Annotated[
        str | None, Query(description="one model (default: every model the token may read)")
    ] = None,
    version: Annotated[
        str | None, Query(description="one version of the model (default: all)", max_length=32)
    ] = None,
) -> LiveSeries:
    """Requests, refusals, latency percentiles, confidence and decisions per bucket.

    One-second buckets cover the last hour, one-minute buckets the last day. Kept in memory
    by each serving process since it started: no bucket from before is sent (``started_at``).
    """
    scope = read_scope(principal, "read_predictions", model)
    if resolution not in RESOLUTIONS:
        raise InputError(f"must be one of {sorted(RESOLUTIONS)} (seconds)", "resolution")
    if version is not None and scope.model is None:
        raise InputError("a version belongs to a model: give the model too", "version")
    return live_stats.series(resolution, since, scope.models, version=version)
