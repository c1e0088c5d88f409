"""The wire format of deployments: gate reports, rollouts, the audit trail, policies."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, model_validator

from backend.schemas.common import Metric, RequestBody, UtcDateTime

GateName = Literal["artifact_hash", "load", "signature", "end_to_end", "metric", "held_out_policy"]
# "forced": a signature gate that failed and was overridden with a reason.
GateOutcome = Literal["passed", "failed", "skipped", "forced"]
GatePurpose = Literal["deploy", "rollback", "rollout"]
RolloutMode = Literal["shadow", "canary"]
AuditAction = Literal[
    "deploy",
    "deploy_refused",
    "rollback",
    "rollback_refused",
    "rollout_start",
    "rollout_refused",
    "rollout_step",
    "rollout_pause",
    "rollout_resume",
    "promote",
    "abort",
    "policy",
    "held_out",
    "metric_alert",
    "trust_pickle",
    "lineage_cycle_forced",
]
# Audit actions that change which version answers by default: the deployment history.
DEPLOYMENT_ACTIONS: tuple[AuditAction, ...] = ("deploy", "rollback", "promote")
DEFAULT_ROLLOUT_STEPS = [1.0, 5.0, 25.0, 50.0, 100.0]
Reason = Annotated[str, Field(max_length=2000)]


class GateResult(BaseModel):
    gate: GateName
    outcome: GateOutcome
    detail: str


class EndToEndMismatch(BaseModel):
    """An end-to-end example the version did not score as expected."""

    index: int
    inputs: dict[str, Any]
    expected: Any
    actual: Any


class GateReport(BaseModel):
    """Every gate of one check of one version, kept whether it passed or not."""

    id: int | None = None
    model: str
    version: str
    purpose: GatePurpose
    passed: bool
    checked_by: str
    checked_at: UtcDateTime
    gates: list[GateResult]
    end_to_end_checked: int = 0
    end_to_end_mismatches: list[EndToEndMismatch] = Field(default_factory=list)
    metric: Metric | None = None
    metric_value: float | None = None
    acceptable_range: tuple[float, float] | None = None
    signature_changes: list[str] = Field(default_factory=list)
    forced_reason: str | None = None


class GateReportList(BaseModel):
    reports: list[GateReport]


class DeployRequest(RequestBody):
    version: str = Field(min_length=1, max_length=32)
    reason: Reason = Field(min_length=1)
    # Accept a signature that breaks today's callers; the reason is recorded with the report.
    force_signature: bool = False


class RollbackRequest(RequestBody):
    reason: Reason = Field(min_length=1)
    force_signature: bool = False
    # The version the caller saw serving: if another rollback got there first, this one is
    # refused instead of going back a second step.
    from_version: str | None = Field(default=None, max_length=32)


# What a rollout step does when its quality on labelled answers cannot be judged yet (too few
# labels): "wait" until it can, or "proceed" without it (the audit names what was not judged).
UnjudgedQuality = Literal["wait", "proceed"]


class ServingPolicy(RequestBody):
    """How the serving version is watched once live, and how rollouts treat missing labels."""

    # Roll back by itself when the live metric leaves the acceptable range.
    auto_rollback: bool = False
    # A check that could not be judged is not a pass: by default the step waits for labels.
    unjudged_quality: UnjudgedQuality = "wait"
    # The newest labelled predictions the live metric is computed on.
    metric_window: int = Field(default=500, ge=10, le=100_000)
    # Fewer labelled predictions than this: the live metric is not judged.
    min_labelled: int = Field(default=100, ge=10, le=100_000)

    @model_validator(mode="after")
    def _window_holds_the_minimum(self) -> ServingPolicy:
        if self.min_labelled > self.metric_window:
            raise ValueError("min_labelled cannot exceed metric_window: it would never be judged")
        return self


class PolicyRequest(ServingPolicy):
    reason: Reason = ""


class ActionRequest(RequestBody):
    """Pause, resume, promote or abort: only why."""

    reason: Reason = ""


class RolloutChecks(RequestBody):
    """What a rollout step must show before it advances; a failure aborts the rollout."""

    max_error_rate: float = Field(default=0.01, ge=0.0, le=1.0)
    # Candidate p99 latency at most this multiple of the active version's.
    max_p99_ratio: float = Field(default=2.0, gt=0.0)
    # Shadow phase: share of requests where candidate and active give the same answer.
    min_agreement: float = Field(default=0.9, ge=0.0, le=1.0)


class RolloutRequest(RequestBody):
    candidate: str = Field(min_length=1, max_length=32)
    # "shadow" starts with a shadow phase before the canary steps; "canary" starts at them.
    mode: RolloutMode
    steps: list[float] = Field(
        default_factory=lambda: list(DEFAULT_ROLLOUT_STEPS), min_length=1, max_length=20
    )
    min_dwell_s: float = Field(default=60.0, ge=0.0, le=30 * 86_400.0)
    min_samples: int = Field(default=100, ge=0, le=100_000_000)
    checks: RolloutChecks = Field(default_factory=RolloutChecks)
    reason: Reason = ""
    force_signature: bool = False


# A rollout step: (candidate version, the step's start as Unix seconds).
StepKey = tuple[str, float]


class RolloutState(BaseModel):
    candidate: str
    mode: RolloutMode
    # "shadow" while the candidate only scores in parallel, then "canary".
    phase: Literal["shadow", "canary"]
    steps: list[float]
    # Index into steps during the canary phase; -1 in the shadow phase.
    step_index: int
    # Share of live traffic the candidate answers right now, in percent.
    percent: float
    paused: bool
    min_dwell_s: float
    min_samples: int
    checks: RolloutChecks
    started_by: str
    started_at: UtcDateTime
    step_started_at: UtcDateTime

    def step_key(self) -> StepKey:
        """Names the current step the same way in every worker and in the database."""
        return (self.candidate, self.step_started_at.timestamp())


class RolloutCheck(BaseModel):
    """One check of the current rollout step, as last measured."""

    name: Literal["samples", "dwell", "error_rate", "p99_latency", "agreement", "live_metric"]
    # None: not measurable yet (too few samples, no labels); the step waits for it.
    passed: bool | None
    value: float | None
    limit: float | None
    detail: str


class StepEstimate(BaseModel):
    """How long a rollout step is expected to take at the model's current traffic."""

    stage: str  # "shadow" or "canary 5%"
    percent: float  # share of traffic the candidate answers (shadow: it scores all of it)
    # Seconds the whole step needs at least: the longer of its dwell time and the time its
    # requests take to arrive at the current rate. None: no traffic now, it cannot finish.
    expected_s: float | None
    # The current step only: what is left of it (None as above, or for other steps).
    remaining_s: float | None = None
    current: bool = False
    detail: str


class RolloutStatus(BaseModel):
    """The running rollout with its checks: what the step waits for, or why it moved."""

    model: str
    active_version: str | None
    rollout: RolloutState | None
    checks: list[RolloutCheck] = Field(default_factory=list)
    # "wait", "advance", "promote" or "abort", and why in words.
    verdict: Literal["none", "wait", "advance", "promote", "abort"] = "none"
    detail: str = ""
    # Requests per second the model answered lately (every route), measured over
    # ``rate_window_s``; also without a rollout, so a planned one can be timed.
    request_rate: float = 0.0
    rate_window_s: float = 0.0
    # Each step of the running rollout with its expected time at ``request_rate``.
    estimates: list[StepEstimate] = Field(default_factory=list)


def expected_step_seconds(
    request_rate: float, percent: float, min_samples: int, min_dwell_s: float
) -> float | None:
    """The time a step needs at least: its dwell time, or longer while its ``min_samples``
    requests arrive at ``percent`` % of ``request_rate``; None when they never would (no
    traffic). One formula for the backend's estimates and a console's plan of a rollout."""
    if min_samples <= 0:
        return min_dwell_s
    candidate_rate = request_rate * percent / 100.0
    if candidate_rate <= 0:
        return None
    return max(min_dwell_s, min_samples / candidate_rate)


def plain_duration(seconds: float) -> str:
    """Seconds as people say them: "45 s", "13 min", "2.5 h"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class SkippedVersion(BaseModel):
    """An earlier version a rollback passes over, and why in plain words."""

    version: str
    why: str


class RollbackOption(BaseModel):
    """What a rollback of the model would do now, in the words every client shows."""

    # The version a rollback returns to; None when no rollback is possible now.
    target: str | None
    # Why no rollback is possible, and what makes one possible (None when there is a target).
    unavailable_reason: str | None = None
    # Earlier versions passed over (newest first): rolled back from, or alerted on quality.
    skipped: list[SkippedVersion] = Field(default_factory=list)


class AuditEvent(BaseModel):
    id: int
    at: UtcDateTime
    actor: str
    role: str
    model: str | None
    action: AuditAction
    from_version: str | None
    to_version: str | None
    reason: str
    details: dict[str, Any] = Field(default_factory=dict)


class AuditPage(BaseModel):
    events: list[AuditEvent]


class DeploymentState(BaseModel):
    """A model's serving state after a deployment action, and what the action recorded."""

    model: str
    active_version: str | None
    rollout: RolloutState | None
    report: GateReport | None = None
    event: AuditEvent
