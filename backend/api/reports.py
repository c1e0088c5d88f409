"""Error reports: end users file them (through their application's client token), support
staff triage them. The service (feedback/reports*) decides; this module only translates.

``report`` (client, support, engineer, admin) files and reads the status of what the token
filed; ``triage`` (support, engineer, admin) reads and changes reports of the token's models.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query

from backend.api.deps import CurrentPrincipal, CurrentServing, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.feedback.report_search import ReportFilters, count_reports, list_reports
from backend.feedback.report_triage import add_note, bulk_update, update_report
from backend.feedback.reports import FlushLog, file_report, public_status, report_detail
from backend.schemas.reports import (
    ReportBulkResult,
    ReportBulkUpdate,
    ReportCategory,
    ReportCounts,
    ReportCreate,
    ReportDetail,
    ReportNoteCreate,
    ReportPage,
    ReportPublicStatus,
    ReportStatus,
    ReportUpdate,
)
from backend.serving.service import ServingService

router = APIRouter(prefix="/api/v1/reports", tags=["Reports"], responses=ERRORS)

ReportId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the report")]
# Epoch seconds up to the year 5138: a bound that keeps every comparison a finite float.
EPOCH_MAX = 1e11


def _flush_log(serving: ServingService) -> FlushLog:
    def flush(timeout_s: float) -> object:
        try:
            return serving.prediction_log.flush(timeout_s)
        except RuntimeError:  # the log is not started (a worker serving no predictions)
            return 0

    return flush


@router.post("", response_model=ReportPublicStatus, status_code=201)
def post_report(
    body: ReportCreate,
    workspace: CurrentWorkspace,
    serving: CurrentServing,
    principal: CurrentPrincipal,
) -> ReportPublicStatus:
    return file_report(workspace.sessions, body, principal, _flush_log(serving))


def _filters(
    category: ReportCategory | None = None,
    model: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    version: Annotated[str | None, Query(min_length=1, max_length=32)] = None,
    assignee: Annotated[
        str | None, Query(min_length=1, max_length=128, description="'none': unassigned")
    ] = None,
    tag: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=500, description="words in the description or notes"),
    ] = None,
    filed_after: Annotated[
        float | None, Query(ge=0, le=EPOCH_MAX, description="epoch seconds")
    ] = None,
    filed_before: Annotated[
        float | None, Query(ge=0, le=EPOCH_MAX, description="epoch seconds")
    ] = None,
    min_age_s: Annotated[float | None, Query(ge=0, le=EPOCH_MAX)] = None,
    max_age_s: Annotated[float | None, Query(ge=0, le=EPOCH_MAX)] = None,
) -> ReportFilters:
    return ReportFilters(
        category=category,
        model=model,
        version=version,
        assignee=assignee,
        tag=tag,
        q=q,
        filed_after=filed_after,
        filed_before=filed_before,
        min_age_s=min_age_s,
        max_age_s=max_age_s,
    )


Filters = Annotated[ReportFilters, Depends(_filters)]


@router.get("", response_model=ReportPage)
def get_reports(
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    filters: Filters,
    status: Annotated[
        list[ReportStatus] | None, Query(description="one or more statuses (repeat)")
    ] = None,
    sort: Literal["filed_at", "updated_at", "severity", "status"] = "filed_at",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[
        str | None, Query(min_length=1, max_length=300, description="next_cursor of a page")
    ] = None,
) -> ReportPage:
    filters = replace(filters, statuses=tuple(dict.fromkeys(status or ())))
    with workspace.sessions() as session:
        return list_reports(session, filters, principal, sort, order, limit, after)


@router.get("/counts", response_model=ReportCounts)
def get_report_counts(
    workspace: CurrentWorkspace, principal: CurrentPrincipal, filters: Filters
) -> ReportCounts:
    with workspace.sessions() as session:
        return count_reports(session, filters, principal)


@router.post("/bulk", response_model=ReportBulkResult)
def post_bulk(
    body: ReportBulkUpdate, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> ReportBulkResult:
    return ReportBulkResult(updated=bulk_update(workspace.sessions, body, principal))


@router.get("/{report_id}/status", response_model=ReportPublicStatus)
def get_report_status(
    report_id: ReportId, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> ReportPublicStatus:
    return public_status(workspace.sessions, report_id, principal)


@router.get("/{report_id}", response_model=ReportDetail)
def get_report(
    report_id: ReportId, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> ReportDetail:
    return report_detail(workspace.sessions, report_id, principal)


@router.patch("/{report_id}", response_model=ReportDetail)
def patch_report(
    report_id: ReportId,
    body: ReportUpdate,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
) -> ReportDetail:
    return update_report(workspace.sessions, report_id, body, principal)


@router.post("/{report_id}/notes", response_model=ReportDetail)
def post_note(
    report_id: ReportId,
    body: ReportNoteCreate,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
) -> ReportDetail:
    return add_note(workspace.sessions, report_id, body, principal)
