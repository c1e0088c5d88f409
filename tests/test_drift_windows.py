"""Drift of live traffic, end to end: a version registered with its training data, predictions
answered by a real app (its log writer counting windows as it writes rows), and the drift API
judging windows and series from those counts, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.db.tables import DriftReferenceRow
from backend.workspace import Workspace
from tests.helpers import (
    TOY_SIGNATURE,
    logged_rows,
    make_settings,
    plain_records,
    register_toy_with_training_data,
    toy_classifier,
    toy_frame,
    toy_validity,
)


def _traffic(n: int, seed: int, drifted: bool = False) -> list[dict[str, Any]]:
    """Rows drawn from the toy's training data (so undrifted by construction); drifted: every
    amount three times larger."""
    frame, _labels = toy_frame()
    picked = frame.sample(n=n, replace=True, random_state=seed).reset_index(drop=True)
    if drifted:
        picked["amount"] = np.minimum(picked["amount"] * 3.0, 9_999.0)
    return plain_records(picked)


@pytest.fixture
def drift_app(store: Workspace) -> Iterator[tuple[TestClient, dict[str, str]]]:
    workspace = store
    register_toy_with_training_data(workspace)
    headers = {"Authorization": f"Bearer {workspace.admin_token()}"}
    with TestClient(create_app(workspace=workspace)) as client:
        yield client, headers


def _predict(client: TestClient, headers: dict[str, str], rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), 100):
        response = client.post(
            "/v1/models/toy:predict", headers=headers, json={"instances": rows[start : start + 100]}
        )
        assert response.status_code == 200, response.text


def _window(client: TestClient, headers: dict[str, str], rows: int, **params: Any) -> Any:
    """The drift report once the writer has counted ``rows`` rows (it drains every 0.2 s)."""
    deadline = time.monotonic() + 30
    while True:
        response = client.get("/api/v1/models/toy/drift", headers=headers, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        if body["rows"] >= rows or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def test_registration_stores_the_reference_with_labelled_outputs(store: Workspace) -> None:
    workspace = store
    frame, labels = toy_frame()
    workspace.registry.register_version(
        "toy",
        sio.dumps(toy_classifier()),
        filename="toy.skops",
        validity=toy_validity(),
        registered_by="tests",
        signature=TOY_SIGNATURE,
        training_frame=frame.assign(label=labels.to_numpy()),
        training_target="label",
    )
    with workspace.sessions() as session:
        row = session.get(DriftReferenceRow, ("toy", "1"))
        assert row is not None
        summary = json.loads(row.summary)
        labelled = json.loads(row.labelled_outputs or "null")
    assert row.source == "training data" and row.rows == len(frame)
    assert summary["features"]["amount"]["kind"] == "numerical"
    assert summary["features"]["country"]["kind"] == "categorical"
    # The model's answers on the sample: predicted class and confidence, for prediction drift.
    assert summary["features"]["prediction"]["kind"] == "categorical"
    assert summary["features"]["confidence"]["kind"] == "numerical"
    assert labelled["labels"] == [int(v) for v in labels]
    assert len(labelled["probabilities"]) == len(frame)
    assert labelled["class_labels"] == [0, 1]


def test_without_training_data_the_confidence_set_is_the_reference(workspace: Workspace) -> None:
    # The workspace fixture registers the toy model without training data.
    with workspace.sessions() as session:
        row = session.get(DriftReferenceRow, ("toy", "1"))
        assert row is not None
        assert (row.source, row.rows) == ("confidence set", 100)


def test_a_reference_lacking_a_feature_is_refused_naming_it(workspace: Workspace) -> None:
    frame, _labels = toy_frame()
    with pytest.raises(Exception) as refused:
        workspace.registry.register_version(
            "toy",
            sio.dumps(toy_classifier()),
            filename="toy.skops",
            validity=toy_validity(),
            registered_by="tests",
            signature=TOY_SIGNATURE,
            training_frame=frame.drop(columns=["country"]),
        )
    assert getattr(refused.value, "field", None) == "reference"
    assert "country" in str(refused.value)


def test_live_windows_find_injected_drift_and_not_undrifted_traffic(
    drift_app: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = drift_app
    _predict(client, headers, _traffic(1_500, seed=11))
    calm = _window(client, headers, 1_500)
    assert calm["rows"] == 1_500 and calm["reference_version"] == "1"
    assert calm["reference_source"] == "training data"
    report = calm["report"]
    assert report["dataset_drift"] is False
    assert not [f for f in report["features"] if f["drifted"]]
    assert {f["name"] for f in report["predictions"]} == {"prediction", "confidence"}

    _predict(client, headers, _traffic(1_500, seed=12, drifted=True))
    shifted = _window(client, headers, 3_000, histograms="true")
    drifted = {f["name"]: f for f in shifted["report"]["features"]}
    assert drifted["amount"]["drifted"] is True
    assert drifted["country"]["drifted"] is False
    assert drifted["amount"]["histogram"], "the overlay needs display bins"
    assert "amount" in drifted["amount"]["explanation"]
    # The model answers larger amounts differently: its outputs drift too.
    assert any(f["drifted"] for f in shifted["report"]["predictions"])

    series = client.get(
        "/api/v1/models/toy/drift/series",
        headers=headers,
        params={"window_s": 60, "windows": 5},
    )
    assert series.status_code == 200, series.text
    windows = series.json()["windows"]
    assert len(windows) == 5
    assert sum(w["rows"] for w in windows) == 3_000


def test_a_window_with_few_rows_says_why_it_is_not_judged(
    drift_app: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = drift_app
    _predict(client, headers, _traffic(20, seed=13))
    body = _window(client, headers, 20)
    assert body["report"] is None
    assert "20 predictions" in body["note"]


def test_drift_settings_round_trip_and_bad_settings_name_the_field(
    drift_app: tuple[TestClient, dict[str, str]],
) -> None:
    client, headers = drift_app
    url = "/api/v1/models/toy/drift/settings"
    assert client.get(url, headers=headers).json()["ks_threshold"] == pytest.approx(0.01)
    stored = client.put(
        url, headers=headers, json={"ks_threshold": 0.2, "features": {"note": {"ignore": True}}}
    )
    assert stored.status_code == 200, stored.text
    assert client.get(url, headers=headers).json()["ks_threshold"] == pytest.approx(0.2)
    bad = client.put(url, headers=headers, json={"ks_threshold": 3})
    assert bad.status_code == 422
    assert "ks_threshold" in bad.text
    missing = client.get("/api/v1/models/nope/drift/settings", headers=headers)
    assert missing.status_code == 404


def test_window_parameters_are_bounded(drift_app: tuple[TestClient, dict[str, str]]) -> None:
    client, headers = drift_app
    for params in ({"window_s": 5}, {"window_s": 10**9}, {"route": "elsewhere"}):
        response = client.get("/api/v1/models/toy/drift", headers=headers, params=params)
        assert response.status_code == 422, (params, response.text)
    response = client.get("/api/v1/models/toy/drift/series", headers=headers, params={"windows": 0})
    assert response.status_code == 422


def test_with_monitoring_off_rows_are_logged_but_not_counted(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A serving-only worker (SERVEDECK_MONITORING=off): every answer is logged, no drift
    window is counted and Prometheus counts nothing."""
    workspace = Workspace.open(make_settings(tmp_path, monitoring="off"))
    try:
        register_toy_with_training_data(workspace)
        headers = {"Authorization": f"Bearer {workspace.admin_token()}"}
        with TestClient(create_app(workspace=workspace)) as client:
            _predict(client, headers, _traffic(300, seed=31))
            deadline = time.monotonic() + 30
            while logged_rows(workspace) < 300 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert logged_rows(workspace) == 300
            window = client.get("/api/v1/models/toy/drift", headers=headers).json()
            assert window["rows"] == 0
            metrics = client.get("/metrics", headers=headers).text
            assert 'servedeck_predictions_total{model="toy"' not in metrics
    finally:
        workspace.close()
