"""Held-out traffic: a sticky share of entities served by the model's no-model policy.

The model still scores a held-out request (its answer is logged with route ``held_out``) but
the caller gets what the policy answers: a declared default, another version or model, or a
declarative rule over the input features (JSON conditions, never code). Comparing held-out
with served traffic is how a feedback loop is measured (the model's answers shape the labels
it is later judged and trained on; held-out traffic's labels are not shaped by it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field

from backend.schemas.common import RequestBody, StorableScalar

# The share of entities held out, in percent: a control group, never most of the traffic.
MAX_HELD_OUT_PERCENT = 50.0
DEFAULT_HELD_OUT_PERCENT = 2.0
MAX_RULES = 100
MAX_CONDITIONS = 20

# A class label of the model (text, a number or a boolean), or a regressor's number.
Answer = Annotated[StorableScalar, Field(description="a class label of the model, or a number")]


class DefaultPolicy(RequestBody):
    """Every held-out request gets the same declared answer (e.g. "approve")."""

    kind: Literal["default"]
    answer: Answer


class FallbackPolicy(RequestBody):
    """Another version of this model, or another model, answers held-out requests."""

    kind: Literal["fallback"]
    model: str = Field(min_length=1, max_length=128)
    # None: whatever that model serves at the time of the request.
    version: str | None = Field(default=None, min_length=1, max_length=32)


class NumberCondition(RequestBody):
    """``amount > 500``: a number compared with a number (text never compares)."""

    feature: str = Field(min_length=1, max_length=256)
    op: Literal["<", "<=", ">", ">="]
    value: float = Field(allow_inf_nan=False)


class EqualityCondition(RequestBody):
    """``country == "FR"``, ``online != true``."""

    feature: str = Field(min_length=1, max_length=256)
    op: Literal["==", "!="]
    value: StorableScalar


class SetCondition(RequestBody):
    """``country in ["FR", "DE"]``."""

    feature: str = Field(min_length=1, max_length=256)
    op: Literal["in", "not_in"]
    value: list[StorableScalar] = Field(min_length=1, max_length=1000)


class PresenceCondition(RequestBody):
    """``note missing``: the feature was not sent (or sent as null)."""

    feature: str = Field(min_length=1, max_length=256)
    op: Literal["missing", "present"]


Condition = Annotated[
    NumberCondition | EqualityCondition | SetCondition | PresenceCondition,
    Field(discriminator="op"),
]


class Rule(RequestBody):
    """When every condition holds, the rule's answer is given."""

    when: list[Condition] = Field(min_length=1, max_length=MAX_CONDITIONS)
    answer: Answer


class RulePolicy(RequestBody):
    """The first rule whose conditions all hold answers; ``otherwise`` when none does."""

    kind: Literal["rule"]
    rules: list[Rule] = Field(min_length=1, max_length=MAX_RULES)
    otherwise: Answer


HeldOutPolicy = Annotated[DefaultPolicy | FallbackPolicy | RulePolicy, Field(discriminator="kind")]


class HeldOutSettings(RequestBody):
    """A model's held-out share and its no-model policy. A share of 0 holds nothing out."""

    share_percent: float = Field(default=DEFAULT_HELD_OUT_PERCENT, ge=0.0, le=MAX_HELD_OUT_PERCENT)
    policy: HeldOutPolicy


class HeldOutRequest(HeldOutSettings):
    reason: str = Field(default="", max_length=2000)


class HeldOutCoverage(BaseModel):
    """How much traffic the held-out share covered over a recent window."""

    since: float  # unix seconds
    requests: int  # held-out requests answered (rows with route held_out, counted by request)
    entities: int  # distinct entity ids among them (requests without one are not counted)
    all_requests: int  # every request of the model answered in the window, for the share


class HeldOutStatus(BaseModel):
    model: str
    settings: HeldOutSettings | None  # None: nothing is held out
    coverage: HeldOutCoverage
    explanation: str
