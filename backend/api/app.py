"""The FastAPI application: one per worker process, bound to one workspace."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backend import __version__
from backend.api import (
    alerts,
    deploy,
    drift,
    events,
    exports,
    feedback,
    feedback_loops,
    held_out,
    lineage,
    manage,
    metrics,
    monitor,
    oip,
    performance,
    records,
    reports,
    review,
)
from backend.api.errors import install_error_handlers
from backend.api.fast_path import PredictionFastPath
from backend.api.limits import BodySizeLimit, InFlightCounter
from backend.api.openapi import install_hand_parsed_schemas
from backend.api.refusals import RefusalCounter
from backend.api.url_text import RefuseNulInUrl
from backend.deploy.controller import RolloutController
from backend.monitoring.drift.alerting import drift_gauges, in_memory
from backend.monitoring.drift.gauge_file import DriftGaugeFile
from backend.monitoring.evaluator import AlertEvaluator
from backend.monitoring.feed import PredictionFeed
from backend.monitoring.live_stats import LiveStats
from backend.monitoring.prometheus import PrometheusMetrics, active_alerts_source
from backend.monitoring.rules import RuleStore
from backend.monitoring.stored_watches import StoredWatches
from backend.predictions.log import PredictionLog
from backend.predictions.observers import PredictionObserver
from backend.serving.candidates import CandidateCalls
from backend.serving.crowd import CrowdGauge
from backend.serving.service import ServingService
from backend.serving.state import ServingState
from backend.settings import Settings
from backend.workspace import Workspace


def create_app(
    settings: Settings | None = None,
    workspace: Workspace | None = None,
    on_stop: Callable[[], None] | None = None,
    judge_stored_rules: bool = True,
) -> FastAPI:
    """``judge_stored_rules``: False when a watcher process of the server judges the rules on
    stored counts (``backend.server`` starts one); this worker then only serves their gauges."""
    workspace = workspace or Workspace.open(settings or Settings.load())
    settings = workspace.settings
    prediction_log = PredictionLog(
        workspace.engine,
        settings.spool_dir,
        settings.log_flush_interval_s,
        fsync=settings.log_fsync,
        window_minute_retention_s=settings.drift_minute_retention_s,
        window_hour_retention_s=settings.drift_hour_retention_s,
        count_windows=settings.monitoring_on,
    )
    feed = PredictionFeed()
    live_stats = LiveStats()
    crowd = CrowdGauge()
    state = ServingState(settings, workspace.registry, CandidateCalls())
    prometheus = PrometheusMetrics(class_labels=metrics.class_labels_in(state))
    prometheus.gauges.add(active_alerts_source(workspace.alerts))
    # Everything that keeps what was answered is an observer of the request path.
    # Monitoring "off" (a serving-only worker, or the bench's A/B): no Prometheus counting.
    observers: list[PredictionObserver] = [live_stats, feed]
    if settings.monitoring_on:
        observers.append(prometheus)
    serving = ServingService(state, prediction_log, observers, crowd)
    rollouts = RolloutController(workspace.deploy, state, settings.rollout_check_interval_s)
    # The alert rules on this worker's live statistics (see monitoring.evaluator).
    alert_rules = AlertEvaluator(
        workspace.alerts,
        RuleStore(workspace.sessions),
        live_stats,
        state,
        interval_s=settings.alert_interval_s,
    )
    # The rules judged on counts in the store (drift windows, feedback loops, user signals):
    # here, or in the server's watcher process (``backend.watcher``), off the request path.
    stored_watches = StoredWatches.build(
        workspace.sessions,
        workspace.registry,
        workspace.drift,
        workspace.alerts,
        state,
        settings.stored_rule_interval_s,
    )
    if judge_stored_rules:
        prometheus.gauges.add(drift_gauges(in_memory(stored_watches.drift)))
    else:
        prometheus.gauges.add(drift_gauges(DriftGaugeFile(settings.drift_gauge_file).read))
    judges_here = settings.monitoring_on and judge_stored_rules

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await serving.start()
        judging = asyncio.create_task(rollouts.run())
        alerting = asyncio.create_task(alert_rules.run())
        stored_rules = asyncio.create_task(
            stored_watches.run() if judges_here else asyncio.Event().wait()
        )
        prometheus_flush = asyncio.create_task(prometheus.flush_every())
        # Everything loaded so far (libraries, models) lives for the whole process: moving it
        # out of the collector's view turns 100+ ms full collections under load into ~1 ms.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            watches = (judging, alerting, stored_rules)
            for task in (*watches, prometheus_flush):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Graceful shutdown: everything accepted is written before the process ends.
            await serving.stop()
            # A worker's last counts reach the shared files (multiprocess mode) before it ends.
            prometheus.flush()
            if on_stop is not None:
                on_stop()

    app = FastAPI(
        title="ServeDeck",
        version=__version__,
        description="Serving, rollout and monitoring of machine-learning models.",
        lifespan=lifespan,
        # A JSON body sent without a Content-Type is read as JSON on every route, as the
        # predict routes (which parse their own bodies) always did.
        strict_content_type=False,
    )
    app.state.workspace = workspace
    app.state.serving = serving
    app.state.feed = feed
    app.state.live_stats = live_stats
    app.state.rollouts = rollouts
    app.state.alert_rules = alert_rules
    app.state.prometheus = prometheus
    install_error_handlers(app)
    # The last added runs first. Every request other than a prediction: the NUL check, the
    # in-flight count, the size limit, then FastAPI.
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_request_bytes,
        path_limits={drift.FILES_PATH: settings.max_drift_upload_bytes},
    )
    app.add_middleware(InFlightCounter, crowd=crowd)
    app.add_middleware(RefuseNulInUrl)
    # Predictions are answered by the outermost layer, which does all of that itself in one
    # place and counts refusals (see fast_path).
    refusals = RefusalCounter(live_stats, state, workspace.tokens, also_count_in=[prometheus])
    app.add_middleware(
        PredictionFastPath,
        serving=serving,
        tokens=workspace.tokens,
        crowd=crowd,
        refusals=refusals,
        max_bytes=settings.max_request_bytes,
    )
    app.include_router(oip.router)
    app.include_router(records.router)
    app.include_router(manage.router)
    app.include_router(feedback.router)
    app.include_router(exports.router)
    app.include_router(review.router)
    app.include_router(reports.router)
    app.include_router(deploy.router)
    app.include_router(monitor.router)
    app.include_router(alerts.router)
    app.include_router(drift.router)
    app.include_router(performance.router)
    app.include_router(feedback_loops.router)
    app.include_router(lineage.router)
    app.include_router(events.router)
    app.include_router(held_out.router)
    app.include_router(metrics.router)
    install_hand_parsed_schemas(app)
    return app
