"""Live monitoring: the prediction event stream and the live statistics."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient

from backend.monitoring.live_stats import LiveStats
from backend.workspace import Workspace
from tests.helpers import (
    TOY_ROW,
    ServerProcess,
    ToyDataDir,
    post_predictions,
    start_server,
)


@pytest.fixture
def server(tmp_path: Path, toy_data_dir: ToyDataDir) -> Iterator[tuple[ServerProcess, str]]:
    token = toy_data_dir(tmp_path)
    process = start_server(tmp_path)
    yield process, token
    process.stop()


def _read_events(
    url: str, token: str, want: int, last_event_id: str | None = None
) -> tuple[list[dict], str, int]:
    """Events until `want` arrived: (events, the last event id, missed)."""
    import orjson

    headers = {"Authorization": f"Bearer {token}"}
    if last_event_id:
        headers["Last-Event-ID"] = last_event_id
    events: list[dict] = []
    missed = 0
    event_id = ""
    with requests.get(
        f"{url}/api/v1/events/predictions", headers=headers, stream=True, timeout=(5, 20)
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines(decode_unicode=True):
            if line.startswith("id: "):
                event_id = line[4:]
            elif line.startswith("data: "):
                batch = orjson.loads(line[6:])
                events.extend(batch["events"])
                missed += batch["missed"]
                if len(events) >= want:
                    break
    return events, event_id, missed


def test_stream_shows_predictions_and_resumes(server: tuple[ServerProcess, str]) -> None:
    process, token = server
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(_read_events, process.url, token, 3)
        ids = post_predictions(process.url, token, 3, entity="first")
        events, last_id, missed = reading.result(timeout=30)
    assert [e["request_id"] for e in events] == ids and missed == 0
    first = events[0]
    assert first["model"] == "toy" and first["decision"] == "answered"
    assert first["entity_id"] == "first-0" and first["features"] == TOY_ROW
    probabilities = first["outputs"]["predict_proba"]
    assert first["confidence"] == pytest.approx(max(probabilities))
    assert first["top_output"] == first["outputs"]["predict"]

    # Resuming after the last id gets only what came later.
    later = post_predictions(process.url, token, 2, entity="second")
    resumed, _, missed = _read_events(process.url, token, 2, last_event_id=last_id)
    assert [e["request_id"] for e in resumed] == later and missed == 0


def test_a_server_with_an_open_stream_stops_promptly(server: tuple[ServerProcess, str]) -> None:
    process, token = server
    with requests.get(
        f"{process.url}/api/v1/events/predictions",
        headers={"Authorization": f"Bearer {token}"},
        stream=True,
        timeout=(5, 30),
    ) as response:
        assert response.status_code == 200
        started = time.monotonic()
        process.stop()
        assert time.monotonic() - started < 5


def test_stream_needs_a_reading_role(client: TestClient, workspace: Workspace) -> None:
    token = workspace.tokens.create("app", "client", models=["toy"])
    response = client.get(
        "/api/v1/events/predictions", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403


def test_live_series_buckets() -> None:
    start = 1_700_000_000.0
    stats = LiveStats(started_at=start - 2 * 86_400)
    for second in range(3):
        for i in range(10):
            stats.record("fraud", start + second + 0.01 * i, 1.0 + i, [0.55, 0.95])
    stats.record("other", start + 1, 500.0, [None])
    series = stats.series(1, now=start + 3.5, models={"fraud"})
    tail = slice(-3, None)
    assert series.starts[tail] == [start, start + 1, start + 2]
    assert series.requests[tail] == [10, 10, 10]
    assert series.decisions["answered"][tail] == [20, 20, 20]
    # Latencies 1..10 ms: the median is near 5 ms, p99 near 10 ms (histogram resolution).
    assert 4.5 <= series.latency_p50_ms[-1] <= 6.5
    assert 9.5 <= series.latency_p99_ms[-1] <= 12
    assert series.confidence[-1][11] == 10 and series.confidence[-1][19] == 10
    # All models together; only buckets after `since`; the open bucket is never sent.
    both = stats.series(1, since=start, now=start + 3.5)
    assert both.starts == [start + 1, start + 2] and both.requests == [11, 10]
    assert stats.series(60, now=start + 3.5).requests == [0] * 1439
    minute = stats.series(60, now=start + 120)
    assert sum(minute.requests) == 31


def test_live_series_start_with_the_statistics_and_split_by_version() -> None:
    start = 1_700_000_000.0
    stats = LiveStats(started_at=start + 0.5)
    for second in range(3):
        stats.record("fraud", start + second, 2.0, [0.9], version="1")
        stats.record("fraud", start + second, 40.0, [0.6], version="2")
    stats.record_refusal("fraud", "2", start + 1, 422)
    stats.record_refusal("fraud", "", start + 1, 401)
    stats.record_refusal("fraud", "1", start + 2, 503)
    # Nothing was measured before the statistics began: those buckets are not sent as zeros.
    whole = stats.series(1, now=start + 3.5, models={"fraud"})
    assert whole.started_at == start + 0.5
    assert whole.starts == [start, start + 1, start + 2]
    assert whole.requests == [2, 2, 2] and whole.refused == [0, 2, 0] and whole.failed == [0, 0, 1]
    assert stats.series(60, now=start + 600).starts[0] == start // 60 * 60
    # One version's own numbers: its latency, its refusals (a refusal that named no version
    # belongs to none of them).
    first = stats.series(1, now=start + 3.5, models={"fraud"}, version="1")
    second = stats.series(1, now=start + 3.5, models={"fraud"}, version="2")
    assert first.version == "1" and first.requests == [1, 1, 1] and first.failed == [0, 0, 1]
    assert second.refused == [0, 1, 0] and first.refused == [0, 0, 0]
    assert first.latency_p50_ms[-1] is not None and first.latency_p50_ms[-1] < 3
    assert second.latency_p50_ms[-1] is not None and second.latency_p50_ms[-1] > 30
    assert stats.series(1, now=start + 3.5, models={"fraud"}, version="9").requests == [0, 0, 0]


def test_live_series_sum_the_models_asked_for() -> None:
    """A token scoped to several models sees their buckets summed, and no other model's."""
    start = 1_700_000_000.0
    stats = LiveStats(started_at=start)
    for model, count, latency_ms in (("fraud", 2, 1.0), ("churn", 3, 4.0), ("price", 5, 90.0)):
        for _ in range(count):
            stats.record(model, start + 0.5, latency_ms, [0.9])
    both = stats.series(1, now=start + 1.5, models={"fraud", "churn"})
    assert both.model is None and both.requests == [5]
    # The percentiles come from the summed histograms: the slow third model is not in them.
    assert both.latency_p99_ms[0] is not None and both.latency_p99_ms[0] < 10
    assert sum(both.confidence[0]) == 5
    assert stats.series(1, now=start + 1.5, models={"churn"}).model == "churn"
    assert stats.series(1, now=start + 1.5).requests == [10]


def test_live_series_over_http(client: TestClient, admin_headers: dict[str, str]) -> None:
    for _ in range(5):
        assert client.post(
            "/v1/models/toy:predict", headers=admin_headers, json={"instances": [TOY_ROW]}
        ).is_success
    deadline = time.monotonic() + 5
    total = 0
    while total < 5 and time.monotonic() < deadline:  # the current second is still open
        series = client.get(
            "/api/v1/monitor/live", headers=admin_headers, params={"model": "toy"}
        ).json()
        total = sum(series["requests"])
        time.sleep(0.2)
    assert total == 5
    bad = client.get("/api/v1/monitor/live", headers=admin_headers, params={"resolution": 7})
    assert bad.status_code == 422 and "resolution" in bad.json()["field"]
    orphan = client.get("/api/v1/monitor/live", headers=admin_headers, params={"version": "1"})
    assert orphan.status_code == 422 and orphan.json()["field"] == "version"


def test_refused_requests_are_counted_per_model_and_version(
    client: TestClient, admin_headers: dict[str, str], workspace: Workspace
) -> None:
    # A refusal is put on its model when the token cache vouches for the caller (the tests'
    # settings turn the cache off; a server keeps entries 1 s).
    workspace.tokens.cache_ttl_s = 1.0

    def refuse(path: str, body: dict, headers: dict[str, str] = admin_headers) -> None:
        assert client.post(path, headers=headers, json=body).status_code in (400, 401, 404, 422)

    refuse("/v1/models/toy:predict", {"instances": [{"no such feature": 1}]})
    refuse("/v2/models/toy/versions/1/infer", {"inputs": []})
    # Without a valid token nobody may push a model's error rate: counted under no model.
    refuse("/v1/models/toy:predict", {"instances": [TOY_ROW]}, {"Authorization": "Bearer x"})
    refuse("/v1/models/toy:predict", {"instances": [{"no such feature": 1}]}, {})
    for name in ("made-up-1", "made-up-2"):  # unknown names are counted, but not kept as names
        refuse(f"/v1/models/{name}:predict", {"instances": [TOY_ROW]})
    # Refused before any handler runs: a NUL in the URL, a body over the limit.
    nul = client.post("/v1/models/to%00y:predict", headers=admin_headers, json={"instances": []})
    assert nul.status_code == 400 and nul.json()["field"] == "path", nul.text
    limit = workspace.settings.max_request_bytes
    big = client.post(
        "/v2/models/toy/infer", headers=admin_headers, content=b"{" + b" " * limit + b"}"
    )
    assert big.status_code == 413 and big.json()["field"] == "body", big.text

    def refused(**params: str) -> int:
        series = client.get("/api/v1/monitor/live", headers=admin_headers, params=params).json()
        return sum(series["refused"])

    deadline = time.monotonic() + 5
    while refused() < 8 and time.monotonic() < deadline:  # the current second is still open
        time.sleep(0.2)
    assert refused() == 8
    assert refused(model="toy") == 3  # the oversized body, with a token that may predict
    assert refused(model="toy", version="1") == 1
    assert refused(model="made-up-1") == 0


def test_finding_a_request_refuses_ids_no_request_can_have(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    """The console's request-id search: a pasted id with a NUL, a line break or 5,000
    characters is a 4xx naming the field, on SQLite and PostgreSQL alike (a NUL anywhere in
    a URL is a 400 before any route runs)."""
    for bad, status in (("\x00", 400), ("x\ny", 422), ("a" * 5_000, 422)):
        response = client.get(
            "/api/v1/predictions", headers=admin_headers, params={"request_id": bad}
        )
        assert response.status_code == status, response.text
        assert "request_id" in response.json()["field"]
    found = client.get(
        "/api/v1/predictions", headers=admin_headers, params={"request_id": "no-such-id"}
    )
    assert found.status_code == 200 and found.json() == {"predictions": []}
