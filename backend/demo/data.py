"""Synthetic demo data, generated locally from a seed: card transactions and ride prices.

Fraud is not a label painted onto random rows: a fraud *episode* takes over one card and
spends with it in a burst (often abroad, at night, in resellable categories, above what the
card holder usually spends). The features then find those patterns the way they would in
real data, imperfectly: a single quiet fraudulent purchase at home looks like any other.

`drift` (0 = the training distribution, 1 = fully shifted) moves both the inputs (larger
amounts, more travel, more online services, more rain and demand for rides) and the fraud
pattern itself (fraudsters go "low and slow": smaller bursts spread over hours, at home, in
daytime), so a model trained on drift 0 loses accuracy, not just input similarity.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_right
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

import numpy as np
import pandas as pd

from backend.features.fraud import COUNTRIES, MAX_AMOUNT, MERCHANT_CATEGORIES, hour_of
from backend.features.ride_price import CITIES, RIDE_PRICE_FEATURES, SURGE_MAX, SURGE_MIN

DEMO_SEED = 7
DAY_S = 86_400.0
# Monday 2025-01-06 00:00 UTC: training histories start here, live traffic after them.
TRAINING_START = 1_736_121_600.0

# Per merchant category: (mu, sigma) of log(amount in EUR), legit spending.
_AMOUNT_LOGNORMAL: dict[str, tuple[float, float]] = {
    "grocery": (3.5, 0.6),
    "restaurants": (3.3, 0.5),
    "fuel": (4.0, 0.35),
    "pharmacy": (3.0, 0.6),
    "fashion": (4.2, 0.7),
    "travel": (5.6, 0.8),
    "electronics": (5.0, 0.9),
    "gaming": (3.0, 0.9),
    "online_services": (2.8, 0.8),
}
# Relative weights, in MERCHANT_CATEGORIES order.
_LEGIT_CATEGORY_WEIGHTS = (0.30, 0.20, 0.12, 0.06, 0.09, 0.04, 0.05, 0.04, 0.10)
_FRAUD_CATEGORY_WEIGHTS = (0.06, 0.04, 0.04, 0.02, 0.12, 0.12, 0.24, 0.14, 0.22)
# In COUNTRIES order: where card holders live, travel, and where stolen cards get used.
_HOME_WEIGHTS = (0.28, 0.20, 0.10, 0.12, 0.12, 0.10, 0.05, 0.03, 0.0, 0.0)
_TRAVEL_WEIGHTS = (0.12, 0.16, 0.08, 0.20, 0.18, 0.10, 0.04, 0.10, 0.015, 0.005)
_FRAUD_COUNTRY_WEIGHTS = (0.03, 0.03, 0.05, 0.04, 0.03, 0.14, 0.04, 0.24, 0.18, 0.22)
# Relative intensity per UTC hour (peak 1): people shop by day, stolen cards work around the clock.
_LEGIT_HOURLY = (
    0.15, 0.10, 0.07, 0.05, 0.05, 0.10, 0.30, 0.60, 0.90, 1.0, 1.0, 1.0,
    1.0, 1.0, 0.95, 0.95, 1.0, 1.0, 1.0, 0.95, 0.80, 0.60, 0.40, 0.25,
)  # fmt: skip
_FRAUD_HOURLY = (
    1.0, 1.0, 1.0, 0.9, 0.8, 0.6, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5,
    0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
)  # fmt: skip
_MERCHANTS_PER_CATEGORY = 40


@dataclass(frozen=True, slots=True)
class Transaction:
    txn_id: str
    timestamp: float  # unix seconds, UTC
    user_id: str
    card_id: str
    home_country: str
    merchant_id: str
    merchant_category: str
    country: str
    amount: float
    is_fraud: int


def _cumulative(weights: Sequence[float]) -> list[float]:
    return list(accumulate(float(w) for w in weights))


def _without(weights: Sequence[float], index: int) -> list[float]:
    """Cumulative weights with one entry zeroed: a trip abroad never lands in the home country."""
    return _cumulative([0.0 if i == index else w for i, w in enumerate(weights)])


@dataclass(frozen=True)
class Population:
    """Users, their cards and habits, and the merchants: fixed by a seed, shared by streams.

    Training history and live traffic use the same population, as a real bank's would: the
    simulator's card ids are the card holders the model has seen.
    """

    user_ids: list[str]
    home_index: list[int]
    activity_cum: list[float]
    category_cum: list[list[float]]
    amount_shift: list[float]
    p_foreign: list[float]
    card_ids: list[str]
    card_user: list[int]
    user_cards: list[tuple[int, int]]  # (first card index, number of cards)
    merchants: dict[str, list[str]]

    @classmethod
    def generate(cls, n_users: int = 2_000, seed: int = DEMO_SEED) -> Population:
        rng = np.random.default_rng([seed, 1])
        home_p = np.array(_HOME_WEIGHTS) / sum(_HOME_WEIGHTS)
        home = rng.choice(len(COUNTRIES), size=n_users, p=home_p)
        activity = rng.lognormal(0.0, 0.8, size=n_users)
        preferences = rng.dirichlet(np.array(_LEGIT_CATEGORY_WEIGHTS) * 8.0, size=n_users)
        n_cards = 1 + (rng.random(n_users) < 0.35) + (rng.random(n_users) < 0.10)
        card_ids: list[str] = []
        card_user: list[int] = []
        user_cards: list[tuple[int, int]] = []
        for user, count in enumerate(n_cards.tolist()):
            user_cards.append((len(card_ids), int(count)))
            for _ in range(int(count)):
                card_user.append(user)
                card_ids.append(f"c{len(card_ids):06d}")
        return cls(
            user_ids=[f"u{i:05d}" for i in range(n_users)],
            home_index=home.tolist(),
            activity_cum=_cumulative(activity.tolist()),
            category_cum=[_cumulative(row) for row in preferences.tolist()],
            amount_shift=rng.normal(0.0, 0.3, size=n_users).tolist(),
            p_foreign=rng.beta(1.5, 25.0, size=n_users).tolist(),
            card_ids=card_ids,
            card_user=card_user,
            user_cards=user_cards,
            merchants={
                category: [f"m-{category}-{k:02d}" for k in range(_MERCHANTS_PER_CATEGORY)]
                for category in MERCHANT_CATEGORIES
            },
        )


class _Draws:
    """Scalar draws from a seeded numpy Generator, fetched in blocks.

    The stream draws a dozen numbers per event; numpy's per-call overhead would dominate, so
    uniforms and normals come from pre-drawn blocks (same seed, same sequence).
    """

    _BLOCK = 8_192

    def __init__(self, seed: int | Sequence[int]):
        self._rng = np.random.default_rng(seed)
        self._uniforms: list[float] = []
        self._normals: list[float] = []

    def uniform(self) -> float:
        if not self._uniforms:
            self._uniforms = self._rng.random(self._BLOCK).tolist()
        return self._uniforms.pop()

    def normal(self) -> float:
        if not self._normals:
            self._normals = self._rng.standard_normal(self._BLOCK).tolist()
        return self._normals.pop()

    def exponential(self, mean: float) -> float:
        return -mean * math.log(1.0 - self.uniform())

    def index(self, n: int) -> int:
        return min(int(self.uniform() * n), n - 1)

    def choice(self, cumulative: Sequence[float]) -> int:
        return min(bisect_right(cumulative, self.uniform() * cumulative[-1]), len(cumulative) - 1)

    def poisson(self, lam: float) -> int:
        # Knuth's method: fine for the small means used here.
        limit, k, product = math.exp(-lam), 0, self.uniform()
        while product > limit:
            k += 1
            product *= self.uniform()
        return k


class TransactionStream:
    """An endless, time-ordered stream of transactions; `drift` may change between events.

    Legit spending is a day-shaped Poisson process over the population, and a purchase is
    sometimes followed by another on the same card minutes later (a shopping trip), so a busy
    hour alone does not mean fraud. Fraud episodes start at their own, night-heavy rate and
    each emits a burst of transactions on one card.
    """

    def __init__(
        self,
        population: Population,
        *,
        seed: int | Sequence[int],
        start: float = TRAINING_START,
        drift: float = 0.0,
        legit_per_day: float = 640.0,
        fraud_episodes_per_day: float = 6.5,
        id_prefix: str = "t",
    ):
        self.population = population
        self.drift = drift
        self._draws = _Draws(seed)
        self._legit_per_day = legit_per_day
        self._episodes_per_day = fraud_episodes_per_day
        self._id_prefix = id_prefix
        self._emitted = 0
        # Transactions decided ahead of time (burst members, follow-ups), earliest first.
        self._scheduled: list[tuple[float, int, dict[str, Any]]] = []
        self._scheduled_count = 0
        self._peeked: Transaction | None = None
        n = len(COUNTRIES)
        self._travel_cum = [_without(_TRAVEL_WEIGHTS, i) for i in range(n)]
        self._fraud_country_cum = [_without(_FRAUD_COUNTRY_WEIGHTS, i) for i in range(n)]
        self._fraud_category_cum = _cumulative(_FRAUD_CATEGORY_WEIGHTS)
        self._next_legit = self._legit_time_after(start)
        self._next_episode = self._episode_time_after(start)

    def __iter__(self) -> Iterator[Transaction]:
        return self

    def __next__(self) -> Transaction:
        if self._peeked is not None:
            event, self._peeked = self._peeked, None
            return event
        while True:
            next_scheduled = self._scheduled[0][0] if self._scheduled else math.inf
            if self._next_episode < min(self._next_legit, next_scheduled):
                self._start_episode(self._next_episode)
                self._next_episode = self._episode_time_after(self._next_episode)
                continue
            if next_scheduled <= self._next_legit:
                timestamp, _, fields = heapq.heappop(self._scheduled)
                return self._emit(timestamp, fields)
            timestamp = self._next_legit
            self._next_legit = self._legit_time_after(timestamp)
            return self._emit(timestamp, self._legit_fields(timestamp))

    def peek(self) -> Transaction:
        if self._peeked is None:
            self._peeked = next(self)
        return self._peeked

    def until(self, end: float) -> Iterator[Transaction]:
        """The events before `end`; the first one at or after it stays in the stream."""
        while self.peek().timestamp < end:
            yield next(self)

    # ------------------------------------------------------------------ internals

    def _emit(self, timestamp: float, fields: dict[str, Any]) -> Transaction:
        self._emitted += 1
        txn_id = f"{self._id_prefix}{self._emitted:07d}"
        return Transaction(txn_id=txn_id, timestamp=timestamp, **fields)

    def _schedule(self, timestamp: float, fields: dict[str, Any]) -> None:
        self._scheduled_count += 1  # tie-breaker: dicts do not compare
        heapq.heappush(self._scheduled, (timestamp, self._scheduled_count, fields))

    def _thinned_time_after(self, t: float, per_day: float, hourly: Sequence[float]) -> float:
        """Next event of a Poisson process whose rate follows `hourly` (thinning)."""
        peak_rate = per_day / (DAY_S * (sum(hourly) / 24.0))
        while True:
            t += self._draws.exponential(1.0 / peak_rate)
            if self._draws.uniform() < hourly[hour_of(t)]:
                return t

    def _legit_time_after(self, t: float) -> float:
        return self._thinned_time_after(t, self._legit_per_day, _LEGIT_HOURLY)

    def _episode_time_after(self, t: float) -> float:
        d = self.drift
        hourly = [(1 - d) * f + d * g for f, g in zip(_FRAUD_HOURLY, _LEGIT_HOURLY, strict=True)]
        return self._thinned_time_after(t, self._episodes_per_day * (1 + 0.5 * d), hourly)

    def _amount(self, category: str, shift: float) -> float:
        mu, sigma = _AMOUNT_LOGNORMAL[category]
        raw = math.exp(mu + shift + sigma * self._draws.normal())
        return round(min(max(raw, 0.5), MAX_AMOUNT), 2)

    def _card_fields(self, card: int, category: str, country: str, amount: float) -> dict[str, Any]:
        pop = self.population
        user = pop.card_user[card]
        merchants = pop.merchants[category]
        return {
            "user_id": pop.user_ids[user],
            "card_id": pop.card_ids[card],
            "home_country": COUNTRIES[pop.home_index[user]],
            "merchant_id": merchants[self._draws.index(len(merchants))],
            "merchant_category": category,
            "country": country,
            "amount": amount,
        }

    def _legit_fields(
        self, timestamp: float, card: int | None = None, country_index: int | None = None
    ) -> dict[str, Any]:
        """A card holder's own purchase; `card` and `country` are given for a follow-up."""
        pop, draws, d = self.population, self._draws, self.drift
        if card is None:
            first, count = pop.user_cards[draws.choice(pop.activity_cum)]
            card = first + draws.index(count)
        user = pop.card_user[card]
        home = pop.home_index[user]
        category = MERCHANT_CATEGORIES[draws.choice(pop.category_cum[user])]
        if d > 0 and draws.uniform() < 0.25 * d:
            category = "online_services"
        if country_index is None:
            country_index = home
            if draws.uniform() < min(0.9, pop.p_foreign[user] * (1 + 4 * d)):
                country_index = draws.choice(self._travel_cum[home])
        shift = pop.amount_shift[user] + 0.4 * d
        if draws.uniform() < 0.02:
            shift += 1.5  # the occasional big purchase: a new phone, a family trip
        amount = self._amount(category, shift)
        if draws.uniform() < 0.15:
            later = timestamp + draws.exponential(1_200.0)
            self._schedule(later, self._legit_fields(later, card, country_index))
        fields = self._card_fields(card, category, COUNTRIES[country_index], amount)
        return {**fields, "is_fraud": 0}

    def _start_episode(self, start: float) -> None:
        """Schedule a burst of fraudulent transactions on one card."""
        pop, draws, d = self.population, self._draws, self.drift
        card = draws.index(len(pop.card_ids))
        user = pop.card_user[card]
        home = pop.home_index[user]
        size = 1 + min(draws.poisson(2.0 * (1 - 0.6 * d)), 7)
        country_index = home
        if draws.uniform() < 0.5 - 0.25 * d:
            country_index = draws.choice(self._fraud_country_cum[home])
        gap_mean = 480.0 * (1 + 5 * d)
        timestamp = start
        for i in range(size):
            if i == 0 and draws.uniform() < 0.3 * (1 - d):
                # Card testing: a tiny charge to see whether the stolen card works.
                category = "online_services" if draws.uniform() < 0.6 else "gaming"
                amount = round(0.5 + 4.5 * draws.uniform(), 2)
            else:
                if d > 0 and draws.uniform() < 0.5 * d:
                    category = MERCHANT_CATEGORIES[draws.choice(pop.category_cum[user])]
                else:
                    category = MERCHANT_CATEGORIES[draws.choice(self._fraud_category_cum)]
                amount = self._amount(category, pop.amount_shift[user] + 0.6 * (1 - 0.5 * d))
            fields = self._card_fields(card, category, COUNTRIES[country_index], amount)
            self._schedule(timestamp, {**fields, "is_fraud": 1})
            timestamp += draws.exponential(gap_mean)


def demo_population(seed: int = DEMO_SEED) -> Population:
    return Population.generate(seed=seed)


def generate_transactions(
    days: float = 60.0,
    *,
    seed: int = DEMO_SEED,
    drift: float = 0.0,
    population: Population | None = None,
    start: float = TRAINING_START,
) -> list[Transaction]:
    """`days` of history from `start`, in time order (~44k transactions for 60 days)."""
    stream = TransactionStream(
        population or demo_population(seed), seed=[seed, 2], start=start, drift=drift
    )
    return list(stream.until(start + days * DAY_S))


# ---------------------------------------------------------------------------- ride prices

_CITY_WEIGHTS = (0.22, 0.20, 0.12, 0.16, 0.12, 0.18)
_CITY_RAIN = (0.30, 0.25, 0.40, 0.10, 0.15, 0.45)
_CITY_DEMAND = (0.4, 0.8, 0.2, 0.3, 0.5, 1.0)
_CITY_DRIVERS = (260.0, 320.0, 120.0, 200.0, 150.0, 420.0)
_RIDE_HOURLY = (
    0.5, 0.4, 0.3, 0.2, 0.2, 0.3, 0.6, 1.0, 1.0, 0.8, 0.6, 0.6,
    0.7, 0.7, 0.6, 0.7, 0.9, 1.0, 1.0, 0.9, 0.8, 0.8, 0.7, 0.6,
)  # fmt: skip


def generate_rides(
    n: int, *, seed: int | Sequence[int] = DEMO_SEED, drift: float = 0.0
) -> tuple[pd.DataFrame, pd.Series]:
    """Ride requests (columns as RIDE_PRICE_FEATURES) and their surge multiplier (1.0-3.5).

    Surge follows demand pressure (requests per available driver) with rain and rush hours
    adding to demand; drift brings more rain, more demand and fewer drivers.
    """
    rng = np.random.default_rng(seed)
    city = rng.choice(len(CITIES), size=n, p=np.array(_CITY_WEIGHTS) / sum(_CITY_WEIGHTS))
    hour = rng.choice(24, size=n, p=np.array(_RIDE_HOURLY) / sum(_RIDE_HOURLY))
    weekday = rng.integers(0, 7, size=n)
    rain = rng.random(n) < np.minimum(np.array(_CITY_RAIN)[city] * (1 + drift), 0.95)
    distance = np.clip(rng.lognormal(math.log(5.5), 0.65, size=n), 0.3, 120.0)
    rush = np.isin(hour, (7, 8, 9, 17, 18, 19)) & (weekday < 5)
    night = (hour >= 22) | (hour <= 2)
    weekend_night = night & (weekday >= 4)
    speed = np.clip(28.0 - 9.0 * rush + 6.0 * night - 3.0 * rain + rng.normal(0, 3, n), 8, 60)
    duration = np.clip(distance / speed * 60.0 + rng.gamma(2.0, 1.5, n), 1.0, 600.0)
    demand = (
        1.0
        + 2.2 * rush
        + 2.0 * weekend_night
        + 1.5 * rain
        + np.array(_CITY_DEMAND)[city]
        + rng.gamma(2.0, 0.4, n)
        + 1.5 * drift
    )
    demand = np.clip(demand, 0.0, 10.0)
    supply = np.array(_CITY_DRIVERS)[city] * np.where(night, 0.6, 1.0) * (1 - 0.35 * drift)
    drivers = np.minimum(rng.poisson(supply), 5000)
    pressure = demand * 60.0 / (drivers + 20.0)
    surge = (
        1.0
        + 0.9 * np.maximum(pressure - 0.6, 0.0)
        + 0.15 * rain
        + 0.1 * weekend_night
        + rng.normal(0.0, 0.07, n)
    )
    frame = pd.DataFrame(
        {
            "distance_km": np.round(distance, 2),
            "duration_min": np.round(duration, 1),
            "hour": hour.astype("int64"),
            "weekday": weekday.astype("int64"),
            "city": np.array(CITIES, dtype=object)[city],
            "rain": rain.astype(bool),
            "demand_index": np.round(demand, 2),
            "drivers_available": drivers.astype("int64"),
        },
        columns=list(RIDE_PRICE_FEATURES),
    )
    target = pd.Series(np.round(np.clip(surge, SURGE_MIN, SURGE_MAX), 4), name="surge")
    return frame, target


def plain_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as dicts of plain Python values (JSON-able; numpy scalars become int/float/bool)."""
    return [
        {
            key: value.item() if isinstance(value, np.generic) else value
            for key, value in row.items()
        }
        for row in frame.to_dict(orient="records")
    ]
