"""Every bad input gets a 4xx naming the field and the reason; nothing reaches the model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from tests.helpers import TOY_ROW, oip_tensors


def _record(**changes: Any) -> dict[str, Any]:
    row = {**TOY_ROW, **changes}
    return {"instances": [{k: v for k, v in row.items() if v != "<drop>"}]}


def _tensor(name: str, datatype: str, data: list[Any], shape: list[int] | None = None) -> dict:
    body = oip_tensors([TOY_ROW])
    for tensor in body["inputs"]:
        if tensor["name"] == name:
            tensor.update(datatype=datatype, data=data, shape=shape or [len(data)])
    return body


RECORD_CASES = [
    # (body, status, field, words in the reason)
    (_record(amount="12"), 422, "instances[0].amount", "expected a number"),
    (_record(amount=float("nan")), 422, "instances[0].amount", "not a finite"),
    (_record(amount=-1.0), 422, "instances[0].amount", "below the allowed minimum"),
    (_record(amount=10_001.0), 422, "instances[0].amount", "above the allowed maximum"),
    (_record(count=2.5), 422, "instances[0].count", "expected an integer"),
    (_record(count=True), 422, "instances[0].count", "expected an integer"),
    (_record(country="XX"), 422, "instances[0].country", "unknown category 'XX'"),
    (_record(country=3), 422, "instances[0].country", "expected one of the categories"),
    (_record(online="yes"), 422, "instances[0].online", "expected true or false"),
    (_record(amount="<drop>"), 422, "instances[0].amount", "required feature is missing"),
    (_record(colour="red"), 422, "instances[0].colour", "unknown feature 'colour'"),
    ({"instances": []}, 422, "instances", "at least 1"),
    ({"instances": [TOY_ROW], "entity_ids": ["a", "b"]}, 422, "entity_ids", "one entity id"),
    ({"rows": [TOY_ROW]}, 422, "instances", "Field required"),
    ({"instances": ["not an object"]}, 422, "instances[0]", "object"),
]


@pytest.mark.parametrize(("body", "status", "field", "words"), RECORD_CASES)
def test_record_form_rejects(
    client: TestClient,
    admin_headers: dict[str, str],
    body: dict,
    status: int,
    field: str,
    words: str,
) -> None:
    # Sent as text: Python's json writes NaN literally, as careless clients do.
    response = client.post(
        "/v1/models/toy:predict", headers=admin_headers, content=json.dumps(body)
    )
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field
    assert words in error["reason"]
    assert error["error"].startswith(field)


OIP_CASES = [
    (_tensor("amount", "FP64", ["a"]), 422, "inputs[0](amount).data[0]", "FP64 holds numbers"),
    (_tensor("amount", "BYTES", ["a"]), 422, "inputs[0](amount).datatype", "use FP64"),
    (_tensor("amount", "FP64", [1.0, 2.0], [1]), 400, "inputs[0](amount).data", "needs 1 values"),
    (_tensor("amount", "FP64", [1.0, 2.0]), 400, "inputs[1](count).shape", "earlier inputs"),
    (_tensor("amount", "FP99", [1.0]), 400, "inputs[0](amount).datatype", "unknown datatype"),
    (_tensor("amount", "FP64", [1.0], [1, 2]), 400, "inputs[0](amount).shape", "[rows, 1]"),
    (
        {"inputs": [{"name": "mystery", "shape": [1], "datatype": "FP64", "data": [1]}]},
        422,
        "inputs",
        "unknown input 'mystery'",
    ),
    (
        {"inputs": [{"name": "m", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]},
        400,
        "inputs[0](m).shape",
        "needs 5 columns",
    ),
    ({"inputs": []}, 400, "inputs", "at least 1"),
    (
        {"inputs": [{"name": "amount", "shape": [0], "datatype": "FP64", "data": []}]},
        400,
        "inputs",
        "no rows",
    ),
    (
        {**oip_tensors([TOY_ROW]), "outputs": [{"name": "explain"}]},
        400,
        "outputs[0].name",
        "unknown output 'explain'",
    ),
    (
        {**oip_tensors([TOY_ROW]), "parameters": {"entity_ids": ["a", "b"]}},
        400,
        "parameters.entity_ids",
        "one id per row",
    ),
]


@pytest.mark.parametrize(("body", "status", "field", "words"), OIP_CASES)
def test_oip_rejects(
    client: TestClient,
    admin_headers: dict[str, str],
    body: dict,
    status: int,
    field: str,
    words: str,
) -> None:
    response = client.post("/v2/models/toy/infer", headers=admin_headers, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["field"] == field, error
    assert words in error["reason"]


def test_malformed_json(client: TestClient, admin_headers: dict[str, str]) -> None:
    for path in ("/v2/models/toy/infer", "/v1/models/toy:predict"):
        response = client.post(path, headers=admin_headers, content=b'{"inputs": [')
        assert response.status_code == 400
        assert response.json()["reason"] == "the body is not valid JSON"


def test_oversized_payload_is_refused_before_reading(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    limit = client.app.state.workspace.settings.max_request_bytes  # type: ignore[attr-defined]
    big = b'{"inputs": [' + b" " * (limit + 10) + b"]}"
    response = client.post("/v2/models/toy/infer", headers=admin_headers, content=big)
    assert response.status_code == 413
    assert response.json()["field"] == "body"


def test_oversized_streamed_payload_is_refused_while_reading(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    # Chunked transfer declares no length: the limit is counted as the body arrives.
    limit = client.app.state.workspace.settings.max_request_bytes  # type: ignore[attr-defined]
    chunk = b" " * 65_536

    def body() -> Iterator[bytes]:
        yield b'{"instances": ['
        for _ in range(limit // len(chunk) + 2):
            yield chunk
        yield b"]}"

    for path in ("/v1/models/toy:predict", "/api/v1/feedback"):
        response = client.post(path, headers=admin_headers, content=body())
        assert response.status_code == 413, (path, response.text)
        assert response.json()["field"] == "body"
    small = client.post(
        "/v1/models/toy:predict",
        headers=admin_headers,
        content=iter([b'{"instances": [', orjson.dumps(TOY_ROW), b"]}"]),
    )
    assert small.status_code == 200, small.text


def test_too_many_rows(client: TestClient, admin_headers: dict[str, str]) -> None:
    limit = client.app.state.workspace.settings.max_rows_per_request  # type: ignore[attr-defined]
    response = client.post(
        "/v1/models/toy:predict", headers=admin_headers, json={"instances": [TOY_ROW] * (limit + 1)}
    )
    assert response.status_code == 413
    assert "limit" in response.json()["reason"]


def test_bad_labels(client: TestClient, admin_headers: dict[str, str]) -> None:
    ok = client.post(
        "/v1/models/toy:predict",
        headers=admin_headers,
        json={"instances": [TOY_ROW], "id": "lbl-1"},
    )
    assert ok.status_code == 200
    client.app.state.serving.prediction_log.flush()  # type: ignore[attr-defined]
    cases = [
        ({"labels": [{"request_id": "lbl-1", "label": 7}]}, "labels[0].label", "unknown class"),
        ({"labels": [{"request_id": "lbl-1", "label": None}]}, "labels[0].label", "required"),
        (
            {"labels": [{"request_id": "lbl-1", "label": 1}, {"request_id": "lbl-1", "label": 0}]},
            "labels[1]",
            "labelled twice",
        ),
        ({"labels": []}, "labels", "at least 1"),
        (
            {"labels": [{"request_id": "lbl-1", "row": -1, "label": 1}]},
            "labels[0].row",
            "greater than or equal",
        ),
    ]
    for body, field, words in cases:
        response = client.post("/api/v1/feedback", headers=admin_headers, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["field"] == field
        assert words in response.json()["reason"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        # "²" is a digit to Python's isdigit; a huge number overflows the integer column.
        ("GET", "/api/v1/models/toy/versions/%C2%B2", None, 404, "version"),
        ("GET", "/api/v1/models/toy/versions/" + "9" * 30, None, 404, "version"),
        ("POST", "/v2/models/toy/versions/%C2%B2/infer", oip_tensors([TOY_ROW]), 404, "version"),
        # Ids longer than their columns would stall the log on PostgreSQL: refused up front.
        ("POST", "/v2/models/toy/infer", {**oip_tensors([TOY_ROW]), "id": "x" * 65}, 400, "id"),
        (
            "POST",
            "/v2/models/toy/infer",
            {**oip_tensors([TOY_ROW]), "parameters": {"entity_id": "e" * 129}},
            400,
            "parameters.entity_id",
        ),
        (
            "POST",
            "/v1/models/toy:predict",
            {"instances": [TOY_ROW], "entity_ids": ["e" * 129]},
            422,
            "entity_ids[0]",
        ),
        ("POST", "/api/v1/feedback", {"labels": [{"request_id": "r", "row": 10**30}]}, 422, None),
        ("GET", "/api/v1/monitor/live?since=nan", None, 422, "since"),
        (
            "POST",
            "/api/v1/tokens",
            {"name": "nested", "role": "client", "constraints": {"country": [["DE"]]}},
            422,
            "constraints",
        ),
    ],
)
def test_edge_values_get_a_clear_4xx(
    client: TestClient,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    field: str | None,
) -> None:
    response = client.request(method, path, headers=admin_headers, json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["error"]
    if field is not None:
        assert error["field"].startswith(field), error


def test_a_zero_padded_version_is_the_same_version(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    answer = client.post(
        "/v2/models/toy/versions/01/infer", headers=admin_headers, json=oip_tensors([TOY_ROW])
    ).json()
    assert answer["model_version"] == "1" and answer["parameters"]["route"] == "active"
