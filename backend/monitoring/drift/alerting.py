"""The drift alert rules: a window of each serving model's traffic judged against its reference,
handed to the rule engine (grouping, ``for_s``, cooldown, resolution by itself).

By default one rule is on: ``drift_features``, one alert per model while any input feature
drifts, naming every drifted feature and saying whether the model's outputs moved too; never
one alert per feature or per window. ``drift_dataset`` (critical: most inputs moved) and
``drift_prediction`` (the model's outputs moved) can be switched on per model.

The windows are read from the store, shared by every worker: each worker judges the same
numbers, and the alerts' unique index lets one alert in. Judged every ``EVALUATE_EVERY_S`` in a
thread (a report is milliseconds of numpy; the read a few queries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from backend.monitoring.alerts import AlertService
from backend.monitoring.drift.gauge_file import ModelDriftGauges, gauges_of
from backend.monitoring.drift.windows import DriftWindows
from backend.monitoring.evaluator import ModelsServing
from backend.monitoring.rule_watch import StoredRuleWatch
from backend.monitoring.rules import Measurement, RuleStore
from backend.schemas import AlertKind, AlertRule, DriftReport, WindowDrift

DRIFT_KINDS: tuple[AlertKind, ...] = ("drift_features", "drift_dataset", "drift_prediction")
EVALUATE_EVERY_S = 30.0

ADVICE: dict[AlertKind, str] = {
    "drift_features": (
        "Live inputs no longer look like the data the model was trained on, so its answers "
        "may be less reliable than its tests showed. Open the Drift page to see which features "
        "moved and how; check the data source (a changed unit, a new category, a broken "
        "pipeline) before anything else; if the change is real and lasting, retrain on recent "
        "data."
    ),
    "drift_dataset": (
        "Most of the model's inputs changed at once: the world it answers for is not the one it "
        "learned. Check the Drift page and the upstream data first; expect its quality to drop "
        "and plan a retraining if the change is real."
    ),
    "drift_prediction": (
        "The model's answers are spread differently from what it gave on its reference data "
        "(another class mix or confidence). Either its inputs moved (see the Drift page) or the "
        "world did; watch its realized and estimated quality on the Performance page."
    ),
}


def _names(entries: Iterable[str]) -> str:
    listed = list(entries)
    shown = ", ".join(listed[:4])
    return shown + (f" and {len(listed) - 4} more" if len(listed) > 4 else "")


def measure(kind: AlertKind, rule: AlertRule, window: WindowDrift) -> Measurement:
    """A drift rule's finding in one window (not judged: fewer rows than the rule needs)."""
    report: DriftReport | None = window.report
    if report is None or window.rows < rule.min_count:
        return Measurement(None, False, window.rows, window.note or "too few rows", {})
    drifted = [f.name for f in report.features if f.drifted]
    outputs = [f.name for f in report.predictions if f.drifted]
    details = {
        "window_s": window.window_s,
        "rows": window.rows,
        "reference_version": window.reference_version,
        "drifted_features": drifted,
        "drifted_share": round(report.drifted_share, 4),
        "dataset_drift": report.dataset_drift,
        "drifted_outputs": outputs,
        "scores": {f.name: round(f.statistic, 4) for f in report.features if f.drifted},
    }
    minutes = max(1, round(window.window_s / 60))
    if kind == "drift_features":
        needed = rule.threshold or 0.0
        bad = bool(drifted) and report.drifted_share >= needed
        outputs_too = " (its answers moved too)" if outputs else ""
        text = (
            f"{len(drifted)} of {report.tested_features} inputs drifted in the last {minutes} "
            f"min: {_names(drifted)}{outputs_too}"
            if drifted
            else "no input drifted"
        )
        return Measurement(report.drifted_share, bad, window.rows, text, details)
    if kind == "drift_dataset":
        needed = rule.threshold or report.dataset_share_threshold
        bad = report.drifted_share >= needed
        text = (
            f"{report.drifted_share:.0%} of the inputs drifted in the last {minutes} min "
            f"({_names(drifted)})"
        )
        return Measurement(report.drifted_share, bad, window.rows, text, details)
    text = (
        f"the model's answers drifted in the last {minutes} min: {_names(outputs)}"
        if outputs
        else "the model's answers did not drift"
    )
    return Measurement(float(len(outputs)), bool(outputs), window.rows, text, details)


class DriftAlertWatch(StoredRuleWatch):
    kinds = frozenset(DRIFT_KINDS)
    what = "the drift alert rules"

    def __init__(
        self,
        drift: DriftWindows,
        rules: RuleStore,
        alerts: AlertService,
        serving: ModelsServing,
        interval_s: float = EVALUATE_EVERY_S,
    ):
        super().__init__(rules, alerts, serving, interval_s)
        self.drift = drift
        # The newest window judged per model (what Prometheus's drift gauges show).
        self.latest: dict[str, WindowDrift] = {}
        # One model's windows by width, read once for all its rules of that width.
        self._windows: dict[int, WindowDrift] = {}
        # The drift_features windows this round read (the next ``latest``).
        self._judged: dict[str, WindowDrift] = {}

    def evaluate(
        self, models: Iterable[str], now: float | None = None
    ) -> dict[tuple[str, AlertKind], str]:
        self._judged = {}
        outcomes = super().evaluate(models, now)
        # Replaced whole (a scrape may be reading it): a model no longer serving, deleted, or
        # whose drift_features rule is off keeps no gauge, as nothing judges its windows now.
        self.latest = self._judged
        return outcomes

    def start_model(self, model: str) -> None:
        self._windows = {}

    def measure(self, model: str, rule: AlertRule, now: float) -> Measurement:
        window = self._windows.get(rule.window_s)
        if window is None:
            window = self._windows[rule.window_s] = self.drift.window(
                model, None, version=None, route=None, window_s=rule.window_s, end=now
            )
            if rule.kind == "drift_features":
                self._judged[model] = window
        return measure(rule.kind, rule, window)

    def advice(self, kind: AlertKind) -> str:
        return ADVICE[kind]


def drift_gauges(
    latest: Callable[[], Mapping[str, ModelDriftGauges]],
) -> Callable[[], Iterable[Metric]]:
    """Prometheus gauges of the newest window the drift rules judged per model (every
    ``EVALUATE_EVERY_S``): each input's and output's score and verdict, and the share of drifted
    inputs. ``latest``: the watch's own (``in_memory``) or another process's (``DriftGaugeFile``);
    either way a scrape computes nothing."""

    def collect() -> Iterable[Metric]:
        score = GaugeMetricFamily(
            "servedeck_drift_score",
            "Drift of a model's input or output over the drift rule's window against its "
            "reference: the test's statistic (KS, Jensen-Shannon, ...); compare with "
            "servedeck_drift_threshold, and see the Drift page for what it means.",
            labels=["model", "feature", "test"],
        )
        threshold = GaugeMetricFamily(
            "servedeck_drift_threshold",
            "The score at which the feature counts as drifted (its test's threshold).",
            labels=["model", "feature", "test"],
        )
        drifted = GaugeMetricFamily(
            "servedeck_drift_detected",
            "1 when the feature drifted in the newest judged window, else 0.",
            labels=["model", "feature"],
        )
        share = GaugeMetricFamily(
            "servedeck_drift_share",
            "The share of a model's inputs that drifted in the newest judged window.",
            labels=["model"],
        )
        for model, gauges in sorted(latest().items()):
            share.add_metric([model], gauges.drifted_share)
            for name, test, statistic, bound, is_drifted in gauges.entries:
                score.add_metric([model, name, test], statistic)
                threshold.add_metric([model, name, test], bound)
                drifted.add_metric([model, name], 1.0 if is_drifted else 0.0)
        yield from (score, threshold, drifted, share)

    return collect


def in_memory(watch: DriftAlertWatch) -> Callable[[], Mapping[str, ModelDriftGauges]]:
    """The gauges of a watch running in this process."""
    return lambda: gauges_of(watch.latest)
