"""Error reports from end users and their triage by support staff: the wire types.

A report names one logged prediction (model, request id, row) and says what was wrong with it.
Two audiences read a report: the application that filed it, through a status in words an end
user understands (``ReportPublicStatus``, never internal notes), and support staff, through the
whole record with the prediction, the history and the notes (``ReportDetail``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, StringConstraints

from backend.schemas import LoggedPredictionFields, RequestId
from backend.schemas.common import RequestBody, StorableJson, UtcDateTime

ReportCategory = Literal["wrong_answer", "offensive", "privacy", "other"]
REPORT_CATEGORIES: tuple[ReportCategory, ...] = ("wrong_answer", "offensive", "privacy", "other")

# The triage workflow. "duplicate" links to the original report; "resolved" names the version
# that fixed it when a model change did.
ReportStatus = Literal[
    "new",
    "in_review",
    "needs_info",
    "confirmed",
    "not_model_error",
    "duplicate",
    "resolved",
]
REPORT_STATUSES: tuple[ReportStatus, ...] = (
    "new",
    "in_review",
    "needs_info",
    "confirmed",
    "not_model_error",
    "duplicate",
    "resolved",
)
Severity = Literal["low", "medium", "high", "critical"]
SEVERITIES: tuple[Severity, ...] = ("low", "medium", "high", "critical")

# What a history entry records.
ReportChangeKind = Literal[
    "filed",
    "status",
    "assignee",
    "severity",
    "tags",
    "note",
    "duplicate_of",
    "fixed_in",
    "correction",
]

MAX_DESCRIPTION = 5000
MAX_NOTE = 5000
MAX_TAG = 64
MAX_TAGS = 20
MAX_BULK = 1000

# A tag: printable text (no control characters, NUL included), trimmed when stored.
ReportTag = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_TAG, pattern=r"^[^\x00-\x1f\x7f-\x9f]+$")
]


class ReportCreate(RequestBody):
    """``POST /api/v1/reports``: an end user says a prediction was wrong (client tokens may
    file for their models)."""

    request_id: RequestId = Field(min_length=1)
    row: int = Field(default=0, ge=0, le=2**31 - 1)
    # The model that answered: a request id is only unique within a model. Needed unless the
    # token may use one model alone.
    model: str | None = Field(default=None, min_length=1, max_length=128)
    category: ReportCategory
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    # The answer that would have been right, in the model's output type (a class label for a
    # classifier, a number for a regressor); None when the reporter does not know.
    expected: StorableJson = None
    # The application's own reference for the person who reported (never shown to others).
    reporter: str | None = Field(default=None, max_length=256)


class ReportPublicStatus(BaseModel):
    """``GET /api/v1/reports/{id}/status``: what the reporter's application may show."""

    id: int
    status: ReportStatus
    # One line and a short paragraph for an end user: what happened and how it will be fixed.
    headline: str
    explanation: str
    filed_at: UtcDateTime
    updated_at: UtcDateTime


class ReportNote(BaseModel):
    id: int
    author: str
    at: UtcDateTime
    text: str


class ReportChange(BaseModel):
    """One entry of a report's history: who changed what, when."""

    at: UtcDateTime
    actor: str
    kind: ReportChangeKind
    before: Any = None
    after: Any = None


class ReportSummary(BaseModel):
    """One row of the inbox."""

    id: int
    model: str
    version: str | None
    request_id: str
    row: int
    category: ReportCategory
    status: ReportStatus
    severity: Severity | None
    assignee: str | None
    tags: list[str]
    description: str
    expected: Any = None
    # The right answer as support staff confirmed it (over the reporter's ``expected``); with
    # status confirmed or resolved it is the label the retraining export uses.
    correction: Any = None
    filed_by: str
    reporter: str | None
    filed_at: UtcDateTime
    updated_at: UtcDateTime
    duplicate_of: int | None = None
    fixed_in_version: str | None = None
    notes: int = 0


class ReportDetail(ReportSummary):
    """A report with the prediction it names, as the log holds it, and its whole history."""

    # None when the logged row is no longer in the log (retention); the report keeps its
    # model, version and request id.
    prediction: LoggedPredictionFields | None
    decision: str | None = None
    history: list[ReportChange] = Field(default_factory=list)
    note_thread: list[ReportNote] = Field(default_factory=list)
    # Other reports on the same prediction or with closely matching text: candidates for a
    # duplicate link, best first.
    possible_duplicates: list[ReportSummary] = Field(default_factory=list)
    # The statuses this report may move to from where it is now.
    allowed_statuses: list[ReportStatus] = Field(default_factory=list)


class ReportPage(BaseModel):
    reports: list[ReportSummary]
    # How many reports match the filters (all pages together).
    total: int
    # Pass as ``after`` to read the next page; None on the last page.
    next_cursor: str | None = None


class StatusCount(BaseModel):
    status: ReportStatus
    count: int
    # Age of the oldest and the median report in this status, in seconds (None: no reports).
    oldest_age_s: float | None = None
    median_age_s: float | None = None


class ReportCounts(BaseModel):
    """Counts and ages per status, under the same filters as the inbox (without status)."""

    statuses: list[StatusCount]
    total: int


class ReportUpdate(RequestBody):
    """``PATCH /api/v1/reports/{id}``: a triage change. Fields left out are not changed."""

    status: ReportStatus | None = None
    # The original report, required with status "duplicate".
    duplicate_of: int | None = Field(default=None, ge=1, le=2**31 - 1)
    # The version whose deployment fixed it, with status "resolved" (optional there).
    fixed_in_version: str | None = Field(default=None, min_length=1, max_length=32)
    # "" unassigns.
    assignee: str | None = Field(default=None, max_length=128)
    severity: Severity | None = None
    # The right answer, in the model's output type (see ReportSummary.correction).
    correction: StorableJson = None
    # Replaces the tag set.
    tags: list[ReportTag] | None = Field(default=None, max_length=MAX_TAGS)


class ReportNoteCreate(RequestBody):
    text: str = Field(min_length=1, max_length=MAX_NOTE)


class ReportBulkUpdate(RequestBody):
    """``POST /api/v1/reports/bulk``: one change applied to many reports, all or nothing."""

    # Each report once.
    ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1, max_length=MAX_BULK, json_schema_extra={"uniqueItems": True}
    )
    change: ReportUpdate
    # Tags added to (not replacing) each report's tags.
    add_tags: list[ReportTag] = Field(default_factory=list, max_length=MAX_TAGS)


class ReportBulkResult(BaseModel):
    updated: int
