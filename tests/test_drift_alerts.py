"""Drift alerts: one alert per model while inputs drift (naming every drifted feature), raised
from the log writer's window counts through the rule engine, never one per feature or window;
resolved by itself once the window is clear."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from backend.monitoring.drift.alerting import DriftAlertWatch, drift_gauges, in_memory
from backend.monitoring.rules import RuleStore
from backend.schemas import AlertRule
from backend.workspace import Workspace
from tests.test_drift_windows import _predict, _traffic, _window, drift_app  # noqa: F401


@pytest.fixture
def watch(store: Workspace) -> Iterator[DriftAlertWatch]:
    yield DriftAlertWatch(store.drift, RuleStore(store.sessions), store.alerts, _Serving())


class _Serving:
    def models_serving(self) -> list[str]:
        return ["toy"]


def _drift_alerts(workspace: Workspace) -> list[str]:
    return [
        f"{a.kind}:{a.status}"
        for a in workspace.alerts.list(statuses=("open", "acknowledged", "resolved"))
        if a.kind.startswith("drift")
    ]


def test_drifted_inputs_raise_one_alert_naming_the_features(
    store: Workspace,
    drift_app: tuple[TestClient, dict[str, str]],  # noqa: F811
    watch: DriftAlertWatch,
) -> None:
    client, headers = drift_app
    _predict(client, headers, _traffic(600, seed=21))
    _window(client, headers, 600)
    outcome = watch.evaluate(["toy"])
    assert not _drift_alerts(store), outcome

    _predict(client, headers, _traffic(1_200, seed=22, drifted=True))
    _window(client, headers, 1_800)
    now = time.time()
    # Held for the rule's two minutes before it is raised; then a persisting condition stays
    # one alert.
    assert "pending" in watch.evaluate(["toy"], now=now)[("toy", "drift_features")]
    for offset in (130, 160, 190):
        watch.evaluate(["toy"], now=now + offset)
    assert _drift_alerts(store) == ["drift_features:open"]
    (alert,) = store.alerts.list(model="toy")
    assert "amount" in alert.details["drifted_features"]
    assert "amount" in alert.title and "inputs drifted" in alert.title
    assert "Drift page" in alert.explanation
    # The switched-off rules raise nothing of their own for the same change.
    assert all(a.kind == "drift_features" for a in store.alerts.list(model="toy"))
    # Prometheus shows the window the rule judged, from memory.
    samples = {
        (family.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in drift_gauges(in_memory(watch))()
        for sample in family.samples
    }
    amount = (("feature", "amount"), ("model", "toy"))
    assert samples[("servedeck_drift_detected", amount)] == 1.0
    assert samples[("servedeck_drift_share", (("model", "toy"),))] > 0


def test_the_alert_resolves_itself_once_the_window_is_clear(
    store: Workspace,
    drift_app: tuple[TestClient, dict[str, str]],  # noqa: F811
    watch: DriftAlertWatch,
) -> None:
    client, headers = drift_app
    # A one-minute window and no hold: what the default quarter-hour does, quickly.
    rule = AlertRule(kind="drift_features", window_s=60, min_count=200, clear_for_s=0, cooldown_s=0)
    RuleStore(store.sessions).replace("toy", [rule], "tests")
    _predict(client, headers, _traffic(600, seed=23, drifted=True))
    _window(client, headers, 600, window_s=60)
    watch.evaluate(["toy"])
    assert _drift_alerts(store) == ["drift_features:open"]
    # Two minutes later the one-minute window holds none of that traffic: nothing shows the
    # condition any more (a window too small to judge counts as clear), so it resolves.
    later = time.time() + 120
    results = [watch.evaluate(["toy"], now=later + i * 40) for i in range(4)]
    assert _drift_alerts(store) == ["drift_features:resolved"], results
