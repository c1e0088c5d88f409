"""Wire types of monitoring: alerts."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.schemas.common import RequestBody, UtcDateTime

AlertKind = Literal["live_metric"]
AlertSeverity = Literal["warning", "critical"]
# open: nobody has looked yet; acknowledged: someone owns it; resolved: it no longer applies
# (the version was deployed again on purpose, so it is judged afresh).
AlertStatus = Literal["open", "acknowledged", "resolved"]
ALERT_STATUSES: tuple[AlertStatus, ...] = ("open", "acknowledged", "resolved")


class Alert(BaseModel):
    """Something about a model that needs a person: what happened, what it means, what to do."""

    id: int
    model: str
    version: str | None
    kind: AlertKind
    severity: AlertSeverity
    status: AlertStatus
    # One line, for lists and badges.
    title: str
    # Plain words for someone who is not a statistician: what it means and what to do.
    explanation: str
    details: dict[str, Any] = Field(default_factory=dict)
    raised_at: UtcDateTime
    acknowledged_by: str | None = None
    acknowledged_at: UtcDateTime | None = None
    acknowledgement: str = ""
    resolved_at: UtcDateTime | None = None
    resolution: str = ""


class AlertList(BaseModel):
    alerts: list[Alert]


class AcknowledgeRequest(RequestBody):
    note: str = Field(default="", max_length=2000, description="what you are doing about it")
