"""Demo data, fraud features (online/batch parity) and the demo workspace; no HTTP."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import mean_absolute_error, roc_auc_score

from backend.demo.data import (
    DAY_S,
    TRAINING_START,
    Transaction,
    generate_rides,
    generate_transactions,
    plain_records,
)
from backend.demo.workspace import build_demo
from backend.features import (
    FRAUD_FEATURES,
    FRAUD_SIGNATURE,
    RIDE_PRICE_FEATURES,
    RIDE_PRICE_SIGNATURE,
    FraudFeatureState,
    build_training_frame,
)
from backend.features.fraud import NO_PRIOR_TXN_S
from backend.registry import CompiledSignature
from backend.settings import Settings
from backend.workspace import Workspace

_PYTHON_TYPES = {"float": float, "int": int, "bool": bool, "category": str}


def _txn(
    seconds: float,
    amount: float,
    *,
    card: str = "c1",
    user: str = "u1",
    country: str = "DE",
    label: int = 0,
) -> Transaction:
    return Transaction(
        txn_id=f"t{seconds:g}",
        timestamp=TRAINING_START + seconds,
        user_id=user,
        card_id=card,
        home_country="DE",
        merchant_id="m-grocery-00",
        merchant_category="grocery",
        country=country,
        amount=amount,
        is_fraud=label,
    )


# ---------------------------------------------------------------------------- features


def test_online_features_equal_the_training_frame() -> None:
    events = generate_transactions(days=12, seed=3)
    frame, labels = build_training_frame(events)

    state = FraudFeatureState()
    online = [state.process(event) for event in events]

    assert list(frame.columns) == list(FRAUD_FEATURES)
    assert plain_records(frame) == online
    assert labels.tolist() == [event.is_fraud for event in events]
    # Same values *and* the Python types the signature declares: what a client would send.
    signature = CompiledSignature(FRAUD_SIGNATURE)
    for row in online[:500]:
        for spec in FRAUD_SIGNATURE:
            assert type(row[spec.name]) is _PYTHON_TYPES[spec.type], spec.name
        assert signature.validate_row(row, "row") == row


def test_training_frame_replays_in_time_order() -> None:
    events = generate_transactions(days=3, seed=4)
    shuffled = list(events)
    random.Random(0).shuffle(shuffled)
    frame, labels = build_training_frame(shuffled)
    expected_frame, expected_labels = build_training_frame(events)
    assert frame.equals(expected_frame)
    assert labels.equals(expected_labels)


def test_features_see_only_the_past_within_their_windows() -> None:
    state = FraudFeatureState()
    first = state.features_for(_txn(3_600 * 14, 40.0))
    assert first == {
        "amount": 40.0,
        "hour": 14,
        "merchant_category": "grocery",
        "country": "DE",
        "is_foreign": False,
        "user_txn_count_7d": 0,
        "user_mean_amount_7d": 0.0,
        "amount_to_user_mean": 1.0,
        "card_txn_count_1h": 0,
        "seconds_since_last_card_txn": NO_PRIOR_TXN_S,
    }
    # features_for does not record the event: asking twice gives the same answer.
    assert state.features_for(_txn(3_600 * 14, 40.0)) == first
    state.observe(_txn(3_600 * 14, 40.0))
    state.observe(_txn(3_600 * 14 + 600, 80.0, card="c2"))

    later = state.process(_txn(3_600 * 14 + 1_200, 600.0, country="NG"))
    assert later["is_foreign"] is True
    assert later["user_txn_count_7d"] == 2
    assert later["user_mean_amount_7d"] == 60.0
    assert later["amount_to_user_mean"] == 10.0
    assert later["card_txn_count_1h"] == 1  # c1 once; c2 is another card
    assert later["seconds_since_last_card_txn"] == 1_200.0

    # Two hours on, the card's hour window is empty but the gap is still measured.
    after_hours = state.features_for(_txn(3_600 * 16 + 1_200, 10.0))
    assert after_hours["card_txn_count_1h"] == 0
    assert after_hours["seconds_since_last_card_txn"] == 7_200.0
    # Eight days on, the user's week is empty again.
    next_week = state.features_for(_txn(8 * DAY_S, 10.0))
    assert next_week["user_txn_count_7d"] == 0
    assert next_week["amount_to_user_mean"] == 1.0


# ---------------------------------------------------------------------------- data


def test_transactions_are_deterministic_and_plausible() -> None:
    first = generate_transactions(days=5, seed=1)
    assert first == generate_transactions(days=5, seed=1)
    assert first != generate_transactions(days=5, seed=2)

    history = generate_transactions()
    timestamps = [event.timestamp for event in history]
    assert timestamps == sorted(timestamps)
    assert timestamps[0] >= TRAINING_START and timestamps[-1] < TRAINING_START + 60 * DAY_S
    assert 30_000 <= len(history) <= 50_000
    fraud_rate = np.mean([event.is_fraud for event in history])
    assert 0.015 <= fraud_rate <= 0.035
    assert len({event.txn_id for event in history}) == len(history)
    assert all(0 < event.amount <= 50_000 for event in history)

    fraud = [event for event in history if event.is_fraud]
    legit = [event for event in history if not event.is_fraud]

    def foreign_share(events: list[Transaction]) -> float:
        return float(np.mean([event.country != event.home_country for event in events]))

    assert foreign_share(fraud) > 5 * foreign_share(legit)


def test_drift_shifts_the_distribution() -> None:
    plain = generate_transactions(days=20, seed=5)
    drifted = generate_transactions(days=20, seed=5, drift=1.0)

    def summary(events: list[Transaction]) -> tuple[float, float, float]:
        return (
            float(np.median([e.amount for e in events if not e.is_fraud])),
            float(np.mean([e.country != e.home_country for e in events])),
            float(np.mean([e.merchant_category == "online_services" for e in events])),
        )

    amount, foreign, online = summary(plain)
    drifted_amount, drifted_foreign, drifted_online = summary(drifted)
    assert drifted_amount > 1.2 * amount
    assert drifted_foreign > 1.5 * foreign
    assert drifted_online > 1.5 * online


def test_rides_are_deterministic_and_bounded() -> None:
    frame, surge = generate_rides(2_000, seed=1)
    again, surge_again = generate_rides(2_000, seed=1)
    assert frame.equals(again) and surge.equals(surge_again)
    assert list(frame.columns) == list(RIDE_PRICE_FEATURES)
    assert surge.between(1.0, 3.5).all()
    assert surge.std() > 0.2  # a target worth predicting
    signature = CompiledSignature(RIDE_PRICE_SIGNATURE)
    for row in plain_records(frame.head(200)):
        assert signature.validate_row(row, "row") == row
    drifted, drifted_surge = generate_rides(2_000, seed=1, drift=1.0)
    assert drifted_surge.mean() > surge.mean() + 0.1
    assert drifted["rain"].mean() > frame["rain"].mean()


# ---------------------------------------------------------------------------- workspace


@pytest.fixture
def workspace(tmp_path: Any) -> Iterator[Workspace]:
    opened = Workspace.open(Settings.load(data_dir=tmp_path))
    yield opened
    opened.close()


def test_build_demo_registers_deploys_and_reproduces(workspace: Workspace) -> None:
    registry = workspace.registry
    summary = build_demo(workspace)
    assert summary["built"] == ["fraud", "ride-price"]
    # Deployed through the gates, and recorded as such.
    history = workspace.deploy.model_info("fraud").history
    assert [(e.action, e.to_version, e.actor) for e in history] == [("deploy", "1", "demo-setup")]

    fraud = registry.get_model("fraud")
    rides = registry.get_model("ride-price")
    assert [v.version for v in fraud.versions] == ["1", "2"]
    assert [v.version for v in rides.versions] == ["1"]
    assert fraud.active_version == "1" and rides.active_version == "1"
    assert fraud.task == "classification" and rides.task == "regression"
    assert [spec.name for spec in fraud.versions[0].signature] == list(FRAUD_FEATURES)

    for name, version in (("fraud", "1"), ("fraud", "2"), ("ride-price", "1")):
        info = registry.get_version(name, version)
        validity = info.validity
        loaded = registry.load(name, version)
        outputs = loaded.predict([example.inputs for example in validity.end_to_end]).labels
        expected = [example.expected for example in validity.end_to_end]
        assert 15 <= len(expected) <= 25
        assert 300 <= len(validity.confidence_set) <= 500
        rows = [example.inputs for example in validity.confidence_set]
        truth = [example.label for example in validity.confidence_set]
        prediction = loaded.predict(rows)
        low, high = validity.acceptable_range
        if info.task == "classification":
            assert outputs == expected
            assert set(expected) == {0, 1}  # the checks cover both answers
            assert validity.metric == "roc_auc" and low >= 0.8
            assert prediction.probabilities is not None
            score = roc_auc_score(truth, [p[1] for p in prediction.probabilities])
        else:
            assert validity.metric == "mae" and validity.tolerance > 0
            assert max(abs(a - b) for a, b in zip(outputs, expected, strict=True)) <= 1e-6
            score = mean_absolute_error(truth, prediction.labels)
        assert low <= score <= high, (name, version, score)

    # Idempotent: nothing new, nothing re-activated.
    again = build_demo(workspace)
    assert again["built"] == []
    assert again["models"]["fraud"]["versions"].keys() == {"1", "2"}
    assert [v.version for v in registry.get_model("fraud").versions] == ["1", "2"]
    assert [v.version for v in registry.get_model("ride-price").versions] == ["1"]
    # A model registered but never deployed gets its first version deployed.
    assert registry.get_model("ride-price").active_version == "1"


def test_build_demo_fills_in_a_missing_model(workspace: Workspace) -> None:
    from backend.demo import workspace as demo_workspace

    registry = workspace.registry
    demo_workspace._build_ride_price(registry)
    summary = build_demo(workspace)
    assert summary["built"] == ["fraud"]
    assert [v.version for v in registry.get_model("ride-price").versions] == ["1"]


def test_simulator_checks_its_arguments() -> None:
    from backend.demo.simulate import run_simulator

    with pytest.raises(ValueError, match="rate"):
        run_simulator("http://127.0.0.1:9", "token", rate=0)


def test_demo_traffic_is_deterministic_and_mixes_both_models():
    from backend.demo.simulate import FRAUD_PATH, RIDE_PRICE_PATH, DemoTraffic

    one, two = DemoTraffic(seed=7), DemoTraffic(seed=7)
    first = [one.next_request() for _ in range(300)]
    assert first == [two.next_request() for _ in range(300)]
    paths = {path for _, path, _, _ in first}
    assert paths == {FRAUD_PATH, RIDE_PRICE_PATH}
    fraud = [body for model, _, body, _ in first if model == "fraud"]
    # Every fraud request names its card, so canaries and labels can follow an entity.
    assert all(body["entity_id"] and len(body["instances"]) == 1 for body in fraud)
