"""Wire types of monitoring: alerts, their history, alert rules and the event stream."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator

from backend.schemas.common import RequestBody, UtcDateTime
from backend.schemas.deploy import AuditEvent

# One kind per rule. Adding a rule kind: a name here and one condition in
# backend/monitoring/rules.py (the drift and estimated-metric kinds have no condition yet:
# their numbers are computed elsewhere and handed to the same machinery).
AlertKind = Literal[
    "live_metric",
    "p99_latency",
    "error_rate",
    "refusal_rate",
    "decision_mix",
    "drift_features",
    "drift_dataset",
    "drift_prediction",
    "estimated_metric",
    "feedback_loop",
    "undo_rate",
    "complaint_rate",
]
ALERT_KINDS: tuple[AlertKind, ...] = (
    "live_metric",
    "p99_latency",
    "error_rate",
    "refusal_rate",
    "decision_mix",
    "drift_features",
    "drift_dataset",
    "drift_prediction",
    "estimated_metric",
    "feedback_loop",
    "undo_rate",
    "complaint_rate",
)
AlertSeverity = Literal["warning", "critical"]
# open: nobody has looked yet; acknowledged: someone owns it; resolved: it no longer applies
# (its condition cleared for a while, or the version was deployed again on purpose).
AlertStatus = Literal["open", "acknowledged", "resolved"]
ALERT_STATUSES: tuple[AlertStatus, ...] = ("open", "acknowledged", "resolved")
# What happened to an alert, in its history and on the event stream.
AlertAction = Literal["raised", "changed", "acknowledged", "reopened", "resolved"]
# The decisions a decision-mix rule can count: every decision but a plain answer
# (backend.schemas.DECISIONS without "answered"; a test keeps the two in step).
MixDecision = Literal["abstained", "fallback", "held_out"]


class AlertHistoryEntry(BaseModel):
    action: AlertAction
    at: UtcDateTime
    # Who did it: a token's name, or "servedeck" for what the rules did by themselves.
    actor: str
    note: str = ""


class Alert(BaseModel):
    """Something about a model that needs a person: what happened, what it means, what to do."""

    id: int
    model: str
    # The version it concerns; None for a rule that watches the model's whole traffic.
    version: str | None
    kind: AlertKind
    severity: AlertSeverity
    status: AlertStatus
    # One line, for lists and badges.
    title: str
    # Plain words for someone who is not a statistician: what it means and what to do.
    explanation: str
    # The newest measurement while it is open (updated in place, no new alert).
    details: dict[str, Any] = Field(default_factory=dict)
    raised_at: UtcDateTime
    # When a rule last saw the condition (any worker).
    last_seen_at: UtcDateTime | None = None
    acknowledged_by: str | None = None
    acknowledged_at: UtcDateTime | None = None
    acknowledgement: str = ""
    resolved_at: UtcDateTime | None = None
    resolution: str = ""
    # How often it came back within its rule's cooldown after being resolved.
    reopened: int = 0
    # Oldest first; filled where one alert is read (GET /api/v1/alerts/{id}).
    history: list[AlertHistoryEntry] = Field(default_factory=list)


class AlertList(BaseModel):
    alerts: list[Alert]


class AcknowledgeRequest(RequestBody):
    note: str = Field(default="", max_length=2000, description="what you are doing about it")


# ---------------------------------------------------------------- rules

# Bounds of a rule's numbers: wide enough for any real service, narrow enough that a typo
# (a latency in seconds where milliseconds are meant, a share of 5 for 5 %) is refused.
MAX_WINDOW_S = 86_400
MAX_HOLD_S = 86_400
MAX_COOLDOWN_S = 7 * 86_400
MAX_LATENCY_MS = 600_000.0
SHARE_KINDS = ("error_rate", "refusal_rate", "decision_mix", "undo_rate", "complaint_rate")
THRESHOLD_KINDS = ("p99_latency", *SHARE_KINDS)


class AlertRule(RequestBody):
    """When an alert of one kind is raised for a model, how loud it is and when it ends.

    The condition must hold for ``for_s`` seconds before the alert is raised (as Prometheus'
    ``for:``); it is resolved once the condition has been clear for ``clear_for_s`` seconds
    (hysteresis, so a value hovering at the threshold does not flap). A recurrence within
    ``cooldown_s`` after the resolution re-opens the same alert instead of raising another.
    """

    kind: AlertKind
    enabled: bool = True
    severity: AlertSeverity = "warning"
    threshold: float | None = Field(
        default=None,
        allow_inf_nan=False,
        validate_default=True,
        description=(
            "p99_latency: milliseconds; error_rate, refusal_rate, decision_mix: a share "
            "between 0 and 1; live_metric: none (the version's acceptable range applies); "
            "drift_features, drift_dataset: the share of drifted inputs, or none; "
            "drift_prediction: none; undo_rate, complaint_rate: the share of answered "
            "predictions undone or complained about, above 0 and at most 1; "
            "feedback_loop: the gap between served and held-out "
            "traffic (a difference of shares, or a Jensen-Shannon distance) that alerts, "
            "above 0 and at most 1 (half of it warns)"
        ),
    )
    window_s: int = Field(default=300, ge=10, le=MAX_WINDOW_S)
    min_count: int = Field(
        default=50, ge=1, le=10**9, description="requests the window needs to be judged"
    )
    for_s: int = Field(default=0, ge=0, le=MAX_HOLD_S)
    clear_for_s: int = Field(default=300, ge=0, le=MAX_HOLD_S)
    cooldown_s: int = Field(default=1_800, ge=0, le=MAX_COOLDOWN_S)
    decisions: list[MixDecision] = Field(
        default_factory=list,
        max_length=3,
        validate_default=True,
        description="decision_mix: the decisions counted",
    )

    # Field validators (not one for the whole rule) so that a refusal names the field itself;
    # they also run for a field left out (validate_default).
    @field_validator("threshold")
    @classmethod
    def _threshold_fits_the_kind(
        cls, threshold: float | None, info: ValidationInfo
    ) -> float | None:
        kind = info.data.get("kind")
        if kind == "live_metric" and threshold is not None:
            raise ValueError(
                "live_metric has no threshold: each version's acceptable range applies"
            )
        if kind == "p99_latency" and (threshold is None or not 0 < threshold <= MAX_LATENCY_MS):
            raise ValueError(
                f"p99_latency needs milliseconds above 0 and at most {MAX_LATENCY_MS:g}"
            )
        if kind in SHARE_KINDS and (threshold is None or not 0 < threshold <= 1):
            raise ValueError(f"{kind} needs a share above 0 and at most 1 (5 % is 0.05)")
        drift_share = kind in ("drift_features", "drift_dataset")
        if drift_share and threshold is not None and not 0 < threshold <= 1:
            raise ValueError(
                f"{kind} takes the share of drifted inputs that raises it, above 0 and at "
                "most 1, or none (drift_features: any input; drift_dataset: the model's "
                "drift settings' dataset share)"
            )
        if kind == "feedback_loop" and (threshold is None or not 0 < threshold <= 1):
            raise ValueError(
                "feedback_loop needs the gap that alerts, above 0 and at most 1 (10 points "
                "between served and held-out traffic is 0.1)"
            )
        if kind == "drift_prediction" and threshold is not None:
            raise ValueError("drift_prediction has no threshold: any drifted output raises it")
        return threshold

    @field_validator("decisions")
    @classmethod
    def _decisions_fit_the_kind(
        cls, decisions: list[MixDecision], info: ValidationInfo
    ) -> list[MixDecision]:
        kind = info.data.get("kind")
        if kind == "decision_mix" and not decisions:
            raise ValueError("decision_mix needs the decisions it counts")
        if kind is not None and kind != "decision_mix" and decisions:
            raise ValueError(f"only decision_mix counts decisions, not {kind}")
        return decisions


class AlertRules(BaseModel):
    model: str
    # Every kind that can be evaluated, the model's own setting where it has one.
    rules: list[AlertRule]
    # The kinds this model set itself (the others are the defaults).
    customized: list[AlertKind] = Field(default_factory=list)


class AlertRulesRequest(RequestBody):
    """The model's rules: each kind at most once; a kind left out goes back to its default."""

    rules: list[AlertRule] = Field(max_length=len(ALERT_KINDS))
    reason: str = Field(default="", max_length=2000)


# ---------------------------------------------------------------- the event stream

EventKind = Literal["alert", "deployment"]


class EventPosition(BaseModel):
    """Where ``GET /api/v1/events`` stands now: send it as ``Last-Event-ID`` to get every
    event after this moment (read it before a snapshot of alerts, and nothing falls between)."""

    last_event_id: str


class StreamEvent(BaseModel):
    """The data of one message of ``GET /api/v1/events``."""

    kind: EventKind
    model: str
    # alert: raised, changed, acknowledged, reopened, resolved; deployment: the audit action.
    action: str
    at: UtcDateTime
    alert: Alert | None = None
    deployment: AuditEvent | None = None
