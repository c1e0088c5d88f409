"""The console's only way to the backend: HTTP over requests, free of Qt.

Every call returns the wire types of ``backend.schemas`` or raises ``ApiError`` (the backend
answered with an error) or ``BackendUnreachable`` (no answer at all). Calls block: the console
runs them through its background-work helper, never on the UI thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import requests
from pydantic import BaseModel, ValidationError

from backend.schemas import (
    AcknowledgeRequest,
    ActionRequest,
    Alert,
    AlertList,
    AlertStatus,
    AuditEvent,
    AuditPage,
    DeploymentState,
    DeployRequest,
    DriftSeries,
    EventPosition,
    FeedbackRequest,
    FeedbackResponse,
    GateReport,
    GateReportList,
    HeldOutRequest,
    HeldOutStatus,
    InferResponse,
    LabelIn,
    LineageGraph,
    LiveSeries,
    ModelInfo,
    ModelList,
    PerformanceReport,
    PredictionEventBatch,
    PredictionPage,
    PredictionRecord,
    RollbackRequest,
    RolloutRequest,
    RolloutStatus,
    StreamEvent,
    WhoAmI,
    WindowDrift,
)
from backend.schemas.exports import ExportPreview, ExportRequest
from backend.schemas.feedback_loops import FeedbackLoopReport
from backend.schemas.reports import (
    ReportBulkResult,
    ReportBulkUpdate,
    ReportCounts,
    ReportCreate,
    ReportDetail,
    ReportNoteCreate,
    ReportPage,
    ReportPublicStatus,
    ReportUpdate,
)
from backend.schemas.review import (
    ReviewAnswer,
    ReviewBatch,
    ReviewDecision,
    ReviewStats,
    ReviewUndone,
)

T = TypeVar("T", bound=BaseModel)
DEFAULT_TIMEOUT_S = 5.0
# An export streams as the backend reads the log: a pause between pages is not a failure.
EXPORT_READ_TIMEOUT_S = 120.0
EXPORT_CHUNK = 256 * 1024
# The stream sends a keep-alive comment every 15 s; twice that without a byte means it is gone.
STREAM_READ_TIMEOUT_S = 35.0


class ApiError(Exception):
    """The backend answered with an error status; ``field`` names the offending input."""

    def __init__(
        self,
        status: int,
        message: str,
        field: str | None = None,
        body: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        # The whole JSON error body: a refused deployment carries its gate report here.
        self.body = body or {}

    @property
    def gate_report(self) -> GateReport | None:
        report = self.body.get("gate_report")
        try:
            return GateReport.model_validate(report) if report is not None else None
        except ValidationError:
            return None


class BackendUnreachable(ApiError):
    def __init__(self, message: str):
        super().__init__(0, message)


@dataclass(frozen=True)
class StreamMessage:
    event_id: str
    batch: PredictionEventBatch


@dataclass(frozen=True)
class AlertMessage:
    event_id: str
    alert: Alert
    # raised, changed, acknowledged, reopened, resolved
    action: str = "raised"


class ApiClient:
    def __init__(self, base_url: str, token: str, timeout_s: float = DEFAULT_TIMEOUT_S):
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self._token = token
        # requests.Session is not documented as thread-safe: one per thread.
        self._local = threading.local()

    # ------------------------------------------------------------------ calls

    def whoami(self) -> WhoAmI:
        return self._get("/api/v1/whoami", WhoAmI)

    def models(self) -> list[ModelInfo]:
        return self._get("/api/v1/models", ModelList).models

    def infer_request(
        self, model: str, version: str, inputs: list[dict[str, Any]]
    ) -> tuple[str, dict[str, Any]]:
        """The URL and JSON body of one Open Inference Protocol request to a version."""
        url = f"{self.base_url}/v2/models/{model}/versions/{version}/infer"
        return url, {"inputs": inputs}

    def infer(self, model: str, version: str, inputs: list[dict[str, Any]]) -> InferResponse:
        url, body = self.infer_request(model, version, inputs)
        return self._request("POST", url.removeprefix(self.base_url), InferResponse, json=body)

    def logged_predictions(self, request_id: str) -> list[PredictionRecord]:
        """The logged rows of one request, with their labels if any arrived."""
        page = self._get("/api/v1/predictions", PredictionPage, params={"request_id": request_id})
        return page.predictions

    def recent_predictions(
        self, model: str | None = None, limit: int = 500
    ) -> list[PredictionRecord]:
        """The newest logged predictions (of one model, or all), with their labels if any."""
        params: dict[str, Any] = {"limit": limit}
        if model:
            params["model"] = model
        return self._get("/api/v1/predictions", PredictionPage, params=params).predictions

    # ------------------------------------------------------------------ deployments

    def model(self, name: str) -> ModelInfo:
        """One model with its rollout, policy and deployment history."""
        return self._get(f"/api/v1/models/{name}", ModelInfo)

    def gate_reports(self, name: str, version: str | None = None) -> list[GateReport]:
        """The model's gate reports (or one version's), newest first."""
        params = {"version": version} if version else None
        return self._get(
            f"/api/v1/models/{name}/gate-reports", GateReportList, params=params
        ).reports

    def deploy(self, name: str, version: str, reason: str) -> DeploymentState:
        body = DeployRequest(version=version, reason=reason)
        return self._post(f"/api/v1/models/{name}/deploy", body, DeploymentState)

    def rollback(self, name: str, reason: str, from_version: str | None = None) -> DeploymentState:
        """``from_version``: the version the user saw serving (a second click is refused)."""
        body = RollbackRequest(reason=reason, from_version=from_version)
        return self._post(f"/api/v1/models/{name}/rollback", body, DeploymentState)

    def start_rollout(self, name: str, request: RolloutRequest) -> DeploymentState:
        return self._request(
            "PUT",
            f"/api/v1/models/{name}/rollout",
            DeploymentState,
            json=request.model_dump(mode="json"),
        )

    def rollout_action(self, name: str, action: str, reason: str = "") -> DeploymentState:
        """``action``: promote, abort, pause or resume."""
        body = ActionRequest(reason=reason)
        return self._post(f"/api/v1/models/{name}/rollout/{action}", body, DeploymentState)

    def rollout_status(self, name: str) -> RolloutStatus:
        return self._get(f"/api/v1/models/{name}/rollout", RolloutStatus)

    def audit(self, model: str | None = None, limit: int = 200) -> list[AuditEvent]:
        params: dict[str, Any] = {"limit": limit}
        if model:
            params["model"] = model
        return self._get("/api/v1/audit", AuditPage, params=params).events

    def post_label(self, model: str, request_id: str, row: int, label: Any) -> FeedbackResponse:
        """Record the ground truth of one prediction row of ``model`` (a request id is only
        unique within a model)."""
        body = FeedbackRequest(
            labels=[LabelIn(request_id=request_id, row=row, label=label, model=model)]
        )
        return self._post("/api/v1/feedback", body, FeedbackResponse)

    # ------------------------------------------------------------------ held-out review

    def review_next(self, model: str, limit: int = 10) -> ReviewBatch:
        """The reviewer's next held-out examples (those they hold first), each leased."""
        return self._get(f"/api/v1/models/{model}/review/next", ReviewBatch, {"limit": limit})

    def review_answer(self, model: str, item: int, label: Any) -> ReviewDecision:
        body = ReviewAnswer(label=label)
        return self._post(f"/api/v1/models/{model}/review/{item}/answer", body, ReviewDecision)

    def review_skip(self, model: str, item: int) -> ReviewDecision:
        path = f"/api/v1/models/{model}/review/{item}/skip"
        return self._request("POST", path, ReviewDecision)

    def review_undo(self, model: str) -> ReviewUndone:
        return self._request("POST", f"/api/v1/models/{model}/review/undo", ReviewUndone)

    def review_stats(self, model: str) -> ReviewStats:
        return self._get(f"/api/v1/models/{model}/review/stats", ReviewStats)

    # ------------------------------------------------------------------ held-out traffic

    def held_out(self, model: str, window_s: int = 3600) -> HeldOutStatus:
        """The share held out of the model's influence, its policy and what it covered."""
        path = f"/api/v1/models/{model}/held-out"
        return self._get(path, HeldOutStatus, {"window_s": window_s})

    def set_held_out(self, model: str, request: HeldOutRequest) -> HeldOutStatus:
        """Hold ``request.share_percent`` of the entities out, answered by its policy."""
        return self._request(
            "PUT",
            f"/api/v1/models/{model}/held-out",
            HeldOutStatus,
            json=request.model_dump(mode="json"),
        )

    def clear_held_out(self, model: str, reason: str) -> HeldOutStatus:
        """Hold nothing out any more (audited with ``reason``)."""
        path = f"/api/v1/models/{model}/held-out"
        return self._request("DELETE", path, HeldOutStatus, params={"reason": reason})

    # ------------------------------------------------------------------ drift and performance

    def window_drift(
        self,
        model: str,
        version: str | None = None,
        window_s: int = 900,
        route: str | None = None,
        histograms: bool = True,
    ) -> WindowDrift:
        """The drift report of the last ``window_s`` seconds of one model (one version or all,
        one route or all traffic), with the display bars of every feature when asked."""
        params: dict[str, Any] = {"window_s": window_s, "histograms": histograms}
        if version:
            params["version"] = version
        if route:
            params["route"] = route
        return self._get(f"/api/v1/models/{model}/drift", WindowDrift, params=params)

    def drift_series(
        self, model: str, version: str | None = None, window_s: int = 900, windows: int = 24
    ) -> DriftSeries:
        """Each feature's drift score over the last ``windows`` windows (for sparklines)."""
        params: dict[str, Any] = {"window_s": window_s, "windows": windows}
        if version:
            params["version"] = version
        return self._get(f"/api/v1/models/{model}/drift/series", DriftSeries, params=params)

    def performance(
        self, model: str, version: str | None = None, window_s: int = 3600, windows: int = 24
    ) -> PerformanceReport:
        """A version's realized and estimated quality per window (default: the one serving)."""
        params: dict[str, Any] = {"window_s": window_s, "windows": windows}
        if version:
            params["version"] = version
        return self._get(f"/api/v1/models/{model}/performance", PerformanceReport, params=params)

    def feedback_loops(
        self,
        model: str,
        version: str | None = None,
        window_s: int = 3600,
        windows: int = 24,
        outcome: str | None = None,
        slice_feature: str | None = None,
    ) -> FeedbackLoopReport:
        """The feedback-loop indicators of a version (default: the one serving), served against
        held-out traffic over the last ``windows`` windows, with the held-out share."""
        params: dict[str, Any] = {"window_s": window_s, "windows": windows}
        for name, value in (
            ("version", version),
            ("outcome", outcome),
            ("slice_feature", slice_feature),
        ):
            if value:
                params[name] = value
        path = f"/api/v1/models/{model}/feedback-loops"
        return self._get(path, FeedbackLoopReport, params=params)

    # ------------------------------------------------------------------ live

    def live_series(
        self,
        resolution_s: int,
        since: float | None = None,
        model: str | None = None,
        version: str | None = None,
    ) -> LiveSeries:
        """The live statistics of one model (or all), and of one of its versions (or all)."""
        params: dict[str, Any] = {"resolution": resolution_s}
        if since is not None:
            params["since"] = since
        if model:
            params["model"] = model
            if version:
                params["version"] = version
        return self._get("/api/v1/monitor/live", LiveSeries, params=params)

    def stream_predictions(
        self, last_event_id: str | None, stop: threading.Event
    ) -> Iterator[StreamMessage]:
        """Server-sent events from the live prediction feed, resuming after last_event_id.

        Ends when ``stop`` is set (checked between messages and keep-alives) or the server
        closes the stream; raises BackendUnreachable when the connection fails.
        """
        for event_id, data in self._stream_events(
            "/api/v1/events/predictions", "predictions", last_event_id, stop
        ):
            yield StreamMessage(event_id, PredictionEventBatch.model_validate_json(data))

    # ------------------------------------------------------------------ alerts

    def alerts(
        self,
        model: str | None = None,
        statuses: tuple[AlertStatus, ...] = ("open", "acknowledged"),
        limit: int = 100,
    ) -> list[Alert]:
        """Alerts newest first, of one model (or every model the token may read)."""
        params: dict[str, Any] = {"status": list(statuses), "limit": limit}
        if model:
            params["model"] = model
        return self._get("/api/v1/alerts", AlertList, params=params).alerts

    def lineage(self) -> LineageGraph:
        """Which models' outputs feed which models' inputs, and the feedback loops."""
        return self._get("/api/v1/lineage", LineageGraph)

    def event_position(self) -> str:
        """Where the event stream stands now: following it from here misses nothing that
        happens after this call (read it before a snapshot)."""
        return self._get("/api/v1/events/position", EventPosition).last_event_id

    def alert(self, alert_id: int) -> Alert:
        return self._get(f"/api/v1/alerts/{alert_id}", Alert)

    def acknowledge_alert(self, alert_id: int, note: str) -> Alert:
        """Say that you own the alert (409 when it is not open any more, with who has it)."""
        body = AcknowledgeRequest(note=note)
        return self._post(f"/api/v1/alerts/{alert_id}/acknowledge", body, Alert)

    def stream_alerts(
        self, last_event_id: str | None, stop: threading.Event
    ) -> Iterator[AlertMessage]:
        """Every change of an alert (raised, changed, acknowledged, re-opened, resolved) after
        ``last_event_id`` (a position of the event stream), oldest first; without one, from
        now on. Ends and fails as stream_predictions."""
        for event_id, data in self._stream_events("/api/v1/events", "alert", last_event_id, stop):
            event = StreamEvent.model_validate_json(data)
            if event.alert is not None:
                yield AlertMessage(event_id, event.alert, event.action)

    # ------------------------------------------------------------------ error reports

    def file_report(self, report: ReportCreate) -> ReportPublicStatus:
        """File an end user's report that a logged prediction was wrong."""
        return self._post("/api/v1/reports", report, ReportPublicStatus)

    def reports(self, query: dict[str, Any]) -> ReportPage:
        """One page of the triage inbox; ``query`` holds the route's filters, sort and cursor
        (a list value repeats the parameter, as ``status`` does)."""
        return self._get("/api/v1/reports", ReportPage, params=query)

    def report_counts(self, query: dict[str, Any]) -> ReportCounts:
        """Counts and ages per status under the inbox's filters (its status filter left out)."""
        return self._get("/api/v1/reports/counts", ReportCounts, params=query)

    def report(self, report_id: int) -> ReportDetail:
        return self._get(f"/api/v1/reports/{report_id}", ReportDetail)

    def update_report(self, report_id: int, change: ReportUpdate) -> ReportDetail:
        """A triage change; only the fields set in ``change`` are sent (the others stay)."""
        return self._request(
            "PATCH",
            f"/api/v1/reports/{report_id}",
            ReportDetail,
            json=change.model_dump(mode="json", exclude_unset=True),
        )

    def add_report_note(self, report_id: int, text: str) -> ReportDetail:
        body = ReportNoteCreate(text=text)
        return self._post(f"/api/v1/reports/{report_id}/notes", body, ReportDetail)

    def bulk_update_reports(self, change: ReportBulkUpdate) -> ReportBulkResult:
        """One change to many reports, all or nothing."""
        return self._request(
            "POST",
            "/api/v1/reports/bulk",
            ReportBulkResult,
            json=change.model_dump(mode="json", exclude_unset=True),
        )

    # ------------------------------------------------------------------ retraining export

    def preview_export(self, request: ExportRequest) -> ExportPreview:
        """What an export with these filters holds (rows per label source and class)."""
        return self._post("/api/v1/exports/preview", request, ExportPreview)

    def download_export(
        self,
        request: ExportRequest,
        target: Path,
        on_progress: Callable[[int, int | None], None],
        cancelled: Callable[[], bool],
    ) -> int | None:
        """Stream the export's ZIP into ``target`` chunk by chunk (never whole in memory),
        calling ``on_progress(bytes so far, log rows it reads or None)``. Returns the bytes
        written, or None when ``cancelled()`` turned true (the partial file is left to the
        caller, who removes it)."""
        with self._streamed(
            self._session(),
            "POST",
            "/api/v1/exports",
            EXPORT_READ_TIMEOUT_S,
            headers=self._headers(),
            json=request.model_dump(mode="json", exclude_unset=True),
        ) as response:
            rows_header = response.headers.get("X-Export-Rows-Read", "")
            rows = int(rows_header) if rows_header.isdigit() else None
            written = 0
            with target.open("wb") as out:
                for chunk in response.iter_content(EXPORT_CHUNK):
                    if cancelled():
                        return None
                    out.write(chunk)
                    written += len(chunk)
                    on_progress(written, rows)
        return written

    # ------------------------------------------------------------------ plumbing

    def _stream_events(
        self, path: str, kind: str, last_event_id: str | None, stop: threading.Event
    ) -> Iterator[tuple[str, str]]:
        """(event id, data) of each server-sent event ``kind`` at ``path``."""
        headers = self._headers()
        headers["Accept"] = "text/event-stream"
        if last_event_id:
            headers["Last-Event-ID"] = last_event_id
        with self._streamed(requests, "GET", path, STREAM_READ_TIMEOUT_S, headers=headers) as got:
            yield from _parse_sse(got.iter_lines(decode_unicode=True), stop, kind)

    @contextlib.contextmanager
    def _streamed(
        self, opener: Any, method: str, path: str, read_timeout_s: float, **kwargs: Any
    ) -> Iterator[requests.Response]:
        """A streamed answer, open and ok (else its ``ApiError``); a connection lost while it
        is read is ``BackendUnreachable``, as one lost before it began."""
        try:
            response = opener.request(
                method,
                f"{self.base_url}{path}",
                stream=True,
                timeout=(self.timeout_s, read_timeout_s),
                **kwargs,
            )
        except requests.RequestException as exc:
            raise BackendUnreachable(_describe(exc)) from exc
        with response:
            try:
                # Reading a refusal's reason can lose the connection too.
                if not response.ok:
                    raise _error_from(response)
                yield response
            except requests.RequestException as exc:
                raise BackendUnreachable(_describe(exc)) from exc

    def _session(self) -> requests.Session:
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _get(self, path: str, model: type[T], params: dict[str, Any] | None = None) -> T:
        return self._request("GET", path, model, params=params)

    def _post(self, path: str, body: BaseModel, model: type[T]) -> T:
        return self._request("POST", path, model, json=body.model_dump(mode="json"))

    def _request(self, method: str, path: str, model: type[T], **kwargs: Any) -> T:
        try:
            response = self._session().request(
                method,
                f"{self.base_url}{path}",
                headers=self._headers(),
                timeout=self.timeout_s,
                **kwargs,
            )
        except requests.RequestException as exc:
            raise BackendUnreachable(_describe(exc)) from exc
        if not response.ok:
            raise _error_from(response)
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise ApiError(
                response.status_code, f"unexpected answer from the backend: {exc}"
            ) from exc


def _describe(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return "the backend did not answer in time"
    if isinstance(exc, requests.ConnectionError):
        return "cannot reach the backend"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        # An answer cut off (urllib3's words are "Response ended prematurely" or the repr of
        # an IncompleteRead), as when the backend is killed while it streams an export.
        return "the connection to the backend was lost while its answer was read"
    return str(exc)


def _error_from(response: requests.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return ApiError(response.status_code, str(body["error"]), body.get("field"), body)
    return ApiError(response.status_code, response.reason or "no reason given")


def _parse_sse(
    lines: Iterator[str], stop: threading.Event, wanted: str = "predictions"
) -> Iterator[tuple[str, str]]:
    """(event id, data) of each ``wanted`` message; comments are keep-alives."""
    event_id = ""
    kind = "message"
    data: list[str] = []
    for line in lines:
        if stop.is_set():
            return
        if not line:
            if data and kind == wanted:
                yield event_id, "\n".join(data)
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "id":
            event_id = value
        elif name == "event":
            kind = value
        elif name == "data":
            data.append(value)
