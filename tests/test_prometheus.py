"""GET /metrics: the text format read back with prometheus-client's parser, who may scrape and
what a scoped token sees, several workers summed, the observer's cost, and a real Prometheus
scraping a real server and answering rate() through its HTTP API."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import socket
import subprocess
import time
import timeit
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from backend.api import create_app
from backend.monitoring.prometheus import (
    LATENCY_BUCKETS_S,
    MULTIPROCESS_ENV,
    PrometheusMetrics,
    prepare_multiprocess_dir,
)
from backend.predictions.observers import AnsweredBatch
from backend.workspace import Workspace
from tests.helpers import (
    TOY_ROW,
    ServerProcess,
    ToyDataDir,
    make_settings,
    post_predictions,
    register_toy_models,
    services_required,
    start_server,
)

PRICE_ROW = {"x1": 0.5, "x2": -1.0}
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(text: str) -> Samples:
    """Every sample of a scrape, keyed by (name, sorted labels); the parser fails on bad text."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def models_in(samples: Samples) -> set[str]:
    return {dict(labels)["model"] for _name, labels in samples if "model" in dict(labels)}


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[tuple[TestClient, Workspace]]:
    workspace = Workspace.open(make_settings(tmp_path, database_url))
    register_toy_models(workspace)
    # A refusal counts against its model when the token cache vouches for the caller (the
    # tests' settings turn the cache off).
    workspace.tokens.cache_ttl_s = 60.0
    with TestClient(create_app(workspace=workspace)) as client:
        yield client, workspace
    workspace.close()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_series_in_the_text_format(served: tuple[TestClient, Workspace]) -> None:
    client, workspace = served
    admin = _bearer(workspace.admin_token())
    for _ in range(3):
        answer = client.post(
            "/v1/models/toy:predict", headers=admin, json={"instances": [TOY_ROW, TOY_ROW]}
        )
        assert answer.status_code == 200, answer.text
    answer = client.post("/v1/models/price:predict", headers=admin, json={"instances": [PRICE_ROW]})
    assert answer.status_code == 200, answer.text
    refused = client.post("/v1/models/toy:predict", headers=admin, json={"instances": [{}]})
    assert refused.status_code == 422
    workspace.alerts.raise_once(
        "toy",
        "1",
        "live_metric",
        severity="critical",
        title="toy accuracy low",
        explanation="raised by the test",
        details={},
    )

    response = client.get("/metrics", headers=admin)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=")
    samples = scrape(response.text)
    toy = {"model": "toy", "version": "1", "route": "active"}
    price = {"model": "price", "version": "1", "route": "active"}
    assert value(samples, "servedeck_requests_total", **toy) == 3
    assert value(samples, "servedeck_predictions_total", **toy) == 6
    assert value(samples, "servedeck_requests_total", **price) == 1
    assert value(samples, "servedeck_request_duration_seconds_count", **toy) == 3
    # The buckets are cumulative, in seconds, ending in +Inf with the count.
    buckets = [
        value(samples, "servedeck_request_duration_seconds_bucket", **toy, le=str(edge))
        for edge in LATENCY_BUCKETS_S
    ]
    assert all(b is not None for b in buckets)
    assert buckets == sorted(buckets)  # type: ignore[type-var]
    assert value(samples, "servedeck_request_duration_seconds_bucket", **toy, le="+Inf") == 3
    duration_sum = value(samples, "servedeck_request_duration_seconds_sum", **toy)
    assert duration_sum is not None and 0 < duration_sum < 30
    # Answers per class for the classifier (its two classes), none for the regressor.
    per_class = {
        dict(labels)["predicted_class"]: count
        for (name, labels), count in samples.items()
        if name == "servedeck_predicted_class_total" and dict(labels)["model"] == "toy"
    }
    assert set(per_class) == {"0", "1"} and sum(per_class.values()) == 6
    assert not any(
        name == "servedeck_predicted_class_total" and dict(labels)["model"] == "price"
        for name, labels in samples
    )
    assert (
        value(samples, "servedeck_unanswered_requests_total", model="toy", outcome="refused") == 1
    )
    assert (
        value(samples, "servedeck_active_alerts", model="toy", severity="critical", status="open")
        == 1
    )
    # Never a request id, an entity or a token among the labels.
    label_names = {name for _n, labels in samples for name, _v in labels}
    assert label_names <= {"model", "version", "route", "le", "predicted_class", "outcome"} | {
        "severity",
        "status",
    }


def test_who_may_scrape_and_what_a_scoped_token_sees(
    served: tuple[TestClient, Workspace],
) -> None:
    client, workspace = served
    admin = _bearer(workspace.admin_token())
    for model, row in (("toy", TOY_ROW), ("price", PRICE_ROW)):
        assert client.post(
            f"/v1/models/{model}:predict", headers=admin, json={"instances": [row]}
        ).is_success
        workspace.alerts.raise_once(
            model,
            "1",
            "live_metric",
            severity="warning",
            title=f"{model} alert",
            explanation="raised by the test",
            details={},
        )

    missing = client.get("/metrics")
    assert missing.status_code == 401 and missing.json()["field"] == "authorization"
    assert client.get("/metrics", headers=_bearer("sdk_wrong")).status_code == 401
    client_token = workspace.tokens.create("scraper-client", "client", ["toy"])
    refused = client.get("/metrics", headers=_bearer(client_token))
    assert refused.status_code == 403 and "may not read predictions" in refused.json()["error"]

    everything = scrape(client.get("/metrics", headers=admin).text)
    assert models_in(everything) == {"toy", "price"}
    support = workspace.tokens.create("scraper", "support")
    assert models_in(scrape(client.get("/metrics", headers=_bearer(support)).text)) == {
        "toy",
        "price",
    }
    toy_only = workspace.tokens.create("toy-scraper", "support", ["toy"])
    seen = scrape(client.get("/metrics", headers=_bearer(toy_only)).text)
    assert models_in(seen) == {"toy"}
    assert value(seen, "servedeck_requests_total", model="toy", version="1", route="active") == 1
    assert (
        value(seen, "servedeck_active_alerts", model="toy", severity="warning", status="open") == 1
    )
    # Refusals under no model ("") tell a scoped token nothing of its models: not shown.
    assert all(dict(labels).get("model") == "toy" for _name, labels in seen)


def test_another_gauge_source_joins_with_one_call() -> None:
    """The hook drift scores will use: a function giving metric families, read at each
    scrape, its samples filtered by model like every other series."""
    reads = []

    def per_model_scores() -> list[GaugeMetricFamily]:
        reads.append(time.time())
        gauge = GaugeMetricFamily("servedeck_feature_score", "a per-model score", labels=["model"])
        gauge.add_metric(["toy"], 0.25)
        gauge.add_metric(["price"], 0.5)
        return [gauge]

    metrics = PrometheusMetrics(class_labels=lambda _model, _version: None)
    metrics.gauges.add(per_model_scores)
    assert value(scrape(metrics.render().decode()), "servedeck_feature_score", model="price") == 0.5
    scoped = scrape(metrics.render(frozenset({"toy"})).decode())
    assert scoped == {("servedeck_feature_score", (("model", "toy"),)): 0.25}
    assert len(reads) == 2  # read at each scrape, not once


def _batch(model: str, route: str, rows: int) -> AnsweredBatch:
    return AnsweredBatch(
        request_id="r",
        model=model,
        version="1",
        route=route,
        entity_ids=[None] * rows,
        features=[TOY_ROW] * rows,
        labels=[i % 2 for i in range(rows)],
        probabilities=[[0.4, 0.6]] * rows,
        latency_ms=1.7,
        token_name="bench",
        answered_at=time.time(),
    )


@pytest.mark.serial
def test_the_observer_costs_microseconds_per_batch() -> None:
    """The counters' children are looked up once per (model, version, route): an answered
    batch costs a few increments, against the same increments with ``.labels(...)`` looked up
    each time, measured alongside (a ratio holds on a busy machine, where absolute times do
    not). The absolute bound only catches a gross slip: unloaded it measures ~0.5 µs (counted
    in plain numbers; folded into the series by ``flush``)."""
    metrics = PrometheusMetrics(class_labels=lambda _model, _version: [0, 1])
    one_row = _batch("toy", "active", 1)
    many_rows = _batch("toy", "active", 32)
    metrics.observe(one_row)
    registry = CollectorRegistry()
    names = ("model", "version", "route")
    requests_total = Counter("r_total", "r", names, registry=registry)
    rows_total = Counter("p_total", "p", names, registry=registry)
    duration = Histogram("d_seconds", "d", names, buckets=LATENCY_BUCKETS_S, registry=registry)
    classes = Counter("c_total", "c", (*names, "predicted_class"), registry=registry)

    def looked_up_each_time() -> None:
        requests_total.labels("toy", "1", "active").inc()
        rows_total.labels("toy", "1", "active").inc(1)
        duration.labels("toy", "1", "active").observe(0.0017)
        classes.labels("toy", "1", "active", "0").inc()

    runs = 20_000
    calls = {
        "cached": lambda: metrics.observe(one_row),
        "uncached": looked_up_each_time,
        "big_batch": lambda: metrics.observe(many_rows),
    }
    # Interleaved rounds, the best of each kept: a burst of load elsewhere hits one round of
    # each kind rather than every round of one kind.
    best = dict.fromkeys(calls, float("inf"))
    rounds = 7
    for _round in range(rounds):
        for kind, call in calls.items():
            best[kind] = min(best[kind], timeit.timeit(call, number=runs) / runs)
    cached, uncached, big_batch = best["cached"], best["uncached"], best["big_batch"]
    print(
        f"observer: {cached * 1e6:.2f} µs per 1-row batch, {big_batch * 1e6:.2f} µs per "
        f"32-row batch; with .labels() each time: {uncached * 1e6:.2f} µs"
    )
    assert cached < 0.7 * uncached
    assert cached < 50e-6 and big_batch < 100e-6
    metrics.flush()  # as the scrape route does first
    samples = scrape(metrics.render().decode())
    toy = {"model": "toy", "version": "1", "route": "active"}
    assert value(samples, "servedeck_requests_total", **toy) == 1 + 2 * rounds * runs
    assert value(samples, "servedeck_predictions_total", **toy) == 1 + rounds * runs * (1 + 32)


# ---------------------------------------------------------------------- real processes


@pytest.fixture
def toy_server(
    tmp_path: Path, toy_data_dir: ToyDataDir
) -> Iterator[tuple[ServerProcess, str, str]]:
    """A real server with the toy models; (server, admin token, a support token to scrape
    with: what an operator would give Prometheus, not the admin's)."""
    data_dir = tmp_path / "data"
    admin = toy_data_dir(data_dir)
    workspace = Workspace.open(make_settings(data_dir))
    try:
        scraper = workspace.tokens.create("prometheus", "support")
    finally:
        workspace.close()
    server = start_server(data_dir, env={"SERVEDECK_LOG_FLUSH_INTERVAL": "0.2"})
    yield server, admin, scraper
    server.stop()


def _worker_observes(batches: int) -> None:
    """One serving worker's part. Spawned with the environment ``prepare_multiprocess_dir``
    set, so prometheus-client writes to the shared files from its import on, as in a worker
    the server spawns."""
    from backend.monitoring.prometheus import PrometheusMetrics as WorkerMetrics

    metrics = WorkerMetrics(class_labels=lambda _model, _version: [0, 1])
    for _ in range(batches):
        metrics.observe(_batch("toy", "active", 2))
    metrics.flush()  # as a worker does every second and when it stops
    metrics.record_refusal("toy", "", time.time(), 503)


def test_several_workers_are_summed_whichever_answers(tmp_path: Path) -> None:
    """Each scrape reaches one worker at random: every worker reports all workers' counts
    (multiprocess mode), so the totals do not jump between scrapes. Two spawned processes
    count, as uvicorn's workers do; a third, like the worker that answers a scrape, sums."""
    shared = prepare_multiprocess_dir(tmp_path)
    try:
        context = multiprocessing.get_context("spawn")
        workers = [context.Process(target=_worker_observes, args=(n,)) for n in (30, 12)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=120)
            assert worker.exitcode == 0
    finally:
        os.environ.pop(MULTIPROCESS_ENV, None)
    answering = PrometheusMetrics(class_labels=lambda _m, _v: None, multiprocess_dir=str(shared))
    samples = scrape(answering.render().decode())
    toy = {"model": "toy", "version": "1", "route": "active"}
    assert value(samples, "servedeck_requests_total", **toy) == 42
    assert value(samples, "servedeck_predictions_total", **toy) == 84
    assert value(samples, "servedeck_request_duration_seconds_count", **toy) == 42
    assert value(samples, "servedeck_predicted_class_total", **toy, predicted_class="0") == 42
    failed = value(samples, "servedeck_unanswered_requests_total", model="toy", outcome="failed")
    assert failed == 2
    # A scoped view of the summed series works the same.
    assert models_in(scrape(answering.render(frozenset({"price"})).decode())) == set()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        message = "the prometheus binary is not installed (Debian: apt-get install prometheus)"
        if services_required():
            pytest.fail(message + " (SERVEDECK_REQUIRE_SERVICES=1)")
        pytest.skip(message)
    return found


def _ready(base: str) -> bool:
    """Prometheus's own readiness check: true once its storage is open and it serves queries."""
    try:
        return requests.get(f"{base}/-/ready", timeout=5).status_code == 200
    except requests.ConnectionError:
        return False


def _query(base: str, expression: str) -> list[dict[str, Any]]:
    response = requests.get(f"{base}/api/v1/query", params={"query": expression}, timeout=5)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_a_real_prometheus_scrapes_the_server(
    toy_server: tuple[ServerProcess, str, str], tmp_path: Path
) -> None:
    binary = _prometheus_binary()
    server, admin, token = toy_server
    target = server.url.removeprefix("http://")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n"
        "  scrape_interval: 1s\n"
        "  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: servedeck\n"
        "    metrics_path: /metrics\n"
        "    authorization:\n"
        f"      credentials: {token}\n"
        "    static_configs:\n"
        f"      - targets: ['{target}']\n"
    )
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        rate: list[dict[str, Any]] = []
        up: list[dict[str, Any]] = []
        deadline = time.monotonic() + 90
        # Predictions keep coming while Prometheus scrapes, until it computes a rate.
        while time.monotonic() < deadline and prometheus.poll() is None:
            post_predictions(server.url, admin, 5)
            if not _ready(base):
                continue  # Prometheus is still starting: its query API answers 503 until then
            rate = _query(base, 'sum(rate(servedeck_predictions_total{model="toy"}[30s]))')
            up = _query(base, 'up{job="servedeck"}')
            if rate and float(rate[0]["value"][1]) > 0:
                break
        assert prometheus.poll() is None, prometheus.stderr.read() if prometheus.stderr else ""
        assert rate and float(rate[0]["value"][1]) > 0, rate
        assert up and up[0]["value"][1] == "1", up
        latency = _query(
            base,
            "histogram_quantile(0.99, sum by (le) "
            "(rate(servedeck_request_duration_seconds_bucket[30s])))",
        )
        assert latency and 0 < float(latency[0]["value"][1]) <= 10, latency
    finally:
        prometheus.terminate()
        prometheus.wait(timeout=30)
