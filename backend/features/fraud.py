"""Card-fraud features: one implementation for training (batch) and serving (online).

Training replays a whole transaction history through the very same `FraudFeatureState` that a
live client feeds one event at a time, so the two paths cannot disagree: there is no second,
vectorised implementation to drift away from the online one.

Every feature of an event is computed from the history strictly *before* that event (the
event itself is recorded only afterwards): at serving time the current transaction is not in
any history yet, and a training feature that included it would leak.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any, Protocol

import pandas as pd

from backend.schemas import FeatureSpec

MERCHANT_CATEGORIES: tuple[str, ...] = (
    "grocery",
    "restaurants",
    "fuel",
    "pharmacy",
    "fashion",
    "travel",
    "electronics",
    "gaming",
    "online_services",
)
COUNTRIES: tuple[str, ...] = ("DE", "FR", "NL", "ES", "IT", "GB", "PL", "US", "BR", "NG")

USER_WINDOW_S = 7 * 86_400.0
CARD_WINDOW_S = 3_600.0
# A card with no earlier transaction gets this value: "a long time ago", not a missing value,
# so the model needs no imputation and the feature stays a plain bounded float.
NO_PRIOR_TXN_S = 30 * 86_400.0
# Bounds the ratio for users whose recent mean is tiny (a 1-cent card test, then a laptop).
MAX_AMOUNT_RATIO = 1_000.0
# Means below this are treated as this, so a few cents of history cannot explode the ratio.
MIN_MEAN_FOR_RATIO = 1.0
MAX_AMOUNT = 50_000.0

FRAUD_SIGNATURE: list[FeatureSpec] = [
    FeatureSpec(name="amount", type="float", min=0, max=MAX_AMOUNT, description="amount in EUR"),
    FeatureSpec(name="hour", type="int", min=0, max=23, description="hour of day, UTC"),
    FeatureSpec(name="merchant_category", type="category", categories=list(MERCHANT_CATEGORIES)),
    FeatureSpec(
        name="country",
        type="category",
        categories=list(COUNTRIES),
        description="country where the card was used",
    ),
    FeatureSpec(
        name="is_foreign", type="bool", description="used outside the card holder's home country"
    ),
    FeatureSpec(
        name="user_txn_count_7d",
        type="int",
        min=0,
        description="the user's transactions (all cards) in the 7 days before this one",
    ),
    FeatureSpec(
        name="user_mean_amount_7d",
        type="float",
        min=0,
        max=MAX_AMOUNT,
        description="mean amount of those transactions; 0 when there are none",
    ),
    FeatureSpec(
        name="amount_to_user_mean",
        type="float",
        min=0,
        max=MAX_AMOUNT_RATIO,
        description="amount / user_mean_amount_7d (1 when there is no history), capped",
    ),
    FeatureSpec(
        name="card_txn_count_1h",
        type="int",
        min=0,
        description="transactions of this card in the hour before this one",
    ),
    FeatureSpec(
        name="seconds_since_last_card_txn",
        type="float",
        min=0,
        max=NO_PRIOR_TXN_S,
        description="seconds since this card's previous transaction, capped at 30 days",
    ),
]
FRAUD_FEATURES: tuple[str, ...] = tuple(spec.name for spec in FRAUD_SIGNATURE)


class CardEvent(Protocol):
    """What the features need to know about a transaction (properties: read-only is enough)."""

    @property
    def timestamp(self) -> float: ...  # unix seconds
    @property
    def user_id(self) -> str: ...
    @property
    def card_id(self) -> str: ...
    @property
    def home_country(self) -> str: ...
    @property
    def merchant_category(self) -> str: ...
    @property
    def country(self) -> str: ...
    @property
    def amount(self) -> float: ...


class LabelledCardEvent(CardEvent, Protocol):
    @property
    def is_fraud(self) -> int: ...


def hour_of(timestamp: float) -> int:
    """UTC hour of a unix timestamp (unix time has no leap seconds, so modulo is exact)."""
    return int((timestamp % 86_400.0) // 3_600.0)


class FraudFeatureState:
    """Recent per-user and per-card history, enough to compute the features of the next event.

    Events should arrive in time order (per user and card). A late event is still handled
    sensibly: history newer than it is ignored rather than counted, and a negative gap is
    clamped to 0.
    """

    def __init__(self) -> None:
        self._user_history: dict[str, deque[tuple[float, float]]] = {}
        self._card_history: dict[str, deque[float]] = {}
        # Kept apart from the 1 h window: the gap to the previous transaction can be weeks.
        self._card_last: dict[str, float] = {}

    def features_for(self, event: CardEvent) -> dict[str, Any]:
        """Features of `event` from the history before it; does not record the event."""
        now = float(event.timestamp)
        amount = float(event.amount)

        user_count = 0
        user_total = 0.0
        user_since = now - USER_WINDOW_S
        for ts, past_amount in self._user_history.get(event.user_id, ()):
            if user_since < ts <= now:
                user_count += 1
                user_total += past_amount
        user_mean = user_total / user_count if user_count else 0.0
        if user_count:
            ratio = min(amount / max(user_mean, MIN_MEAN_FOR_RATIO), MAX_AMOUNT_RATIO)
        else:
            ratio = 1.0

        card_since = now - CARD_WINDOW_S
        card_count = sum(
            1 for ts in self._card_history.get(event.card_id, ()) if card_since < ts <= now
        )
        last = self._card_last.get(event.card_id)
        gap = NO_PRIOR_TXN_S if last is None else min(max(now - last, 0.0), NO_PRIOR_TXN_S)

        return {
            "amount": amount,
            "hour": hour_of(now),
            "merchant_category": str(event.merchant_category),
            "country": str(event.country),
            "is_foreign": event.country != event.home_country,
            "user_txn_count_7d": user_count,
            "user_mean_amount_7d": user_mean,
            "amount_to_user_mean": ratio,
            "card_txn_count_1h": card_count,
            "seconds_since_last_card_txn": gap,
        }

    def observe(self, event: CardEvent) -> None:
        """Record `event` so later events see it; forgets what has left every window."""
        now = float(event.timestamp)
        user = self._user_history.setdefault(event.user_id, deque())
        user.append((now, float(event.amount)))
        while user and user[0][0] <= now - USER_WINDOW_S:
            user.popleft()
        card = self._card_history.setdefault(event.card_id, deque())
        card.append(now)
        while card and card[0] <= now - CARD_WINDOW_S:
            card.popleft()
        previous = self._card_last.get(event.card_id)
        self._card_last[event.card_id] = now if previous is None else max(previous, now)

    def process(self, event: CardEvent) -> dict[str, Any]:
        """The online path: features for the event, then remember it."""
        features = self.features_for(event)
        self.observe(event)
        return features


def features_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Feature dicts as a frame with the column order and dtypes the models are fitted on.

    Categories stay plain strings (object dtype), as in the frame the server builds from JSON
    rows, so the fitted pipeline sees the same dtypes in training and serving.
    """
    frame = pd.DataFrame.from_records(list(rows), columns=list(FRAUD_FEATURES))
    dtypes: dict[str, Any] = {
        "amount": "float64",
        "hour": "int64",
        "merchant_category": "object",
        "country": "object",
        "is_foreign": "bool",
        "user_txn_count_7d": "int64",
        "user_mean_amount_7d": "float64",
        "amount_to_user_mean": "float64",
        "card_txn_count_1h": "int64",
        "seconds_since_last_card_txn": "float64",
    }
    return frame.astype(dtypes)


def build_training_frame(
    events: Iterable[LabelledCardEvent], *, keep_from: float = -math.inf
) -> tuple[pd.DataFrame, pd.Series]:
    """Replay labelled events in time order through a fresh `FraudFeatureState`.

    Returns the features (one row per event from `keep_from` on, in time order, columns as
    `FRAUD_FEATURES`) and the 0/1 fraud labels aligned with them. Earlier events only fill the
    state: without that warm-up the first weeks would look like a world of brand-new cards,
    unlike anything served live. The sort is stable, so events sharing a timestamp keep their
    given order, as they would when arriving one by one.
    """
    ordered = sorted(events, key=lambda event: event.timestamp)
    state = FraudFeatureState()
    rows: list[dict[str, Any]] = []
    labels: list[int] = []
    for event in ordered:
        features = state.process(event)
        if event.timestamp >= keep_from:
            rows.append(features)
            labels.append(int(event.is_fraud))
    return features_frame(rows), pd.Series(labels, name="is_fraud", dtype="int64")
