"""The relational schema. Every change here needs an Alembic revision in migrations/versions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    pass


class ModelRow(Base):
    __tablename__ = "models"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    task: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    active_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # Bumped on every change of what is served, so that every worker notices by polling.
    state_generation: Mapped[int] = mapped_column(Integer, default=0)
    # The running rollout (a RolloutState as JSON), or None.
    rollout: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # A ServingPolicy as JSON; None means the defaults.
    policy: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # HeldOutSettings as JSON (the held-out share and its no-model policy); None: none.
    held_out: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    versions: Mapped[list[ModelVersionRow]] = relationship(
        back_populates="model", order_by="ModelVersionRow.number"
    )


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("model_id", "number", name="uq_model_version_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("models.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer)
    artifact_sha256: Mapped[str] = mapped_column(String(64))
    artifact_format: Mapped[str] = mapped_column(String(16))
    artifact_size: Mapped[int] = mapped_column(BigInteger)
    # Set only for pickle/joblib artifacts: who vouched for running arbitrary code on load.
    trusted_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    skops_trusted_types: Mapped[list[Any]] = mapped_column(JSON, default=list)
    task: Mapped[str] = mapped_column(String(32))
    class_labels: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    # The classes' names for people ("fraud" for class 1), in class_labels order.
    class_names: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    signature: Mapped[list[Any]] = mapped_column(JSON)
    example_input: Mapped[dict[str, Any]] = mapped_column(JSON)
    validity: Mapped[dict[str, Any]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(Text, default="")
    registered_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    model: Mapped[ModelRow] = relationship(back_populates="versions")
    # Loaded with the versions (one query for all of them): every version info shows them.
    feature_sources: Mapped[list[FeatureSourceRow]] = relationship(
        order_by="FeatureSourceRow.id", lazy="selectin", cascade="all, delete-orphan"
    )


class TokenRow(Base):
    __tablename__ = "tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    models: Mapped[list[Any] | None] = mapped_column(JSON, nullable=True)
    constraints: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class PredictionRow(Base):
    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_model_time", "model", "created_at"),
        Index("ix_predictions_request", "request_id", "row_index"),
        # Held-out rows only (a small share): the review queue reads them by model and time
        # without walking the rest of the log; other inserts only test the condition.
        Index(
            "ix_predictions_held_out",
            "model",
            "created_at",
            sqlite_where=text("route = 'held_out'"),
            postgresql_where=text("route = 'held_out'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64))
    row_index: Mapped[int] = mapped_column(Integer, default=0)
    # Unix seconds: cheap to write in bulk and to window on.
    created_at: Mapped[float] = mapped_column(Float)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    route: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    features: Mapped[dict[str, Any]] = mapped_column(JSON)
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON)
    latency_ms: Mapped[float] = mapped_column(Float)
    token_name: Mapped[str] = mapped_column(String(128))


class StoreIdentityRow(Base):
    """One row: this store's identity, made once. Prediction spools name the store their rows
    belong to by it (a connection string changes with a password or a moved file)."""

    __tablename__ = "store_identity"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)


class LogSegmentRow(Base):
    """How far the writer has written each prediction-spool segment (see predictions/spool).

    Updated in the transaction that inserts the segment's rows: whoever drains the segment
    next starts exactly there, so a replay after a crash never writes a row twice.
    """

    __tablename__ = "log_segments"

    segment: Mapped[str] = mapped_column(String(160), primary_key=True)
    committed_offset: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[float] = mapped_column(Float)


class LabelRow(Base):
    """A label for one prediction row of one model: a request id is only unique within a
    model (a caller may choose it), so a label names the model it was accepted for and joins
    only that model's prediction."""

    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("model", "request_id", "row_index", name="uq_label_model_prediction"),
        Index("ix_labels_model_id", "model", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # None only for a label stored before labels named their model whose prediction was not
    # in the log at the upgrade: its model is unknown, so it joins nothing.
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_id: Mapped[str] = mapped_column(String(64))
    row_index: Mapped[int] = mapped_column(Integer, default=0)
    label: Mapped[Any] = mapped_column(JSON)
    received_at: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(128))
    # Whether the label could depend on the model's own answer (a blocked transaction never
    # gets a chargeback): False for a reviewer's label of a held-out example; None: unknown.
    influenced: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


class GateReportRow(Base):
    __tablename__ = "gate_reports"
    __table_args__ = (Index("ix_gate_reports_model_version", "model", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    purpose: Mapped[str] = mapped_column(String(16))
    passed: Mapped[bool] = mapped_column(Boolean)
    checked_by: Mapped[str] = mapped_column(String(128))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # The whole GateReport as JSON: gates, mismatching rows, metric against its range.
    report: Mapped[dict[str, Any]] = mapped_column(JSON)


class AuditEventRow(Base):
    """Append-only (database triggers refuse UPDATE and DELETE): who changed what, and why."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_events_model", "model", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(128), nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    from_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    to_version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


def _version_group(context: Any) -> str:
    return str(context.get_current_parameters().get("version") or "")


class AlertRow(Base):
    """An alert (monitoring): one active alert per rule, model and group, across workers."""

    __tablename__ = "alerts"
    __table_args__ = (
        Index("ix_alerts_model", "model", "id"),
        # One active alert per (model, rule, group), across every worker: the group is the
        # version for a rule judged per version (live_metric), "" for one over the model.
        Index(
            "uq_alerts_active_group",
            "model",
            "kind",
            "group_key",
            unique=True,
            sqlite_where=text("status != 'resolved'"),
            postgresql_where=text("status != 'resolved'"),
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str | None] = mapped_column(String(32), nullable=True)
    kind: Mapped[str] = mapped_column(String(32))
    # Not null (unlike version), so that the unique index above holds for model-wide rules;
    # the version unless given (as live_metric has always grouped).
    group_key: Mapped[str] = mapped_column(String(64), default=_version_group, server_default="")
    severity: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    title: Mapped[str] = mapped_column(Text)
    explanation: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Unix seconds (shown as UTC date-times on the wire).
    raised_at: Mapped[float] = mapped_column(Float)
    # When any worker last saw the condition: a worker resolves only after nobody has.
    last_seen_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # When the newest "changed" event was sent (details change in place more often).
    changed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    acknowledged_by: Mapped[str | None] = mapped_column(String(128), nullable=True)
    acknowledged_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    acknowledgement: Mapped[str] = mapped_column(Text, default="")
    resolved_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    resolution: Mapped[str] = mapped_column(Text, default="")
    reopened: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AlertEventRow(Base):
    """What happened to an alert (raised, changed, acknowledged, reopened, resolved), with the
    alert as it stood after: its history, and the alert half of the event stream. Written in
    the transaction that changed the alert."""

    __tablename__ = "alert_events"
    __table_args__ = (
        Index("ix_alert_events_alert", "alert_id", "id"),
        Index("ix_alert_events_model", "model", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    # Unix seconds.
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(128))
    note: Mapped[str] = mapped_column(Text, default="")
    # The Alert (wire form, without history) after this change.
    alert: Mapped[dict[str, Any]] = mapped_column(JSON)


class AlertRuleRow(Base):
    """A model's own setting of one alert rule (an AlertRule as JSON); none: the default."""

    __tablename__ = "alert_rules"
    __table_args__ = (UniqueConstraint("model", "kind", name="uq_alert_rules_model_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    rule: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_by: Mapped[str] = mapped_column(String(128))
    # Unix seconds.
    updated_at: Mapped[float] = mapped_column(Float)


class CandidateCallsRow(Base):
    """Each serving worker's count of calls to a rollout candidate, per rollout step.

    A candidate that fails leaves no prediction row, so its failures are counted here: every
    worker adds its own row, and whoever judges the step sums them all.
    """

    __tablename__ = "candidate_calls"
    __table_args__ = (
        UniqueConstraint("model", "candidate", "step_started", "worker", name="uq_candidate_calls"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    candidate: Mapped[str] = mapped_column(String(32))
    # The step's start as Unix seconds: names the step in every worker.
    step_started: Mapped[float] = mapped_column(Float)
    worker: Mapped[str] = mapped_column(String(128))
    calls: Mapped[int] = mapped_column(Integer, default=0)
    failures: Mapped[int] = mapped_column(Integer, default=0)


# ---------------------------------------------------------------- drift windows (monitoring)
# Kept together: the reference each version's drift is measured against, and the current
# windows' counts the log writer keeps as it writes rows (backend/predictions/window_counts.py).


class DriftReferenceRow(Base):
    """A version's reference summary, made once at registration (layout: predictions/
    summary_layout.py). JSON text, not the JSON type: the log writer reads it with its driver
    and orjson, and only ``features.<name>.kind`` and ``.edges``."""

    __tablename__ = "drift_references"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    summary: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(BigInteger)
    # "training data" or "confidence set".
    source: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # JSON text: the reference sample's true labels with the model's predictions and
    # probabilities on it (what the label-free performance estimate calibrates on); None
    # without true labels.
    labelled_outputs: Mapped[str | None] = mapped_column(Text, nullable=True)


class DriftSettingsRow(Base):
    """A model's own drift settings (schemas.DriftSettings as JSON text); none: defaults."""

    __tablename__ = "drift_settings"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    settings: Mapped[str] = mapped_column(Text)
    updated_by: Mapped[str] = mapped_column(String(128))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DriftWindowDeltaRow(Base):
    """What one writer commit counted for one minute of one (model, version, route): inserted
    in the transaction that inserts the rows (exactly once), never updated, and folded into
    ``drift_window_buckets`` by a writer once its minute has closed."""

    __tablename__ = "drift_window_deltas"
    __table_args__ = (Index("ix_drift_window_deltas_bucket", "model", "bucket_start"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(32))
    route: Mapped[str] = mapped_column(String(16))
    # The minute's start, Unix seconds.
    bucket_start: Mapped[int] = mapped_column(BigInteger)
    rows: Mapped[int] = mapped_column(Integer)
    # A current-window summary (sparse JSON text, summary_layout's window layout).
    counts: Mapped[str] = mapped_column(Text)
    # Random, given by the committing writer: its fold knows its own deltas by it and takes
    # them from memory (``store.FoldCache``). None in deltas stored before migration 0016.
    tag: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class DriftWindowBucketRow(Base):
    """The summed counts of one minute (resolution 60) or one hour (3600) of one (model,
    version, route). Minute rows are kept for 2 days, hour rows for 90 (settings)."""

    __tablename__ = "drift_window_buckets"
    # Windows are read by model and time (any version or route); retention by age.
    __table_args__ = (
        Index("ix_drift_window_buckets_time", "model", "resolution_s", "bucket_start"),
        Index("ix_drift_window_buckets_age", "resolution_s", "bucket_start"),
    )

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    route: Mapped[str] = mapped_column(String(16), primary_key=True)
    resolution_s: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    counts: Mapped[str] = mapped_column(Text)


# ---------------------------------------------------------------- lineage (registry)


class FeatureSourceRow(Base):
    """An input feature of a version that another model's output produces, as the version
    declared it at registration (registry/lineage.py). The upstream model is named, not
    referenced: lineage may be declared before that model is registered."""

    __tablename__ = "feature_sources"
    __table_args__ = (
        UniqueConstraint("version_id", "feature", name="uq_feature_sources_version_feature"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id", ondelete="CASCADE"))
    feature: Mapped[str] = mapped_column(String(128))
    source_model: Mapped[str] = mapped_column(String(128))
    # "predict" or "predict_proba"; None when the declaration did not say.
    source_output: Mapped[str | None] = mapped_column(String(32), nullable=True)


# ---------------------------------------------------------------- held-out review (feedback)


class ReviewItemRow(Base):
    """A held-out prediction row in its model's review queue (feedback/review.py). Open while
    fewer reviewers decided it than it wants (two for an agreement sample, else one)."""

    __tablename__ = "review_items"
    __table_args__ = (
        UniqueConstraint("model", "request_id", "row_index", name="uq_review_items_prediction"),
        Index("ix_review_items_open", "model", "is_open", "id"),
        Index("ix_review_items_time", "model", "created_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(64))
    row_index: Mapped[int] = mapped_column(Integer)
    version: Mapped[str] = mapped_column(String(32))
    # The prediction's time (Unix seconds): how far the queue has read the log.
    created_at: Mapped[float] = mapped_column(Float)
    reviews_wanted: Mapped[int] = mapped_column(Integer)
    reviews_done: Mapped[int] = mapped_column(Integer, default=0)
    is_open: Mapped[bool] = mapped_column(Boolean, default=True)


class ReviewAssignmentRow(Base):
    """One reviewer's hold on one slot of an item: leased until ``lease_expires_at`` while
    undecided, then their answer (or skip). The unique slot makes a claim atomic: two
    reviewers never hold the same slot, and an item has as many slots as reviews it wants."""

    __tablename__ = "review_assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "slot", name="uq_review_assignments_slot"),
        UniqueConstraint("item_id", "reviewer", name="uq_review_assignments_reviewer"),
        Index("ix_review_assignments_reviewer", "model", "reviewer", "decided_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("review_items.id", ondelete="CASCADE"))
    model: Mapped[str] = mapped_column(String(128))
    slot: Mapped[int] = mapped_column(Integer)
    reviewer: Mapped[str] = mapped_column(String(128))
    # Unix seconds. The lease ends once decided (None).
    leased_at: Mapped[float] = mapped_column(Float)
    lease_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    # "answer" or "skip"; None while leased.
    decision: Mapped[str | None] = mapped_column(String(8), nullable=True)
    label: Mapped[Any] = mapped_column(JSON, nullable=True)
    decided_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class LoopCountRow(Base):
    """The labelled outcomes of one minute of predictions (by the prediction's time) of one
    (model, version, route): confusion counts, label counts, probability sums, influence marks
    and per-slice sums (layout: predictions/loop_counts.py), kept as labels arrive."""

    __tablename__ = "feedback_loop_counts"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    route: Mapped[str] = mapped_column(String(16), primary_key=True)
    # The minute's start, Unix seconds.
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # "": the minute's base counts; else the slices of this feature.
    feature: Mapped[str] = mapped_column(String(128), primary_key=True)
    labelled: Mapped[int] = mapped_column(Integer, default=0)
    # JSON text: {encoded key: number}.
    counts: Mapped[str] = mapped_column(Text)


class LoopContributionRow(Base):
    """What one label added to ``feedback_loop_counts``, compactly (the labelled outcome it
    expands from): subtracted exactly when the label is replaced or taken back, so a label is
    never counted twice."""

    __tablename__ = "feedback_loop_contributions"
    # The catch-up reads the labels still waiting for their prediction (minute -1) by it.
    __table_args__ = (Index("ix_feedback_loop_contributions_minute", "minute"),)

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    row_index: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[str] = mapped_column(String(32))
    route: Mapped[str] = mapped_column(String(16))
    minute: Mapped[int] = mapped_column(BigInteger)
    # JSON text: predictions.loop_counts.Outcome.
    outcome: Mapped[str] = mapped_column(Text)


# Tables kept in their own modules register on Base when imported; importing them here puts
# them in the one metadata Alembic and create_all read (this module is near its size limit).
from backend.db import report_tables as _report_tables  # noqa: E402, F401
from backend.db import signal_tables as _signal_tables  # noqa: E402, F401
