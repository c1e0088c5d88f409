"""Feedback-loops API: a version's loop indicators, served against held-out traffic, with the
model's held-out share, policy and coverage, in one call (the Feedback loops page)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.api.report_span import (
    EndQuery,
    VersionQuery,
    WindowQuery,
    WindowsQuery,
    reported_version,
)
from backend.auth import read_scope
from backend.errors import InputError
from backend.monitoring.feedback_loops.report import feedback_loop_report
from backend.monitoring.rules import RuleStore
from backend.schemas import FeedbackLoopReport
from backend.schemas.feedback_loops import MAX_REPORT_SPAN_S

router = APIRouter(prefix="/api/v1", tags=["Monitoring"], responses=ERRORS)


@router.get("/models/{name}/feedback-loops", response_model=FeedbackLoopReport)
def model_feedback_loops(
    name: str,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    version: VersionQuery = None,
    window_s: WindowQuery = 3600,
    windows: WindowsQuery = 24,
    end: EndQuery = None,
    outcome: Annotated[
        str | None,
        Query(
            description="the outcome class (its value or name; default: the version's last)",
            min_length=1,
            max_length=256,
        ),
    ] = None,
    slice_feature: Annotated[
        str | None,
        Query(
            description="the feature prediction bias is sliced by (default: the first)",
            min_length=1,
            max_length=256,
        ),
    ] = None,
) -> FeedbackLoopReport:
    """Six indicators of a feedback loop, each served traffic against held-out traffic with
    95% intervals, the data it rests on, a status (ok / warn / alert against the model's
    feedback_loop alert rule), a trend per window and what it means in plain words: the
    outcome-rate gap, measured performance, label drift, selective labels, prediction bias
    per slice of a feature, and exposure concentration. Classifiers only, except the label
    counts; a regression model's report says which do not apply."""
    read_scope(principal, "read_predictions", name)
    if window_s * windows > MAX_REPORT_SPAN_S:
        # A report reads every minute of its span per route: a bound on what one request costs.
        raise InputError(
            f"{windows} windows of {window_s} s span more than {MAX_REPORT_SPAN_S // 86_400} days: "
            "ask for fewer or shorter windows",
            "windows",
        )
    info = reported_version(workspace.registry, name, version)
    return feedback_loop_report(
        workspace.sessions,
        RuleStore(workspace.sessions),
        name,
        info,
        # Coverage over the newest window's length: the cost of a window of the log.
        workspace.deploy.held_out.status(name, window_s),
        window_s=window_s,
        windows=windows,
        end=end,
        outcome=outcome,
        slice_feature=slice_feature,
    )
