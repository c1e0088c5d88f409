"""What the server answers agrees with what /openapi.json declares: zones, 409s, 405s, bounds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient


def _datetimes(document: Any, schema: dict[str, Any], components: dict[str, Any]) -> list[str]:
    """Every value the schema declares as date-time, found by walking both together."""
    if "$ref" in schema:
        schema = components[schema["$ref"].rsplit("/", 1)[-1]]
    found: list[str] = []
    for option in schema.get("anyOf", []) + schema.get("allOf", []):
        found += _datetimes(document, option, components)
    if schema.get("format") == "date-time" and isinstance(document, str):
        found.append(document)
    if isinstance(document, dict):
        for name, value in document.items():
            if name in schema.get("properties", {}):
                found += _datetimes(value, schema["properties"][name], components)
    if isinstance(document, list) and "items" in schema:
        for item in document:
            found += _datetimes(item, schema["items"], components)
    return found


@pytest.mark.parametrize(
    ("path", "template"),
    [
        ("/api/v1/tokens", "/api/v1/tokens"),
        ("/api/v1/models", "/api/v1/models"),
        ("/api/v1/models/toy", "/api/v1/models/{name}"),
        ("/api/v1/models/toy/versions/1", "/api/v1/models/{name}/versions/{version}"),
        ("/api/v1/audit", "/api/v1/audit"),
        ("/api/v1/models/toy/gate-reports", "/api/v1/models/{name}/gate-reports"),
    ],
)
def test_every_datetime_carries_its_zone(
    client: TestClient, admin_headers: dict[str, str], path: str, template: str
) -> None:
    document = client.get("/openapi.json").json()
    components = document["components"]["schemas"]
    declared = document["paths"][template]["get"]["responses"]["200"]["content"]["application/json"]
    response = client.get(path, headers=admin_headers)
    assert response.status_code == 200, response.text
    stamps = _datetimes(response.json(), declared["schema"], components)
    assert stamps, f"{path} answered no datetime to check"
    for stamp in stamps:
        parsed = datetime.fromisoformat(stamp)
        assert parsed.tzinfo is not None and parsed.utcoffset().total_seconds() == 0, stamp


def _declared_409(client: TestClient, method: str, path: str) -> dict[str, Any]:
    document = client.get("/openapi.json").json()
    content = document["paths"][path][method]["responses"]["409"]["content"]
    reference = content["application/json"]["schema"]["$ref"]
    return document["components"]["schemas"][reference.rsplit("/", 1)[-1]]


def _conforms(body: dict[str, Any], schema: dict[str, Any]) -> None:
    for name in schema.get("required", []):
        assert name in body, f"{name} is declared required but missing from {body}"


def test_conflicts_carry_what_their_routes_declare(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    # Deploying the version that serves: a conflict no gate ran for, so no gate report.
    again = client.post(
        "/api/v1/models/toy/deploy", headers=admin_headers, json={"version": "1", "reason": "x"}
    )
    assert again.status_code == 409
    declared = _declared_409(client, "post", "/api/v1/models/{name}/deploy")
    _conforms(again.json(), declared)
    assert "gate_report" in declared["properties"]
    # Rollback with nothing to return to, and rollout actions with no rollout running.
    for path, schema_path in [
        ("/api/v1/models/toy/rollback", "/api/v1/models/{name}/rollback"),
        ("/api/v1/models/toy/rollout/pause", "/api/v1/models/{name}/rollout/pause"),
        ("/api/v1/models/toy/rollout/resume", "/api/v1/models/{name}/rollout/resume"),
        ("/api/v1/models/toy/rollout/promote", "/api/v1/models/{name}/rollout/promote"),
        ("/api/v1/models/toy/rollout/abort", "/api/v1/models/{name}/rollout/abort"),
    ]:
        response = client.post(path, headers=admin_headers, json={"reason": "test"})
        assert response.status_code == 409, (path, response.text)
        _conforms(response.json(), _declared_409(client, "post", schema_path))
    # A rollout of the serving version: refused before any gate.
    rollout = client.put(
        "/api/v1/models/toy/rollout",
        headers=admin_headers,
        json={"candidate": "1", "mode": "canary"},
    )
    assert rollout.status_code == 409
    _conforms(rollout.json(), _declared_409(client, "put", "/api/v1/models/{name}/rollout"))


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/v2/models/toy/infer", {"POST"}),
        ("PUT", "/v1/models/toy:predict", {"POST"}),
        ("DELETE", "/api/v1/models/toy/rollout", {"GET", "PUT"}),
        ("POST", "/api/v1/tokens/someone", {"DELETE"}),
        ("PATCH", "/api/v1/tokens", {"GET", "POST"}),
        ("POST", "/v2/health/live", {"GET"}),
        ("POST", "/openapi.json", {"GET", "HEAD"}),
    ],
)
def test_every_405_says_what_is_allowed(
    client: TestClient, admin_headers: dict[str, str], method: str, path: str, allowed: set[str]
) -> None:
    response = client.request(method, path, headers=admin_headers)
    assert response.status_code == 405
    assert set(response.headers["allow"].split(", ")) == allowed
    assert method in response.json()["reason"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("resolution=-280", "resolution"),
        ("resolution=2", "resolution"),
        ("since=inf", "since"),
        ("since=nan", "since"),
        # Found by the fuzz run: a 500 from bucket arithmetic beyond 64 bits.
        ("since=5.025636288284712e%2B267", "since"),
        ("since=-1", "since"),
    ],
)
def test_live_series_refuses_what_its_parameters_do_not_declare(
    client: TestClient, admin_headers: dict[str, str], query: str, field: str
) -> None:
    response = client.get(f"/api/v1/monitor/live?{query}", headers=admin_headers)
    assert response.status_code == 422
    assert response.json()["field"] == field
    parameters = {
        p["name"]: p["schema"]
        for p in client.get("/openapi.json").json()["paths"]["/api/v1/monitor/live"]["get"][
            "parameters"
        ]
    }
    assert parameters["resolution"]["enum"] == [1, 60]
    assert parameters["resolution"]["minimum"] == 1 and parameters["resolution"]["maximum"] == 60


def test_every_integer_parameter_is_bounded(client: TestClient) -> None:
    """An unbounded integer parameter lets a client send one no store holds (a 500)."""
    document = client.get("/openapi.json").json()
    unbounded = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for parameter in operation.get("parameters", []):
                schema = parameter["schema"]
                options = schema.get("anyOf", [schema])
                for option in options:
                    if option.get("type") == "integer" and (
                        "maximum" not in option or "minimum" not in option
                    ):
                        unbounded.append(f"{method.upper()} {path} {parameter['name']}")
    assert not unbounded
