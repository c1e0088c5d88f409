"""Error reports in words for support staff: statuses, categories, keys and the inbox's filters.

One place says what each status means and which key sets it, so that the inbox, the detail
pane's buttons and their tooltips never disagree. ``ReportFilters`` is the inbox's question
as plain data: it turns into the route's query and into a saved view (JSON in QSettings).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from backend.schemas.reports import REPORT_STATUSES, SEVERITIES

STATUS_WORDS: dict[str, str] = {
    "new": "New",
    "in_review": "In review",
    "needs_info": "Needs info",
    "confirmed": "Confirmed",
    "not_model_error": "Not a model error",
    "duplicate": "Duplicate",
    "resolved": "Resolved",
}

STATUS_MEANING: dict[str, str] = {
    "new": "Filed and not looked at yet.",
    "in_review": "Someone is looking into it.",
    "needs_info": "Waiting for more information from the reporter.",
    "confirmed": "The model was wrong; the correction becomes training data.",
    "not_model_error": "The model was not at fault (a data, product or user issue).",
    "duplicate": "Reports the same problem as an earlier report, which carries on.",
    "resolved": "Fixed, usually by a newer model version.",
}

# One key per status, set on the report shown (or on every report selected). Letters, not
# digits: the digits stay free for the class keys of the review queue.
STATUS_KEYS: dict[str, str] = {
    "in_review": "R",
    "needs_info": "I",
    "confirmed": "C",
    "not_model_error": "X",
    "duplicate": "D",
    "resolved": "V",
    "new": "Shift+N",
}

# Statuses still waiting on support staff: what the inbox shows unless asked otherwise.
OPEN_STATUSES: tuple[str, ...] = ("new", "in_review", "needs_info", "confirmed")

CATEGORY_WORDS: dict[str, str] = {
    "wrong_answer": "Wrong answer",
    "offensive": "Offensive",
    "privacy": "Privacy",
    "other": "Other",
}

CATEGORY_MEANING: dict[str, str] = {
    "wrong_answer": "The answer was wrong (say what would have been right, if you know).",
    "offensive": "The answer was offensive or harmful.",
    "privacy": "The answer exposed personal or confidential data.",
    "other": "Something else about this answer was wrong.",
}

SEVERITY_WORDS: dict[str, str] = {
    "low": "Low",
    "medium": "Medium",
    "high": "High",
    "critical": "Critical",
}
SEVERITY_TONE: dict[str, str] = {"low": "", "medium": "", "high": "warn", "critical": "bad"}

SORT_WORDS: dict[str, str] = {
    "filed_at": "Filed",
    "updated_at": "Last change",
    "severity": "Severity",
    "status": "Status",
}

CHANGE_WORDS: dict[str, str] = {
    "filed": "filed the report",
    "status": "changed the status",
    "assignee": "changed the assignee",
    "severity": "changed the severity",
    "tags": "changed the tags",
    "note": "added a note",
    "duplicate_of": "linked it as a duplicate",
    "fixed_in": "named the version that fixed it",
    "correction": "set the correct answer",
}

UNASSIGNED = "none"  # the route's word for "no assignee"
PAGE_SIZE = 200
MAX_PAGE = 500  # the route's limit


def status_word(status: str) -> str:
    return STATUS_WORDS.get(status, status.replace("_", " "))


def status_tip(status: str) -> str:
    """What a status means and the key that sets it, for a button's tooltip."""
    key = STATUS_KEYS.get(status)
    suffix = f" Key: {key}." if key else ""
    return f"{status_word(status)}: {STATUS_MEANING.get(status, '')}{suffix}"


def age_text(seconds: float | None) -> str:
    """An age as people say it: 45 s, 12 min, 5 h, 3 d."""
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def age_since(moment: datetime, now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return age_text(max((now - moment).total_seconds(), 0.0))


def when_text(moment: datetime) -> str:
    """A moment in the reader's local time, to the minute."""
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def value_text(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    return json.dumps(value)


@dataclass
class ReportFilters:
    """The inbox's question: which reports, in which order."""

    statuses: list[str] = field(default_factory=lambda: list(OPEN_STATUSES))
    category: str = ""
    model: str = ""
    # "" anyone, "none" unassigned, otherwise a name (the signed-in person's for "mine").
    assignee: str = ""
    text: str = ""
    sort: str = "filed_at"
    order: str = "desc"

    def query(self, with_status: bool = True) -> dict[str, Any]:
        """The route's query parameters (the counts take the same without the status)."""
        query: dict[str, Any] = {}
        if with_status and self.statuses:
            query["status"] = list(self.statuses)
        for name, value in (
            ("category", self.category),
            ("model", self.model),
            ("assignee", self.assignee),
            ("q", self.text.strip()),
        ):
            if value:
                query[name] = value
        if with_status:
            query["sort"] = self.sort
            query["order"] = self.order
        return query

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ReportFilters:
        """A saved view; what no longer makes sense (a status renamed) falls back to the
        default rather than failing the page."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            return cls()
        if not isinstance(data, dict):
            return cls()
        known = {f.name for f in fields(cls)}
        kept = {name: value for name, value in data.items() if name in known}
        filters = cls(**kept)
        filters.statuses = [s for s in filters.statuses if s in REPORT_STATUSES]
        if filters.sort not in SORT_WORDS:
            filters.sort = "filed_at"
        if filters.order not in ("asc", "desc"):
            filters.order = "desc"
        return filters


# The views every console starts with; people save their own beside them.
BUILT_IN_VIEWS: dict[str, ReportFilters] = {
    "Open reports": ReportFilters(),
    "Unassigned, oldest first": ReportFilters(
        statuses=["new", "in_review", "needs_info"], assignee=UNASSIGNED, order="asc"
    ),
    "Most severe first": ReportFilters(sort="severity"),
    "Everything": ReportFilters(statuses=[]),
}
MINE = "Assigned to me"

SEVERITY_ORDER = {name: index for index, name in enumerate(SEVERITIES)}
