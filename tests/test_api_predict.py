"""Online prediction over OIP v2 and the record form, on SQLite and PostgreSQL."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient

from backend.workspace import Workspace
from tests.helpers import TOY_ROW, oip_tensors, toy_classifier


def test_health_needs_no_token(client: TestClient) -> None:
    assert client.get("/v2/health/live").json() == {"live": True}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_server_and_model_metadata(client: TestClient, admin_headers: dict[str, str]) -> None:
    server = client.get("/v2", headers=admin_headers).json()
    assert server["name"] == "servedeck" and server["extensions"] == []
    meta = client.get("/v2/models/toy", headers=admin_headers).json()
    assert meta["name"] == "toy" and meta["versions"] == ["1"]
    assert {t["name"]: t["datatype"] for t in meta["inputs"]} == {
        "amount": "FP64",
        "count": "INT64",
        "country": "BYTES",
        "online": "BOOL",
        "note": "BYTES",
    }
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]
    assert meta["outputs"][1]["shape"] == [-1, 2]
    assert client.get("/v2/models/toy/versions/1", headers=admin_headers).json()["name"] == "toy"
    assert client.get("/v2/models/toy/ready", headers=admin_headers).json() == {
        "name": "toy",
        "ready": True,
    }
    assert client.get("/v2/models/toy/versions/1/ready", headers=admin_headers).json()["ready"]


def test_infer_one_tensor_per_feature(client: TestClient, admin_headers: dict[str, str]) -> None:
    rows = [TOY_ROW, {**TOY_ROW, "amount": 9000.0, "country": "US"}]
    body = {"id": "req-1", **oip_tensors(rows)}
    response = client.post("/v2/models/toy/infer", headers=admin_headers, json=body)
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["model_name"] == "toy" and out["model_version"] == "1" and out["id"] == "req-1"
    assert out["parameters"]["serving_version"] == "1"
    assert out["parameters"]["request_id"] == "req-1"
    predict, proba = out["outputs"]
    assert predict["name"] == "predict" and predict["shape"] == [2]
    assert predict["datatype"] == "INT64"
    assert proba["shape"] == [2, 2] and len(proba["data"]) == 4
    import pandas as pd

    expected = toy_classifier().predict_proba(pd.DataFrame(rows))
    assert proba["data"] == pytest.approx(expected.ravel().tolist())


def test_infer_one_matrix_in_signature_order(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = {
        "inputs": [
            {
                "name": "input-0",
                "shape": [1, 5],
                "datatype": "BYTES",
                "data": [[120.5, 3, "DE", True, "x"]],
            }
        ],
        "outputs": [{"name": "predict"}],
    }
    out = client.post("/v2/models/toy/infer", headers=admin_headers, json=body).json()
    assert [o["name"] for o in out["outputs"]] == ["predict"]


def test_regression_matrix(client: TestClient, admin_headers: dict[str, str]) -> None:
    body = {
        "inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]
    }
    out = client.post("/v2/models/price/infer", headers=admin_headers, json=body).json()
    assert [o["name"] for o in out["outputs"]] == ["predict"]
    assert out["outputs"][0]["datatype"] == "FP64"
    assert out["outputs"][0]["data"][0] == pytest.approx(1.5 * 1 - 0.5 * 2 + 2, abs=0.2)


def test_record_form(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.post(
        "/v1/models/toy:predict",
        headers=admin_headers,
        json={"instances": [TOY_ROW, {**TOY_ROW, "note": None}], "entity_id": "card-9"},
    )
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["model_version"] == "1" and out["route"] == "active"
    assert len(out["predictions"]) == 2
    first = out["predictions"][0]
    assert set(first["probabilities"]) == {"0", "1"}
    assert first["prediction"] in (0, 1)


def test_explicit_version_and_unknowns(client: TestClient, admin_headers: dict[str, str]) -> None:
    body = oip_tensors([TOY_ROW])
    assert (
        client.post("/v2/models/toy/versions/1/infer", headers=admin_headers, json=body).status_code
        == 200
    )
    missing_version = client.post(
        "/v2/models/toy/versions/7/infer", headers=admin_headers, json=body
    )
    assert missing_version.status_code == 404
    assert "no version 7" in missing_version.json()["error"]
    missing_model = client.post("/v2/models/ghost/infer", headers=admin_headers, json=body)
    assert missing_model.status_code == 404 and missing_model.json()["field"] == "model"


def test_predictions_are_logged_with_features_and_labels(
    client: TestClient, admin_headers: dict[str, str], workspace: Workspace
) -> None:
    response = client.post(
        "/v1/models/toy:predict",
        headers=admin_headers,
        json={"instances": [TOY_ROW], "entity_id": "card-1", "id": "abc"},
    )
    assert response.status_code == 200
    # A label may arrive before its prediction is flushed: it is kept all the same, for the
    # model it names (a request id is only unique within a model).
    early = client.post(
        "/api/v1/feedback",
        headers=admin_headers,
        json={"labels": [{"request_id": "abc", "label": 1, "model": "toy"}]},
    ).json()
    assert early["accepted"] == 1
    deadline = time.monotonic() + 10
    records: list[dict] = []
    while time.monotonic() < deadline and not records:
        records = client.get(
            "/api/v1/predictions", headers=admin_headers, params={"request_id": "abc"}
        ).json()["predictions"]
        time.sleep(0.02)
    assert records, "prediction never reached the log"
    record = records[0]
    assert record["features"] == {**TOY_ROW}
    assert record["entity_id"] == "card-1" and record["token_name"] == "admin"
    assert record["route"] == "active" and record["version"] == "1"
    assert record["label"] == 1 and record["latency_ms"] > 0
    assert "sdk_" not in str(record)
    late = client.post(
        "/api/v1/feedback",
        headers=admin_headers,
        json={"labels": [{"request_id": "abc", "label": 0}]},
    ).json()
    assert late == {"accepted": 1, "unmatched": 0}


def test_openapi_lists_every_referenced_schema(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    assert {"InferRequest", "RequestInput", "RecordPredictRequest"} <= set(schemas)
    text = str(document)
    import re

    for name in set(re.findall(r"#/components/schemas/([A-Za-z0-9_]+)", text)):
        assert name in schemas, f"dangling reference to {name}"
    infer = document["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "/InferRequest"
    )


def test_refuses_rather_than_answer_unlogged(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    prediction_log = client.app.state.serving.prediction_log  # type: ignore[attr-defined]
    prediction_log.max_queued_rows = 0  # as if the store had been unreachable for long
    refused = client.post(
        "/v1/models/toy:predict", headers=admin_headers, json={"instances": [TOY_ROW]}
    )
    assert refused.status_code == 503
    assert "prediction log" in refused.json()["reason"]
    prediction_log.max_queued_rows = 1_000
    answered = client.post(
        "/v1/models/toy:predict", headers=admin_headers, json={"instances": [TOY_ROW]}
    )
    assert answered.status_code == 200
