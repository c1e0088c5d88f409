"""Held-out traffic on the request path: which requests are held out, and what the policy says.

A held-out entity is chosen by the same stable bucket as a canary entity (``entity_bucket``),
from the other end: canaries take the lowest buckets, held-out entities the highest. So a
change of either share only adds or removes the entities at its own edge, the two never
overlap while their shares add up to at most 100%, and the held-out check comes first: a
held-out entity never reaches a canary or a shadow. A request without an entity id is drawn
on its own.

The model still scores a held-out request; the caller gets the policy's answer (see
``backend.schemas.held_out``): a declared default, a rule over the input features evaluated
here, or another version or model (scored by the request path, ``service``).
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

from backend.schemas import DefaultPolicy, HeldOutSettings, RulePolicy
from backend.schemas.held_out import (
    Condition,
    EqualityCondition,
    PresenceCondition,
    SetCondition,
)
from backend.serving.routing import BUCKETS, entity_bucket, request_bucket

HELD_OUT_ROUTE = "held_out"

_NUMBER_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def held_out_threshold(settings: HeldOutSettings) -> float:
    """Buckets at or above this are held out."""
    return BUCKETS - settings.share_percent * BUCKETS / 100


def is_held_out(settings: HeldOutSettings, model: str, entity_id: str) -> bool:
    """Whether an entity is in the held-out share (the same answer every time)."""
    return entity_bucket(model, entity_id) >= held_out_threshold(settings)


def goes_to_held_out(
    settings: HeldOutSettings | None, model: str, entity_id: str | None, bucket: int | None = None
) -> bool:
    if settings is None or settings.share_percent <= 0:
        return False
    if bucket is None:
        bucket = request_bucket(model, entity_id)
    return bucket >= held_out_threshold(settings)


def _holds(condition: Condition, row: dict[str, Any]) -> bool:
    value = row.get(condition.feature)
    if isinstance(condition, PresenceCondition):
        return (value is None) == (condition.op == "missing")
    if value is None:
        return False  # a missing value satisfies no comparison
    if isinstance(condition, EqualityCondition):
        return (value == condition.value) == (condition.op == "==")
    if isinstance(condition, SetCondition):
        return (value in condition.value) == (condition.op == "in")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False  # text is never greater or smaller than a number
    return _NUMBER_TESTS[condition.op](value, condition.value)


def rule_answer(policy: RulePolicy, row: dict[str, Any]) -> Any:
    for rule in policy.rules:
        if all(_holds(condition, row) for condition in rule.when):
            return rule.answer
    return policy.otherwise


def declared_answers(policy: DefaultPolicy | RulePolicy, rows: list[dict[str, Any]]) -> list[Any]:
    """The policy's answer per row (for the policies that need no model)."""
    if isinstance(policy, DefaultPolicy):
        return [policy.answer] * len(rows)
    return [rule_answer(policy, row) for row in rows]
