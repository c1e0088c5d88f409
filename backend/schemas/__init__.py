"""The wire format: every request and response body, shared by the backend and the console.

Plain pydantic types only; FastAPI publishes them as OpenAPI at /openapi.json.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from backend.schemas.common import (
    INT64_MAX,
    INT64_MIN,
    REQUEST_CONFIG,
    Metric,
    RequestBody,
    StorableJson,
    StorableMap,
    StorableScalar,
    UtcDateTime,
)

# Deployment and monitoring types are defined in their own modules and exported from here.
from backend.schemas.deploy import (
    DEFAULT_ROLLOUT_STEPS,
    DEPLOYMENT_ACTIONS,
    ActionRequest,
    AuditAction,
    AuditEvent,
    AuditPage,
    DeploymentState,
    DeployRequest,
    EndToEndMismatch,
    GateName,
    GateOutcome,
    GatePurpose,
    GateReport,
    GateReportList,
    GateResult,
    PolicyRequest,
    Reason,
    RollbackOption,
    RollbackRequest,
    RolloutCheck,
    RolloutChecks,
    RolloutMode,
    RolloutRequest,
    RolloutState,
    RolloutStatus,
    ServingPolicy,
    SkippedVersion,
    StepEstimate,
    StepKey,
    UnjudgedQuality,
    expected_step_seconds,
    plain_duration,
)
from backend.schemas.drift import (
    DecidedBy,
    DistributionBar,
    DriftReport,
    DriftSeries,
    DriftSettings,
    DriftTest,
    DriftTimings,
    FeatureDrift,
    FeatureDriftSettings,
    FeatureKind,
    FeaturePoint,
    SeriesWindow,
    SkippedFeature,
    WindowDrift,
)
from backend.schemas.exports import (
    EXPORT_SOURCES,
    ClassCount,
    ExportColumn,
    ExportFile,
    ExportFormat,
    ExportManifest,
    ExportPreview,
    ExportRequest,
    ExportSource,
    SourceCount,
)
from backend.schemas.feedback_loops import (
    INDICATOR_NAMES,
    AnswerCoverage,
    AnswerShare,
    ClassCounts,
    DataBasis,
    ExposureConcentration,
    FeedbackLoopReport,
    Indicator,
    IndicatorName,
    InfluenceCounts,
    Interval,
    LabelDrift,
    LoopStatus,
    LoopThresholds,
    OutcomeRateGap,
    PerformanceGap,
    PredictionBias,
    SelectiveLabels,
    SliceBias,
    SliceSide,
    TrendPoint,
)
from backend.schemas.held_out import (
    Condition,
    DefaultPolicy,
    FallbackPolicy,
    HeldOutCoverage,
    HeldOutPolicy,
    HeldOutRequest,
    HeldOutSettings,
    HeldOutStatus,
    Rule,
    RulePolicy,
)
from backend.schemas.lineage import (
    MAX_FEATURE_SOURCES,
    FeatureOutput,
    FeatureSource,
    LineageCycle,
    LineageEdge,
    LineageGraph,
    LineageNode,
)
from backend.schemas.monitoring import (
    ALERT_KINDS,
    ALERT_STATUSES,
    AcknowledgeRequest,
    Alert,
    AlertAction,
    AlertHistoryEntry,
    AlertKind,
    AlertList,
    AlertRule,
    AlertRules,
    AlertRulesRequest,
    AlertSeverity,
    AlertStatus,
    EventPosition,
    MixDecision,
    StreamEvent,
)
from backend.schemas.performance import (
    CalibrationInfo,
    EstimatedPerformance,
    LabelDelay,
    MetricSource,
    MetricValue,
    PerformanceReport,
    PerformanceWindow,
    SignalRate,
    UserSignals,
    Verdict,
)

# Entity ids are stored with every logged row (128 characters at most there).
MAX_ENTITY_ID = 128
# Ids stored in the log (request and entity ids) are printable text: a control character such
# as NUL cannot be stored in PostgreSQL's text columns, and has no business in an id.
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"
# The same rule for ids read by hand (OIP parameters): a match is a character refused.
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")
RequestId = Annotated[str, Field(max_length=64, pattern=PRINTABLE)]
EntityId = Annotated[str, Field(max_length=MAX_ENTITY_ID, pattern=PRINTABLE)]
# Allowed input values a client token may be limited to: plain values, compared as such.
ConstraintValue = StorableScalar
FeatureType = Literal["float", "int", "bool", "category", "string"]
Task = Literal["classification", "regression"]
Role = Literal["admin", "engineer", "support", "client"]
ROLES: tuple[Role, ...] = ("admin", "engineer", "support", "client")


class ErrorBody(BaseModel):
    """Every 4xx: the OIP ``error`` message, plus the offending field and the reason."""

    error: str
    field: str | None = None
    reason: str | None = None


# ---------------------------------------------------------------- signatures and validity


class FeatureSpec(RequestBody):
    name: str = Field(min_length=1, max_length=128)
    type: FeatureType
    required: bool = True
    default: StorableJson = None
    min: float | None = None
    max: float | None = None
    categories: list[str] | None = None
    description: str = ""


class EndToEndExample(BaseModel):
    """An input and the exact output the version must produce for it."""

    model_config = ConfigDict(allow_inf_nan=False)

    inputs: StorableMap
    expected: StorableJson


class LabelledExample(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    inputs: StorableMap
    label: StorableJson


class ValidityAssets(RequestBody):
    """What a deployment gate checks before a version may serve."""

    end_to_end: list[EndToEndExample] = Field(min_length=1)
    confidence_set: list[LabelledExample] = Field(min_length=1)
    metric: Metric
    acceptable_range: tuple[float, float]
    # Regression only: how far an end-to-end output may stray from its expected value.
    tolerance: float = Field(default=0.0, ge=0.0)


# ---------------------------------------------------------------- registry


class ModelVersionInfo(BaseModel):
    version: str
    task: Task
    class_labels: list[Any] | None
    # The classes' names for people ("legit", "fraud"), in class_labels order; None when the
    # registration gave none (the labels are shown as they are).
    class_names: list[str] | None = None
    signature: list[FeatureSpec]
    example_input: dict[str, Any]
    validity: ValidityAssets
    artifact_sha256: str
    artifact_format: Literal["skops", "pickle", "joblib"]
    artifact_size: int
    trusted_by: str | None
    registered_by: str
    registered_at: UtcDateTime
    description: str = ""
    # Input features that other models' outputs produce, as this version declared them.
    feature_sources: list[FeatureSource] = Field(default_factory=list)
    # What registration warned about (an upstream model not registered yet, a feedback loop
    # registered by force): only in the registration's answer, empty when read later.
    registration_warnings: list[str] = Field(default_factory=list)


class ModelInfo(BaseModel):
    name: str
    task: Task
    description: str
    active_version: str | None
    latest_version: str | None
    created_at: UtcDateTime
    versions: list[ModelVersionInfo] = Field(default_factory=list)
    rollout: RolloutState | None = None
    policy: ServingPolicy = Field(default_factory=ServingPolicy)
    # What a rollback would return to now, or why there is nothing to return to.
    rollback: RollbackOption | None = None
    # Deployments, rollbacks and promotions, oldest first (one model's view only).
    history: list[AuditEvent] = Field(default_factory=list)


class ModelList(BaseModel):
    models: list[ModelInfo]


# ---------------------------------------------------------------- Open Inference Protocol v2

OipDatatype = Literal[
    "BOOL",
    "UINT8",
    "UINT16",
    "UINT32",
    "UINT64",
    "INT8",
    "INT16",
    "INT32",
    "INT64",
    "FP16",
    "FP32",
    "FP64",
    "BYTES",
]
# The datatype of the one tensor that carries each feature type (metadata, clients, errors).
FEATURE_DATATYPES: dict[FeatureType, OipDatatype] = {
    "float": "FP64",
    "int": "INT64",
    "bool": "BOOL",
    "category": "BYTES",
    "string": "BYTES",
}


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str] | None = None
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, Any] | None = None


class LiveResponse(BaseModel):
    live: bool


class ReadyResponse(BaseModel):
    ready: bool


class ModelReadyResponse(BaseModel):
    name: str
    ready: bool


class RequestInput(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    name: str
    shape: list[Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]]
    datatype: str
    parameters: StorableMap | None = None
    # Each value is checked against the datatype (and the feature's signature) on decoding,
    # once, instead of here too: this list is the bulk of every request.
    data: list[Any]


class RequestOutput(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    name: str
    parameters: StorableMap | None = None


class InferRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    # The request id is stored with every logged row (64 characters at most there).
    id: RequestId | None = None
    parameters: StorableMap | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferResponse(BaseModel):
    model_name: str
    model_version: str | None = None
    id: str
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


# ---------------------------------------------------------------- record form


class RecordPredictRequest(BaseModel):
    model_config = REQUEST_CONFIG

    # Every value is checked against the model's signature (which refuses out-of-range
    # numbers) before anything is predicted: not twice, this is the hot path.
    instances: list[dict[str, Any]] = Field(min_length=1)
    entity_id: EntityId | None = None
    # One entity per instance, when a batch spans several entities.
    entity_ids: list[EntityId] | None = None
    id: RequestId | None = None


class RecordPrediction(BaseModel):
    prediction: Any
    probabilities: dict[str, float] | None = None


class RecordPredictResponse(BaseModel):
    model_name: str
    model_version: str
    # The id the log holds (label with it): the client's id, or a new one if it sent none.
    request_id: str
    # The client's id exactly as sent (null if none): an empty id is logged under a new one.
    id: str | None = None
    route: str
    predictions: list[RecordPrediction]
    # Route held_out: the no-model policy's kind, whose answer this is (not the model's).
    held_out_policy: str | None = None


# ---------------------------------------------------------------- feedback


# What a feedback item says about a prediction row: its true outcome ("label"), or a user's
# signal about the answer: they undid what the model recommended ("undo"), or complained.
FeedbackKind = Literal["label", "undo", "complaint"]
SignalKind = Literal["undo", "complaint"]
SIGNAL_KINDS: tuple[SignalKind, ...] = ("undo", "complaint")


class LabelIn(RequestBody):
    request_id: RequestId = Field(min_length=1)
    row: int = Field(default=0, ge=0, le=2**31 - 1)
    kind: FeedbackKind = "label"
    # Required for kind "label"; refused with "undo" and "complaint" (a signal has no value).
    label: StorableJson = None
    # The model that answered: a request id is only unique within a model. Needed only for a
    # prediction not in the log yet, unless the token may use one model alone.
    model: str | None = Field(default=None, min_length=1, max_length=128)


class FeedbackRequest(RequestBody):
    labels: list[LabelIn] = Field(min_length=1, max_length=100_000)


class FeedbackResponse(BaseModel):
    accepted: int
    # Labels for predictions not (yet) in the log are kept: they may be in the next flush.
    unmatched: int


# ---------------------------------------------------------------- tokens


class TokenCreate(RequestBody):
    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.@-]+$")
    role: Role
    models: list[str] | None = None
    # feature name -> allowed values, e.g. {"country": ["DE", "FR"]}
    constraints: dict[str, list[ConstraintValue]] = Field(default_factory=dict)


class TokenInfo(BaseModel):
    name: str
    role: Role
    models: list[str] | None
    constraints: dict[str, list[ConstraintValue]]
    created_at: UtcDateTime
    revoked: bool


class TokenCreated(TokenInfo):
    token: str


class WhoAmI(BaseModel):
    name: str
    role: Role
    models: list[str] | None
    server_version: str


# ---------------------------------------------------------------- prediction log


class LoggedPredictionFields(BaseModel):
    """What the prediction log holds of one row of a request; read back and streamed live."""

    request_id: str
    row: int
    created_at: float
    model: str
    version: str
    route: str
    entity_id: str | None
    features: dict[str, Any]
    outputs: dict[str, Any]
    latency_ms: float


class PredictionRecord(LoggedPredictionFields):
    token_name: str
    label: Any = None


class PredictionPage(BaseModel):
    predictions: list[PredictionRecord]


# ---------------------------------------------------------------- live monitoring

# What the serving path did with a prediction. Only "answered" occurs until the guards
# (abstain, fallback, hold-out) land; the wire format has room for them now.
Decision = Literal["answered", "abstained", "fallback", "held_out"]
DECISIONS: tuple[Decision, ...] = ("answered", "abstained", "fallback", "held_out")


class PredictionEvent(LoggedPredictionFields):
    """One prediction as the live feed shows it (one row of a request)."""

    seq: int
    decision: Decision
    # The predicted class or value, and for classifiers the probability of that class.
    top_output: Any
    confidence: float | None


class PredictionEventBatch(BaseModel):
    """The data of one server-sent ``predictions`` event."""

    events: list[PredictionEvent]
    # Events the client missed because it resumed after the feed had moved past them.
    missed: int = 0


class LiveSeries(BaseModel):
    """Per-bucket live statistics, oldest bucket first; complete buckets only."""

    model: str | None
    # The version asked for (None: all versions of the model, or of every model).
    version: str | None = None
    resolution_s: int
    # When these statistics began (the serving process started): no bucket before it is sent.
    started_at: float | None = None
    starts: list[float]
    # Answered requests per bucket.
    requests: list[int]
    # Requests refused (4xx: bad input, unknown model, no permission, too large, too many)
    # and failed (5xx) per bucket; a refusal that named no version counts for no version.
    refused: list[int] = Field(default_factory=list)
    failed: list[int] = Field(default_factory=list)
    latency_p50_ms: list[float | None]
    latency_p95_ms: list[float | None]
    latency_p99_ms: list[float | None]
    # Per bucket, counts of top-class confidence in equal bins over [0, 1].
    confidence_bins: int
    confidence: list[list[int]]
    # Per decision, rows per bucket.
    decisions: dict[str, list[int]]
