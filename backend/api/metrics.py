"""``GET /metrics``: the Prometheus scrape, behind a token like every other read.

Prometheus sends the token from its scrape config (``authorization: {credentials: ...}``) as
``Authorization: Bearer ...``. The counts are the live statistics' kind (requests, latency,
answers per class), so the route asks what ``/api/v1/monitor/live`` asks: ``read_predictions``
(admin, engineer and support tokens; a client token may not). A token scoped to some models
gets only the samples of those models.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.concurrency import run_in_threadpool
from prometheus_client import CONTENT_TYPE_LATEST

from backend.api.deps import CurrentPrincipal
from backend.api.errors import ERRORS
from backend.auth import read_scope
from backend.monitoring.prometheus import ClassLabels, PrometheusMetrics
from backend.serving.state import ServingState

router = APIRouter(tags=["Monitoring"], responses=ERRORS)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
)
async def metrics(request: Request, principal: CurrentPrincipal) -> Response:
    """Counters, latency histograms and active alerts in Prometheus's text exposition format,
    for the models the token may read. The counts are folded in on the event loop, where
    they are kept; the rendering reads the store (the alert gauges), in the thread pool."""
    scope = read_scope(principal, "read_predictions")
    prometheus: PrometheusMetrics = request.app.state.prometheus
    prometheus.flush()
    text = await run_in_threadpool(prometheus.render, scope.models)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


def class_labels_in(state: ServingState) -> ClassLabels:
    """What the counters ask once per model, version and route: a classifier's class labels
    (its answers per class are counted), None for a regressor (its answers are unbounded)."""

    def class_labels(model: str, version: str) -> list[Any] | None:
        batcher = state.loaded(model, version)
        if batcher is None or batcher.loaded.task != "classification":
            return None
        return batcher.loaded.class_labels

    return class_labels
