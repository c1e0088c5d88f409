"""Values at the edge of the protocol: numbers no store can hold, OIP datatypes, request ids."""

from __future__ import annotations

import json
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.helpers import TOY_ROW, oip_tensors

HUGE = 1180591620717411303424  # 2**70: beyond 64 bits


def _send(client: TestClient, path: str, headers: dict[str, str], body: Any) -> Any:
    # As text: Python's json writes NaN, Infinity and big integers literally, as clients do.
    return client.post(path, headers=headers, content=json.dumps(body))


def _tensor(name: str, datatype: str, data: list[Any]) -> dict[str, Any]:
    body = oip_tensors([TOY_ROW] * len(data))
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            tensor.update(datatype=datatype, data=data, shape=[len(data)])
    return body


@pytest.mark.parametrize(
    ("feature", "value", "words"),
    [
        ("count", HUGE, "beyond the 64-bit integer range"),
        ("count", -HUGE, "beyond the 64-bit integer range"),
        ("amount", HUGE, "beyond the 64-bit integer range"),
        ("amount", 10**400, "beyond the 64-bit integer range"),
        ("amount", float("inf"), "not a finite number"),
        ("amount", float("nan"), "not a finite number"),
        ("count", float("-inf"), "not a finite number"),
    ],
)
def test_record_form_refuses_numbers_no_store_holds(
    client: TestClient, admin_headers: dict[str, str], feature: str, value: Any, words: str
) -> None:
    body = {"instances": [{**TOY_ROW, feature: value}]}
    response = _send(client, "/v1/models/toy:predict", admin_headers, body)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"] == f"instances[0].{feature}"
    assert words in error["reason"]
    # A long number is cut short in the message, not repeated whole.
    assert len(error["reason"]) < 200


def test_record_form_serves_and_logs_after_refusing_huge_numbers(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    refused = _send(
        client, "/v1/models/toy:predict", admin_headers, {"instances": [{**TOY_ROW, "count": HUGE}]}
    )
    assert refused.status_code == 422
    edge = {**TOY_ROW, "count": 2**63 - 1}
    answered = _send(client, "/v1/models/toy:predict", admin_headers, {"instances": [edge]})
    assert answered.status_code == 200, answered.text


@pytest.mark.parametrize(
    ("name", "datatype", "value", "words"),
    [
        # The case from outside: a fraction in an integer tensor carrying a float feature.
        ("amount", "INT64", 38.81, "INT64 holds integers, got the fraction 38.81"),
        ("count", "INT32", 2.5, "INT32 holds integers"),
        ("count", "INT64", HUGE, "outside the range of INT64"),
        ("count", "INT8", 128, "outside the range of INT8 [-128, 127]"),
        ("count", "UINT8", -1, "outside the range of UINT8 [0, 255]"),
        ("count", "UINT64", "3", "UINT64 holds integers"),
        ("count", "INT16", True, "INT16 holds integers"),
        ("amount", "FP64", HUGE * 10**300, "not a finite number within FP64"),
        ("amount", "FP64", float("nan"), "not a finite number within FP64"),
        ("amount", "FP32", 1e39, "not a finite number within FP32"),
        ("amount", "FP16", 70000.0, "not a finite number within FP16"),
        ("amount", "FP64", False, "FP64 holds numbers"),
        ("online", "BOOL", 1, "BOOL holds true or false"),
    ],
)
def test_oip_refuses_values_their_datatype_does_not_hold(
    client: TestClient,
    admin_headers: dict[str, str],
    name: str,
    datatype: str,
    value: Any,
    words: str,
) -> None:
    body = _tensor(name, datatype, [value])
    response = _send(client, "/v2/models/toy/infer", admin_headers, body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()
    index = [tensor["name"] for tensor in body["inputs"]].index(name)
    assert error["field"] == f"inputs[{index}]({name}).data[0]"
    assert words in error["reason"]
    assert error["error"].startswith(error["field"])


@pytest.mark.parametrize(
    ("name", "datatype", "value"),
    [
        ("amount", "INT64", 38),
        ("amount", "FP32", 38.81),
        ("amount", "FP16", 38.5),
        ("count", "INT64", 3.0),  # an integral float is the integer it spells
        ("count", "UINT8", 255),
        ("count", "INT64", 2**63 - 1),
    ],
)
def test_oip_accepts_values_within_their_datatype(
    client: TestClient,
    admin_headers: dict[str, str],
    name: str,
    datatype: str,
    value: Any,
) -> None:
    response = _send(
        client, "/v2/models/toy/infer", admin_headers, _tensor(name, datatype, [value])
    )
    assert response.status_code == 200, response.text


def test_oip_bytes_feature_needs_text(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = _send(
        client, "/v2/models/toy/infer", admin_headers, _tensor("country", "BYTES", [7])
    )
    assert response.status_code == 422
    assert response.json()["field"] == "inputs.rows[0].country"


def test_oip_matrix_values_are_checked_by_datatype(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT32", "data": [[1, 2.5]]}]}
    response = _send(client, "/v2/models/price/infer", admin_headers, body)
    assert response.status_code == 422
    assert response.json()["field"] == "inputs[0](x).data[1]"
    body["inputs"][0]["data"] = [[1, 2]]
    assert _send(client, "/v2/models/price/infer", admin_headers, body).status_code == 200


def test_oip_refuses_huge_numbers_in_parameters(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = {**oip_tensors([TOY_ROW]), "parameters": {"note": {"n": HUGE}}}
    response = _send(client, "/v2/models/toy/infer", admin_headers, body)
    assert response.status_code == 400
    assert response.json()["field"] == "parameters.note"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/feedback", {"labels": [{"request_id": "r", "label": HUGE}]}, "labels[0].label"),
        (
            "/api/v1/feedback",
            {"labels": [{"request_id": "r", "label": [1, {"x": float("nan")}]}]},
            "labels[0].label",
        ),
        ("/api/v1/models/toy/rollout", None, None),
        (
            "/api/v1/tokens",
            {"name": "n", "role": "client", "models": ["toy"], "constraints": {"count": [HUGE]}},
            None,
        ),
    ],
)
def test_json_routes_refuse_numbers_no_store_holds(
    client: TestClient,
    admin_headers: dict[str, str],
    path: str,
    body: Any,
    field: str | None,
) -> None:
    if body is None:  # a float field of a request body: NaN and infinity are no numbers
        body = {"candidate": "1", "mode": "canary", "min_dwell_s": float("nan")}
        response = client.put(path, headers=admin_headers, content=json.dumps(body))
        field = "min_dwell_s"
    else:
        response = _send(client, path, admin_headers, body)
    assert response.status_code == 422, response.text
    error = response.json()
    if field is not None:
        assert error["field"] == field
    else:
        assert error["field"].startswith("constraints.count")


def test_empty_request_id_is_echoed_and_logged_under_a_new_one(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    oip = client.post(
        "/v2/models/toy/infer", headers=admin_headers, json={**oip_tensors([TOY_ROW]), "id": ""}
    )
    assert oip.status_code == 200, oip.text
    answer = oip.json()
    assert answer["id"] == ""
    logged_id = answer["parameters"]["request_id"]
    assert logged_id and len(logged_id) == 34

    record = client.post(
        "/v1/models/toy:predict", headers=admin_headers, json={"instances": [TOY_ROW], "id": ""}
    )
    assert record.status_code == 200, record.text
    assert record.json()["id"] == ""
    assert record.json()["request_id"] not in ("", logged_id)

    # A client's own id is both echoed and the id the log holds.
    own = client.post(
        "/v2/models/toy/infer",
        headers=admin_headers,
        json={**oip_tensors([TOY_ROW]), "id": "order-17"},
    )
    assert own.json()["id"] == "order-17"
    assert own.json()["parameters"]["request_id"] == "order-17"
    sent = client.post(
        "/v1/models/toy:predict",
        headers=admin_headers,
        json={"instances": [TOY_ROW], "id": "order-18"},
    )
    assert sent.json()["id"] == sent.json()["request_id"] == "order-18"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/models/%00", "path"),
        ("/v2/models/t%00y", "path"),
        ("/api/v1/audit?model=%00", "model"),
        ("/api/v1/predictions?limit=5&request_id=a%00", "request_id"),
        ("/api/v1/models/toy/gate-reports?version=%00", "version"),
    ],
)
def test_nul_in_the_url_is_refused_before_the_store(
    client: TestClient, admin_headers: dict[str, str], path: str, field: str
) -> None:
    # PostgreSQL's text cannot hold NUL: this was a 500 from the store.
    response = client.get(path, headers=admin_headers)
    assert response.status_code == 400
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("post", "/api/v1/models/toy/deploy", {"version": "1\u0000", "reason": "x"}, "version"),
        ("post", "/api/v1/models/toy/rollback", {"reason": "a\u0000"}, "reason"),
        (
            "put",
            "/api/v1/models/toy/rollout",
            {"candidate": "\u0000", "mode": "canary"},
            "candidate",
        ),
        ("post", "/api/v1/feedback", {"labels": [{"request_id": "r", "label": "\u0000"}]}, None),
        ("post", "/api/v1/tokens", {"name": "n", "role": "client", "models": ["\u0000"]}, "models"),
        ("post", "/v1/models/toy:predict", {"instances": [{**TOY_ROW, "note": "\u0000"}]}, None),
        # Map keys too (the OpenAPI document states it with propertyNames on every map).
        (
            "post",
            "/v2/models/toy/infer",
            {**oip_tensors([TOY_ROW]), "parameters": {"k\u0000": 1}},
            None,
        ),
        (
            "post",
            "/v2/models/toy/infer",
            {**oip_tensors([TOY_ROW]), "parameters": {"note": ["\u0000"]}},
            None,
        ),
        (
            "put",
            "/api/v1/models/toy/drift/settings",
            {"features": {"amount\u0000": {"alpha": 0.05}}},
            "features",
        ),
    ],
)
def test_nul_in_a_body_is_refused_before_the_store(
    client: TestClient,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any],
    field: str | None,
) -> None:
    response = client.request(method, path, headers=admin_headers, json=body)
    # The Open Inference Protocol answers a bad body with 400, the management API with 422.
    assert response.status_code == (400 if path.startswith("/v2/") else 422), response.text
    error = response.json()
    assert "NUL" in error["reason"]
    if field is not None:
        assert error["field"] == field
