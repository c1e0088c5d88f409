"""Prometheus metrics: counters fed by the request path, gauges read from the store at scrape.

``PrometheusMetrics`` is an observer of the request path (``AnsweredBatch``) and a recorder of
refused requests (``backend.api.refusals``). It keeps prometheus-client counters and a latency
histogram in a registry of its own (never the process-wide default one: each app, and each
test's app, has its own series) and renders them in the text exposition format
(``generate_latest``) for ``GET /metrics``.

Series (labels few and bounded: model, version, route, predicted class, outcome, severity):

- ``servedeck_requests_total{model,version,route}``: prediction requests answered;
- ``servedeck_predictions_total{model,version,route}``: rows answered (a request may carry many);
- ``servedeck_request_duration_seconds{model,version,route}``: latency histogram, as the
  request path measures it (from the request's arrival to its answer);
- ``servedeck_predicted_class_total{model,version,route,predicted_class}``: answers per class,
  for classifiers only (their classes are bounded by the model's class labels);
- ``servedeck_unanswered_requests_total{model,outcome}``: outcome ``refused`` (4xx) or
  ``failed`` (5xx), counted where the API answers them (model "" when the request named no
  model served here, or carried no token that may predict with it);
- ``servedeck_active_alerts{model,severity,status}``: read from the store at each scrape.

Route ``shadow`` is a candidate scored unseen beside the active version: it is not traffic.

Speed: prometheus-client's ``.labels(...)`` costs several microseconds, so the children of each
(model, version, route) are looked up once and kept (``_Series``); an answered batch is counted
in plain numbers there, folded into the series before each scrape and every second
(``flush``), so a request costs a few plain increments (``tests/test_prometheus.py``).

Several uvicorn workers (``servedeck-server serve --workers N``): they share one listening
socket, so each scrape reaches one worker at random. Series per worker would make every
counter jump between workers' values from one scrape to the next (``rate()`` would read
resets), so the server runs prometheus-client's multiprocess mode instead: before starting
the workers it points ``PROMETHEUS_MULTIPROC_DIR`` at an emptied directory in the data
directory (``prepare_multiprocess_dir``); every worker's counters go to memory-mapped files
there, and whichever worker answers the scrape sums all of them (``MultiProcessCollector``).
A worker that is restarted keeps its predecessor's counts (its files stay), so totals never
go backwards while the server runs. The gauges read from the store are the same from any
worker and are not kept in files.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    Metric,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from backend.monitoring.alerts import AlertService
from backend.predictions.observers import AnsweredBatch

log = logging.getLogger(__name__)

MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Serving latencies here run from ~0.1 ms (one row, alone) to seconds (a large batch, a slow
# model, a queue): prometheus-client's default buckets start at 5 ms and would put nearly every
# request in the first one.
LATENCY_BUCKETS_S = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
# How often counts are folded into the series between scrapes (a scrape folds its own
# worker's first): what another worker's files may lag behind, at most.
FLUSH_EVERY_S = 1.0
# A classifier with more classes than this gets no per-class series: one series per class
# would make a scrape (and Prometheus' storage) grow with the model, not with the traffic.
MAX_CLASSES_COUNTED = 50
# Active alerts are one per (model, version, kind) at a time (AlertService.raise_once), so this
# is far beyond any real number; it only bounds a scrape's read of the store.
MAX_ALERTS_READ = 10_000

# A model's class labels, or None for a regressor (asked once per model, version and route).
ClassLabels = Callable[[str, str], Sequence[Any] | None]
# A source of gauges read at scrape time. Each sample must carry a ``model`` label: a token
# scoped to some models sees only their samples, and a sample without a model label is shown
# to unscoped tokens only.
GaugeSource = Callable[[], Iterable[Metric]]


class _Series:
    """The counters' children of one (model, version, route), looked up once, and what was
    counted since the last ``flush`` in plain numbers."""

    __slots__ = (
        "bucket_counts",
        "class_counts",
        "classes",
        "duration",
        "duration_sum",
        "predictions",
        "requests",
        "rows",
        "served",
    )

    def __init__(
        self,
        requests: Any,
        predictions: Any,
        duration: Any,
        classes: dict[Any, Any] | None,
    ):
        self.requests = requests
        self.predictions = predictions
        self.duration = duration
        self.classes = classes
        self._clear()

    def _clear(self) -> None:
        self.served = 0
        self.rows = 0
        self.duration_sum = 0.0
        # One count per latency bucket, +Inf last (not cumulative: the histogram sums them).
        self.bucket_counts = [0] * (len(LATENCY_BUCKETS_S) + 1)
        self.class_counts: dict[Any, int] = {}

    def flush(self) -> None:
        if not self.served:
            return
        served, rows, duration_sum = self.served, self.rows, self.duration_sum
        bucket_counts, class_counts = self.bucket_counts, self.class_counts
        # Taken out first: a failure below loses these counts rather than adding them twice.
        self._clear()
        self.requests.inc(served)
        self.predictions.inc(rows)
        # prometheus-client 0.26 (pinned) has no call that adds many observations at once;
        # its Histogram child keeps one value per bucket (``_buckets``, non-cumulative, like
        # ours) and ``_sum``, which is what ``observe`` increments one at a time.
        # tests/test_prometheus.py reads the scrape back to keep this honest.
        self.duration._sum.inc(duration_sum)
        for child, count in zip(self.duration._buckets, bucket_counts, strict=True):
            if count:
                child.inc(count)
        if self.classes is not None:
            for label, count in class_counts.items():
                child = self.classes.get(label)
                # A classifier answers only its own classes; anything else is not counted, so
                # the series stay bounded by the class list whatever happens.
                if child is not None:
                    child.inc(count)


class StoreGauges(Collector):
    """Gauges computed at scrape time from whatever sources were added (open alerts first;
    drift scores are meant to join as another source through ``add``)."""

    def __init__(self) -> None:
        self._sources: list[GaugeSource] = []

    def add(self, source: GaugeSource) -> None:
        self._sources.append(source)

    def collect(self) -> Iterable[Metric]:
        for source in self._sources:
            yield from source()


def active_alerts_source(alerts: AlertService) -> GaugeSource:
    """``servedeck_active_alerts{model,severity,status}``, read from the store at each scrape."""

    def collect() -> Iterable[Metric]:
        gauge = GaugeMetricFamily(
            "servedeck_active_alerts",
            "Alerts still active, per model and severity. status=open: nobody has taken it "
            "yet, look at it on the Alerts page; status=acknowledged: someone owns it.",
            labels=["model", "severity", "status"],
        )
        counts: dict[tuple[str, str, str], int] = {}
        for alert in alerts.list(statuses=["open", "acknowledged"], limit=MAX_ALERTS_READ):
            key = (alert.model, alert.severity, alert.status)
            counts[key] = counts.get(key, 0) + 1
        for labels, count in sorted(counts.items()):
            gauge.add_metric(list(labels), count)
        yield gauge

    return collect


class PrometheusMetrics:
    def __init__(self, class_labels: ClassLabels, multiprocess_dir: str | None = None):
        """``multiprocess_dir``: the directory of the workers' shared counters (default: the
        environment's ``PROMETHEUS_MULTIPROC_DIR``, set by the server for several workers)."""
        self._class_labels = class_labels
        multiprocess_dir = multiprocess_dir or os.environ.get(MULTIPROCESS_ENV)
        self.registry = CollectorRegistry()
        if multiprocess_dir:
            # The counters write to the shared files (prometheus-client decides that from the
            # environment when it is imported); the registry reads every worker's files.
            multiprocess.MultiProcessCollector(self.registry, path=multiprocess_dir)
            counters_registry: CollectorRegistry | None = None
        else:
            counters_registry = self.registry
        labels = ("model", "version", "route")
        self._requests = Counter(
            "servedeck_requests_total",
            "Prediction requests answered, per model, version and route (route=shadow: a "
            "candidate scored unseen, not traffic).",
            labels,
            registry=counters_registry,
        )
        self._predictions = Counter(
            "servedeck_predictions_total",
            "Rows answered (one request may carry several), per model, version and route.",
            labels,
            registry=counters_registry,
        )
        self._duration = Histogram(
            "servedeck_request_duration_seconds",
            "Time from a prediction request's arrival to its answer, in seconds.",
            labels,
            buckets=LATENCY_BUCKETS_S,
            registry=counters_registry,
        )
        self._classes = Counter(
            "servedeck_predicted_class_total",
            "Answers per predicted class (classifiers only): a class whose share moves "
            "without a reason in the world means the model or its inputs changed.",
            (*labels, "predicted_class"),
            registry=counters_registry,
        )
        self._unanswered = Counter(
            "servedeck_unanswered_requests_total",
            "Prediction requests not answered: outcome=refused is a 4xx (the request was "
            "refused: bad input, no token, unknown model), outcome=failed is a 5xx (the "
            "server failed; look at its log). model is empty when the request named no model "
            "served here or carried no token that may predict with it.",
            ("model", "outcome"),
            registry=counters_registry,
        )
        self.gauges = StoreGauges()
        self.registry.register(self.gauges)
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._refusals: dict[tuple[str, str], Any] = {}

    # ------------------------------------------------------------------ the request path

    def observe(self, batch: AnsweredBatch) -> None:
        """The observer seam: one answered request (called on the event loop). Counted in
        plain numbers, folded into the prometheus-client series by ``flush``: their
        ``inc``/``observe`` take a lock each and cost ~2.5 µs a request, this ~0.5 µs."""
        key = (batch.model, batch.version, batch.route)
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)
        series.served += 1
        series.rows += len(batch.features)
        seconds = batch.latency_ms / 1000.0
        series.duration_sum += seconds
        # The first bucket whose bound is at or above the value, as Histogram.observe picks.
        series.bucket_counts[bisect_left(LATENCY_BUCKETS_S, seconds)] += 1
        if series.classes is None:
            return
        counts = series.class_counts
        for label in batch.labels:
            counts[label] = counts.get(label, 0) + 1

    def flush(self) -> None:
        """Fold what was counted into the series: before each scrape, and every
        ``FLUSH_EVERY_S`` for the workers a scrape does not reach (multiprocess mode). Call it
        on the event loop, where ``observe`` runs: the two never interleave."""
        for series in self._series.values():
            series.flush()

    async def flush_every(self, interval_s: float = FLUSH_EVERY_S) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                self.flush()
            except Exception:  # never the end of the task: the next round tries again
                log.exception("Prometheus counts could not be folded in")

    def _new_series(self, key: tuple[str, str, str]) -> _Series:
        class_labels = self._class_labels(key[0], key[1])
        classes = None
        if class_labels is not None and len(class_labels) <= MAX_CLASSES_COUNTED:
            classes = {label: self._classes.labels(*key, str(label)) for label in class_labels}
        series = _Series(
            self._requests.labels(*key),
            self._predictions.labels(*key),
            self._duration.labels(*key),
            classes,
        )
        self._series[key] = series
        return series

    def record_refusal(self, model: str, version: str, now: float, status: int) -> None:
        """A prediction request the API refused (4xx) or failed (5xx); the names are bounded
        by the caller (``RefusalCounter``): unknown ones arrive as ""."""
        outcome = "failed" if status >= 500 else "refused"
        child = self._refusals.get((model, outcome))
        if child is None:
            child = self._refusals[(model, outcome)] = self._unanswered.labels(model, outcome)
        child.inc()

    # ------------------------------------------------------------------ the scrape

    def render(self, models: frozenset[str] | None = None) -> bytes:
        """The text exposition format: every series (``models`` None), or only the samples of
        these models. Reads the store (the gauges): call it off the event loop."""
        if models is None:
            return generate_latest(self.registry)
        return generate_latest(_OnlyModels(self.registry, models))


class _OnlyModels:
    """A view of a registry that keeps the samples whose ``model`` label is one of ``models``
    (generate_latest reads anything with ``collect``). A family keeps its HELP and TYPE even
    when none of its samples is left: that says nothing about any model."""

    def __init__(self, registry: CollectorRegistry, models: frozenset[str]):
        self._registry = registry
        self._models = models

    def collect(self) -> Iterable[Metric]:
        for family in self._registry.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [s for s in family.samples if s.labels.get("model") in self._models]
            yield kept


def prepare_multiprocess_dir(data_dir: Path) -> Path:
    """An emptied directory for the workers' shared counters, named in the environment the
    workers inherit. Emptied because the files of a previous run would add its counts to this
    one's (Prometheus sees a restart as a counter reset, which ``rate()`` handles)."""
    path = data_dir / "prometheus-multiprocess"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, mode=0o700)
    os.environ[MULTIPROCESS_ENV] = str(path)
    return path
