"""One resumable event stream: alert changes and deployment changes, as server-sent events.

Read from the store (``monitoring.event_log``), so every worker answers the same and a stream
sees what any worker wrote. The event id is the stream's position in both tables
(``<alert event id>-<audit event id>``): ``Last-Event-ID`` resumes after it with no gap and
no repeat, on any worker. The prediction stream stays separate (``/api/v1/events/predictions``):
predictions are many and live in each worker's memory, events are few and durable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session, sessionmaker

from backend.api.deps import CurrentFeed, CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.api.stream_access import CHECK_INTERVAL_S, StreamAccess, stream_access
from backend.monitoring.event_log import EventCursor, events_after, newest_cursor
from backend.monitoring.feed import PredictionFeed

router = APIRouter(prefix="/api/v1", tags=["Monitoring"], responses=ERRORS)

POLL_S = 1.0
KEEPALIVE_S = 15.0


@router.get(
    "/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "an event stream"}},
)
async def events(
    request: Request,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    feed: CurrentFeed,
    model: Annotated[
        str | None, Query(description="one model (default: every model the token may read)")
    ] = None,
    last_event_id: Annotated[
        str | None,
        Header(description="resume after this event ('0-0': from the beginning)"),
    ] = None,
) -> StreamingResponse:
    """Alerts raised, changed, acknowledged, re-opened and resolved (``event: alert``) and
    deployment changes from the audit trail: deploy, rollback, rollout steps, promotion,
    abort, policy (``event: deployment``); each message's data is a ``StreamEvent``.

    Without ``Last-Event-ID`` the stream starts with what happens from now on. A
    ``: keep-alive`` comment is sent every 15 s. The stream ends within about a second once
    its token is revoked or may no longer read these models."""
    access = stream_access(request, principal, "read", model)
    if last_event_id is not None:
        cursor = EventCursor.parse(last_event_id)
    else:
        cursor = await asyncio.to_thread(newest_cursor, workspace.sessions)
    return StreamingResponse(
        _stream(workspace.sessions, access, cursor, feed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    sessions: sessionmaker[Session],
    access: StreamAccess,
    cursor: EventCursor,
    feed: PredictionFeed,
) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    last_sent = next_poll = time.monotonic()
    # The feed closes when the server stops: open streams end instead of holding it up.
    while not feed.closed:
        found = None
        if time.monotonic() >= next_poll:
            found = await asyncio.to_thread(events_after, sessions, cursor, access.scope.models)
            # A busy writer (PostgreSQL): soon again, from the same position.
            next_poll = time.monotonic() + (POLL_S if found is not None else CHECK_INTERVAL_S)
        # Looked at after the (slow) read and before anything is sent.
        if not await access.still_allowed():
            yield access.farewell()
            return
        for stored in found or ():
            cursor = stored.cursor
            # The scope may have narrowed while the read ran: skipped, and passed over.
            if access.scope.includes(stored.event.model):
                yield b"id: %s\nevent: %s\ndata: %s\n\n" % (
                    cursor.text().encode(),
                    stored.event.kind.encode(),
                    stored.event.model_dump_json().encode(),
                )
                last_sent = time.monotonic()
        if time.monotonic() - last_sent >= KEEPALIVE_S:
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(max(0.0, min(CHECK_INTERVAL_S, next_poll - time.monotonic())))
