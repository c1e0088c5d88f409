"""Wire types of the held-out review queue (``/api/v1/models/{name}/review/...``)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.schemas.common import RequestBody, StorableJson, UtcDateTime

ReviewDecisionKind = Literal["answer", "skip"]


class HeldOutPolicyAnswer(BaseModel):
    """What the held-out policy answered in the model's place (what the caller received)."""

    policy: str | None = None
    answer: Any = None


class ReviewItem(BaseModel):
    """One held-out example handed to a reviewer, theirs until ``lease_expires_at``."""

    item: int
    model: str
    version: str
    request_id: str
    row: int
    entity_id: str | None = None
    predicted_at: UtcDateTime
    features: dict[str, Any]
    # The model's own answer, which the caller never saw (``outputs["predict"]``), and the
    # rest of its outputs (probabilities) without the held-out record.
    model_answer: Any = None
    outputs: dict[str, Any] = Field(default_factory=dict)
    # None when the log does not say what the policy did.
    held_out: HeldOutPolicyAnswer | None = None
    task: Literal["classification", "regression"]
    # The version's classes in its order (the keys 1..9 in the console) and their names.
    classes: list[Any] | None = None
    class_names: list[str] | None = None
    lease_expires_at: UtcDateTime


class ReviewBatch(BaseModel):
    model: str
    items: list[ReviewItem]
    # Examples not yet decided, and those among them nobody holds now.
    in_queue: int
    available: int
    # Why the batch is empty (or short), in plain words; "" when it is full.
    note: str = ""


class ReviewAnswer(RequestBody):
    """The correct answer: one of the model's classes (a number for a regression model)."""

    label: StorableJson


class ReviewDecision(BaseModel):
    item: int
    model: str
    decision: ReviewDecisionKind
    label: Any = None
    # Whether this answer became the example's label (source "review", not influenced):
    # only the first answer does, and never over a label from another source.
    label_stored: bool = False
    note: str = ""


class ReviewUndone(BaseModel):
    """The reviewer's last decision, taken back; the example is theirs again."""

    undone: ReviewDecision
    item: ReviewItem


class ReviewerStats(BaseModel):
    reviewer: str
    answered: int
    skipped: int
    # Examples per minute over the reviewer's last active period (decisions at most
    # ``ACTIVE_GAP_S`` apart); None before two decisions.
    per_minute: float | None = None
    last_decided_at: UtcDateTime | None = None


class ReviewAgreement(BaseModel):
    """Cohen's kappa between the first two answers of every example answered twice."""

    kappa: float | None = None
    examples: int = 0
    explanation: str = ""


class ReviewStats(BaseModel):
    model: str
    total: int
    in_queue: int
    leased: int
    done: int
    skipped: int
    # Decided examples over all examples read from the log so far (0 to 1).
    progress: float
    reviewers: list[ReviewerStats]
    agreement: ReviewAgreement
    agreement_share: float
    lease_s: float
