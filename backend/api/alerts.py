"""Alerts API: list, read (with history) and acknowledge alerts; follow new ones as
server-sent events; read and set a model's alert rules.

Alerts are rows in the store, so every worker answers the same and a stream sees alerts
raised by any worker (it looks for new ones every ``POLL_S``, and at its token more often).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from backend.api.deps import CurrentFeed, CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.api.stream_access import CHECK_INTERVAL_S, StreamAccess, stream_access
from backend.auth import read_scope
from backend.auth.tokens import Principal, require
from backend.errors import InputError, NotFound
from backend.monitoring.alerts import AlertService
from backend.monitoring.feed import PredictionFeed
from backend.monitoring.rules import RuleStore, default_rules
from backend.schemas import (
    AcknowledgeRequest,
    Alert,
    AlertList,
    AlertRule,
    AlertRules,
    AlertRulesRequest,
    AlertStatus,
)

router = APIRouter(prefix="/api/v1", tags=["Alerts"], responses=ERRORS)

POLL_S = 2.0
KEEPALIVE_S = 15.0
AlertId = Annotated[int, Path(ge=1, le=2**63 - 1)]


def _visible(principal: Principal, alert: Alert) -> Alert:
    # Answered as if it did not exist: a scoped token learns nothing of other models.
    if not principal.may_use_model(alert.model):
        raise NotFound(f"no alert {alert.id}", "alert_id")
    return alert


@router.get("/alerts", response_model=AlertList)
def list_alerts(
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    model: Annotated[
        str | None, Query(description="one model (default: every model the token may read)")
    ] = None,
    status: Annotated[
        list[AlertStatus] | None,
        Query(description="only these (repeat the parameter); default: open and acknowledged"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AlertList:
    """Alerts newest first: by default the ones still active (open or acknowledged)."""
    scope = read_scope(principal, "read", model)
    statuses = status or ["open", "acknowledged"]
    return AlertList(
        alerts=workspace.alerts.list(
            model=scope.model, statuses=statuses, visible_models=scope.models, limit=limit
        )
    )


@router.get("/events/alerts")
async def alert_events(
    request: Request,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    feed: CurrentFeed,
    model: Annotated[
        str | None, Query(description="one model (default: every model the token may read)")
    ] = None,
    last_event_id: Annotated[str | None, Header(description="resume after this alert id")] = None,
) -> StreamingResponse:
    """New alerts as server-sent events (``event: alert``, data: an ``Alert``); the event id
    is the alert's id (``Last-Event-ID`` resumes). Without one, the stream starts with the
    alerts raised from now on. The stream ends within about a second once its token is
    revoked or may no longer read these alerts."""
    access = stream_access(request, principal, "read", model)
    alerts = workspace.alerts
    if last_event_id is not None:
        after = _alert_id(last_event_id)
    else:
        newest = await asyncio.to_thread(alerts.list, statuses=None, limit=1)
        after = newest[0].id if newest else 0
    return StreamingResponse(
        _stream(alerts, access, after, feed),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    alerts: AlertService, access: StreamAccess, after: int, feed: PredictionFeed
) -> AsyncIterator[bytes]:
    yield b"retry: 2000\n\n"
    last_sent = next_poll = time.monotonic()
    # The feed closes when the server stops: open streams end instead of holding it up.
    while not feed.closed:
        found: list[Alert] = []
        if time.monotonic() >= next_poll:
            scope = access.scope
            found = await asyncio.to_thread(
                alerts.list,
                model=scope.model,
                visible_models=scope.models,
                after_id=after,
                limit=100,
            )
            next_poll = time.monotonic() + POLL_S
        # Looked at after the (slow) read and before anything is sent.
        if not await access.still_allowed():
            yield access.farewell()
            return
        for alert in found:
            after = alert.id
            # The scope may have narrowed while the read ran.
            if access.scope.includes(alert.model):
                yield b"id: %d\nevent: alert\ndata: %s\n\n" % (
                    alert.id,
                    alert.model_dump_json().encode(),
                )
                last_sent = time.monotonic()
        if time.monotonic() - last_sent >= KEEPALIVE_S:
            yield b": keep-alive\n\n"
            last_sent = time.monotonic()
        await asyncio.sleep(max(0.0, min(CHECK_INTERVAL_S, next_poll - time.monotonic())))


def _alert_id(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 18:
        raise InputError("must be an alert id (a whole number)", "Last-Event-ID")
    return int(text)


@router.get("/alerts/{alert_id}", response_model=Alert)
def get_alert(workspace: CurrentWorkspace, principal: CurrentPrincipal, alert_id: AlertId) -> Alert:
    """One alert with its history: raised, changed, acknowledged (who, when, note),
    re-opened, resolved."""
    require(principal, "read")
    return _visible(principal, workspace.alerts.get(alert_id))


@router.post("/alerts/{alert_id}/acknowledge", response_model=Alert)
def acknowledge_alert(
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    alert_id: AlertId,
    request: AcknowledgeRequest | None = None,
) -> Alert:
    """Say that someone owns the alert (409 if it is not open any more)."""
    require(principal, "deploy")
    _visible(principal, workspace.alerts.get(alert_id))
    note = request.note if request is not None else ""
    return workspace.alerts.acknowledge(alert_id, principal.name, note)


@router.get("/alert-rules/defaults", response_model=list[AlertRule])
def alert_rule_defaults(principal: CurrentPrincipal) -> list[AlertRule]:
    """The rules every model has until it sets its own."""
    require(principal, "read")
    return default_rules()


@router.get("/models/{name}/alert-rules", response_model=AlertRules)
def model_alert_rules(
    name: str, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> AlertRules:
    """The model's alert rules: its own settings, the defaults for the kinds it left alone."""
    require(principal, "read", name)
    workspace.registry.get_model(name)  # 404 for an unknown model
    return RuleStore(workspace.sessions).rules(name)


@router.put("/models/{name}/alert-rules", response_model=AlertRules)
def set_model_alert_rules(
    name: str, body: AlertRulesRequest, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> AlertRules:
    """Replace the model's own rules (engineer or admin); a kind left out goes back to its
    default. Takes effect at the next evaluation, within seconds, in every worker."""
    require(principal, "deploy", name)
    workspace.registry.get_model(name)
    return RuleStore(workspace.sessions).replace(name, body.rules, principal.name)
