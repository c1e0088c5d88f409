"""Property-based API test: schemathesis sends what /openapi.json allows to a real server.

Every check runs (no 5xx, responses conform to their declared schema, declared status codes
and content types, headers, schema-valid data accepted, invalid data refused, ...), as an
admin so that routes are really exercised rather than stopped at 401. The event streams
never end, so they are left out of the fuzz run and probed separately with a bounded read.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from backend.settings import Settings
from backend.workspace import Workspace
from tests.helpers import ServerProcess, ToyDataDir, start_server

# Bounded so that the whole run stays within about two minutes on two cores.
EXAMPLES_PER_OPERATION = 25
EVENT_STREAMS = r"^/api/v1/events(/|$)"


@pytest.fixture(scope="module")
def fuzzed_server(
    tmp_path_factory: pytest.TempPathFactory, toy_data_dir: ToyDataDir
) -> Iterator[tuple[ServerProcess, str]]:
    data_dir = tmp_path_factory.mktemp("fuzz")
    toy_data_dir(data_dir)
    # An admin token of its own, under a name no generated path parameter will guess: the
    # fuzzer may revoke tokens by name, and must not revoke the one it works with.
    workspace = Workspace.open(Settings.load(data_dir=data_dir))
    try:
        token = workspace.tokens.create(f"fuzz-{uuid.uuid4().hex}", "admin", None, {})
    finally:
        workspace.close()
    server = start_server(data_dir, env={"SERVEDECK_LOG_FLUSH_INTERVAL": "0.2"})
    yield server, token
    server.stop()


@pytest.fixture(scope="module")
def api_schema(fuzzed_server: tuple[ServerProcess, str]) -> schemathesis.BaseSchema:
    server, _token = fuzzed_server
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json").exclude(
        path_regex=EVENT_STREAMS
    )


# schemathesis' own pytest loader (from_fixture) does not run under pytest 9: each operation is
# driven here with its hypothesis strategy, and every failure is collected before reporting.
SETTINGS = settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    database=None,  # every run starts from the schema alone
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


# Operations whose bodies obey rules JSON Schema cannot state: for these a schema-valid body
# may rightly be refused, so the positive-data check (schema-valid means accepted) is off
# there, and every other check still runs. Each entry says why.
BEYOND_THE_SCHEMA = {
    "POST /v2/models/{name}/infer": "tensors must match the model's signature",
    "POST /v2/models/{name}/versions/{version}/infer": "tensors must match the signature",
    "POST /v1/models/{name}:predict": "instances must match the model's signature",
    "POST /api/v1/models/{name}/versions": "metadata is a JSON document inside a form field",
    "POST /api/v1/tokens": "constraints are for client tokens only",
    "PUT /api/v1/models/{name}/policy": "min_labelled may not exceed metric_window",
    # Each kind of rule has its own threshold range (milliseconds, a share, none) and only a
    # few kinds can be set yet; the body names the field it refuses.
    "PUT /api/v1/models/{name}/alert-rules": "a rule's threshold range depends on its kind",
    # A query parameter cannot be made to depend on another in an OpenAPI parameter list.
    "GET /api/v1/monitor/live": "a version is asked for with its model",
    # Free-form JSON (a label) holds integers within 64 bits; JSON Schema cannot tell such an
    # integer from a float of the same value, which is accepted.
    "POST /api/v1/feedback": "a label's integers must fit in 64 bits",
    "POST /api/v1/drift/files": "the files must be Parquet or CSV with columns in common",
    # Checked against the serving version: answers must be its classes (or numbers for a
    # regressor), rules must name its features, a fallback must be another version or model.
    "PUT /api/v1/models/{name}/held-out": "answers and features must fit the serving version",
    # The outcome and the slice feature are checked against the version: a class of it and a
    # feature of it (any text otherwise), and the span (window length x windows) is bounded,
    # which a parameter list cannot state.
    "GET /api/v1/models/{name}/feedback-loops": "outcome, slice_feature and span must fit",
    # A reviewer's answer must be one of the model's classes (free-form JSON otherwise).
    "POST /api/v1/models/{name}/review/{item}/answer": "an answer must be one of the classes",
    # Error reports: an expected answer or a correction must fit the model's output type; a
    # duplicate link and a fixing version go with their status, which must be reachable from
    # the report's; a search needs a word; a cursor must be one the inbox gave out.
    "POST /api/v1/reports": "the expected answer must fit the model's output",
    "PATCH /api/v1/reports/{report_id}": "a change must fit the workflow and the output type",
    "POST /api/v1/reports/bulk": "a change must fit the workflow; ids once each",
    "POST /api/v1/reports/{report_id}/notes": "a note needs more than blanks",
    "GET /api/v1/reports": "q needs a word; after must be a cursor the inbox gave out",
    "GET /api/v1/reports/counts": "q needs a word",
}


def _fuzz(operation: Any, token: str, excluded: list[Any]) -> None:
    @given(case=operation.as_strategy())
    @SETTINGS
    def exercise(case: schemathesis.Case) -> None:
        # The generated Authorization header (the schema declares one) is replaced: a random
        # token would only ever test the 401 path.
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        case.call_and_validate(timeout=30, excluded_checks=excluded)

    exercise()


def test_every_operation_keeps_its_schema(
    api_schema: schemathesis.BaseSchema, fuzzed_server: tuple[ServerProcess, str]
) -> None:
    _server, token = fuzzed_server
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 30, "the schema lost its operations"
    unknown = set(BEYOND_THE_SCHEMA) - {operation.label for operation in operations}
    assert not unknown, f"no such operations (renamed?): {unknown}"
    for operation in operations:
        excluded = (
            [schemathesis.checks.positive_data_acceptance]
            if operation.label in BEYOND_THE_SCHEMA
            else []
        )
        try:
            _fuzz(operation, token, excluded)
        except (Exception, BaseExceptionGroup) as exc:  # each is reported below
            failures.append(f"{operation.label}:\n{exc}")
    assert not failures, "\n\n".join(failures)


def _first_bytes(
    url: str, token: str, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """Status, content type and the first bytes of a stream; never waits for its end."""
    with requests.get(
        url,
        headers={"Authorization": f"Bearer {token}", **(headers or {})},
        stream=True,
        timeout=10,
    ) as response:
        first = next(response.iter_content(chunk_size=None), b"")
        return response.status_code, response.headers.get("content-type", ""), first


@pytest.mark.parametrize(
    "path", ["/api/v1/events/predictions", "/api/v1/events/alerts", "/api/v1/events"]
)
def test_event_streams_start_and_refuse_bad_input(
    path: str, fuzzed_server: tuple[ServerProcess, str]
) -> None:
    server, token = fuzzed_server
    status, content_type, first = _first_bytes(f"{server.url}{path}?model=toy", token)
    assert status == 200 and content_type.startswith("text/event-stream")
    assert first.startswith(b"retry: ")
    # Without a token: refused before any stream opens.
    plain = requests.get(f"{server.url}{path}", timeout=10)
    assert plain.status_code == 401 and plain.json()["error"]


@pytest.mark.parametrize("path", ["/api/v1/events/alerts", "/api/v1/events"])
def test_event_streams_refuse_a_bad_last_event_id(
    path: str, fuzzed_server: tuple[ServerProcess, str]
) -> None:
    server, token = fuzzed_server
    response = requests.get(
        f"{server.url}{path}",
        headers={"Authorization": f"Bearer {token}", "Last-Event-ID": "12x"},
        timeout=10,
    )
    assert response.status_code == 422
    assert response.json()["field"] == "Last-Event-ID"


def test_fuzzed_server_still_answers(fuzzed_server: tuple[ServerProcess, str]) -> None:
    """After the fuzz run the server is alive and serves: nothing it got broke it."""
    server, token = fuzzed_server
    assert server.process.poll() is None, "".join(server.output)
    response = requests.post(
        f"{server.url}/v1/models/toy:predict",
        headers={"Authorization": f"Bearer {token}"},
        json={"instances": [{"amount": 1.0, "count": 1, "country": "DE", "online": True}]},
        timeout=10,
    )
    assert response.status_code == 200, response.text
