"""Realized performance per window: metrics as scikit-learn computes them on the same data,
the label delay, the log reads behind them, and the API (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sklearn import metrics as skm

from backend.db.tables import LabelRow, PredictionRow
from backend.monitoring import performance as perf
from backend.monitoring.performance import (
    CalibrationCache,
    label_delay,
    performance_report,
    realized_metrics,
    window_bounds,
)
from backend.predictions.reads import version_window
from backend.workspace import Workspace
from tests.helpers import TOY_ROW

PRICE_ROW = {"x1": 0.5, "x2": -1.0}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def values(metrics: list[Any]) -> dict[str, float | None]:
    return {
        (m["metric"] if isinstance(m, dict) else m.metric): (
            m["value"] if isinstance(m, dict) else m.value
        )
        for m in metrics
    }


# ---------------------------------------------------------------- metrics, delay, windows


def test_classifier_metrics_are_scikit_learns_on_the_same_data() -> None:
    rng = np.random.default_rng(1)
    positive = rng.random(400)
    truth = (rng.random(400) < positive).astype(int).tolist()
    answers = (positive > 0.5).astype(int).tolist()
    labelled = [
        ({"predict": a, "predict_proba": [1 - p, p]}, t)
        for a, p, t in zip(answers, positive.tolist(), truth, strict=True)
    ]
    got = values(realized_metrics(labelled, "classification", "balanced_accuracy", [0, 1], 50))
    probabilities = np.column_stack([1 - positive, positive])
    expected = {
        "accuracy": skm.accuracy_score(truth, answers),
        "precision": skm.precision_score(truth, answers),
        "recall": skm.recall_score(truth, answers),
        "f1": skm.f1_score(truth, answers),
        "roc_auc": skm.roc_auc_score(truth, positive),
        "log_loss": skm.log_loss(truth, probabilities),
        "balanced_accuracy": skm.balanced_accuracy_score(truth, answers),
    }
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_regressor_metrics_are_scikit_learns_on_the_same_data() -> None:
    rng = np.random.default_rng(2)
    truth = rng.normal(3.0, 1.0, 300)
    answers = truth + rng.normal(0.0, 0.4, 300)
    labelled = [({"predict": a}, t) for a, t in zip(answers.tolist(), truth.tolist(), strict=True)]
    got = values(realized_metrics(labelled, "regression", "mae", None, 50))
    assert got == pytest.approx(
        {
            "mae": skm.mean_absolute_error(truth, answers),
            "rmse": skm.root_mean_squared_error(truth, answers),
            "r2": skm.r2_score(truth, answers),
        },
        abs=1e-12,
    )


def test_too_few_or_one_class_labels_give_no_value_and_say_why() -> None:
    labelled = [({"predict": 1, "predict_proba": [0.2, 0.8]}, 1)] * 10
    few = realized_metrics(labelled, "classification", "accuracy", [0, 1], 50)
    assert all(
        m.value is None and m.reason == "10 labelled predictions of the 50 needed" for m in few
    )
    none = realized_metrics([], "classification", "accuracy", [0, 1], 50)
    assert all(m.reason == "no labels for this window yet" for m in none)
    enough = {
        m.metric: m for m in realized_metrics(labelled, "classification", "roc_auc", [0, 1], 5)
    }
    assert enough["accuracy"].value == 1.0
    # ROC AUC is undefined with one class among the labels: null, with scikit-learn's reason.
    assert enough["roc_auc"].value is None and "two classes" in (enough["roc_auc"].reason or "")


def test_label_delay_counts_share_median_and_p90() -> None:
    made = np.arange(10, dtype=float) * 100.0
    delays = np.array([5, 10, 20, 30, 60, 120, 300, 600, 1200, 3600], dtype=float)
    delay = label_delay(40, list(zip(made.tolist(), (made + delays).tolist(), strict=True)))
    assert delay.labelled == 10 and delay.share == 0.25
    assert delay.median_s == pytest.approx(float(np.percentile(delays, 50)))
    assert delay.p90_s == pytest.approx(float(np.percentile(delays, 90)))
    assert "10 of 40 predictions (25%) have labels" in delay.explanation
    # A label sent before its prediction was logged: no delay, never a negative one.
    early = label_delay(1, [(100.0, 99.0)])
    assert early.median_s == 0.0 and early.p90_s == 0.0
    nothing = label_delay(7, [])
    assert nothing.labelled == 0 and nothing.share == 0.0 and nothing.median_s is None
    assert "None of the 7 predictions" in nothing.explanation
    assert label_delay(0, []).share is None


def test_windows_are_aligned_and_end_with_the_one_holding_the_time() -> None:
    assert window_bounds(7_250.0, 3_600, 3) == [(0.0, 3600.0), (3600.0, 7200.0), (7200.0, 10800.0)]
    assert window_bounds(7_200.0, 3_600, 1) == [(7200.0, 10800.0)]


# ---------------------------------------------------------------- reads of the log


def insert_window(
    workspace: Workspace,
    start: float,
    answers: list[tuple[int, float]],
    labels: dict[int, tuple[int, float]],
    *,
    version: str = "1",
    prefix: str = "r",
) -> None:
    """Toy predictions at ``start + i`` ((answer, fraud probability) each) and labels for
    some of them ({i: (label, seconds after the prediction)})."""
    with workspace.sessions.begin() as session:
        for i, (answer, p) in enumerate(answers):
            session.add(
                PredictionRow(
                    request_id=f"{prefix}{i}",
                    row_index=0,
                    created_at=start + i,
                    model="toy",
                    version=version,
                    route="active",
                    entity_id=None,
                    features=TOY_ROW,
                    outputs={"predict": answer, "predict_proba": [1 - p, p]},
                    latency_ms=1.0,
                    token_name="test",
                )
            )
        for i, (label, after) in labels.items():
            session.add(
                LabelRow(
                    model="toy",
                    request_id=f"{prefix}{i}",
                    row_index=0,
                    label=label,
                    received_at=start + i + after,
                    source="test",
                )
            )


def test_a_report_reads_its_windows_from_the_store(workspace: Workspace) -> None:
    hour = 3_600.0
    start = 1_750_000_000.0 - 1_750_000_000.0 % hour
    rng = np.random.default_rng(3)
    p = rng.random(80)
    answers = [(int(v > 0.5), float(v)) for v in p]
    truth = (rng.random(80) < p).astype(int)
    # 60 of 80 labelled, each i * 10 s after its prediction; one more in the hour before.
    labels = {i: (int(truth[i]), 10.0 * i) for i in range(60)}
    insert_window(workspace, start, answers, labels)
    insert_window(workspace, start - hour, [(0, 0.1)], {0: (0, 5.0)}, prefix="early")
    # Another version's answers in the same hour are not this version's.
    insert_window(workspace, start, [(1, 0.9)] * 5, {}, version="2", prefix="v2-")
    info = workspace.registry.get_version("toy", "1")
    report = performance_report(
        workspace.sessions,
        workspace.registry,
        CalibrationCache(),
        "toy",
        info,
        window_s=3600,
        windows=2,
        end=start + 100,
        min_labels=30,
    )
    earlier, window = report.windows
    assert (earlier.predictions, earlier.label_delay.labelled) == (1, 1)
    assert window.start.timestamp() == start and window.end.timestamp() == start + hour
    assert (window.predictions, window.read, window.label_delay.labelled) == (80, 80, 60)
    assert window.label_delay.share == 0.75
    delays = 10.0 * np.arange(60)
    assert window.label_delay.median_s == pytest.approx(float(np.median(delays)))
    assert window.label_delay.p90_s == pytest.approx(float(np.percentile(delays, 90)))
    got = values(window.realized)
    labelled_answers = [a for a, _ in answers[:60]]
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth[:60], labelled_answers))
    assert got["roc_auc"] == pytest.approx(skm.roc_auc_score(truth[:60], p[:60]))
    # The verdict is the version's validity metric (accuracy) against its range, measured.
    assert window.verdict.source == "realized" and window.verdict.metric == "accuracy"
    assert window.verdict.value == pytest.approx(got["accuracy"])
    assert window.verdict.in_range == (0.7 <= got["accuracy"] <= 1.0)  # type: ignore[operator]
    # 80 predictions: estimated, but flagged as too few to trust.
    assert window.estimated.supported and not window.estimated.trusted
    assert any("Only 80 predictions" in w for w in window.estimated.warnings)
    assert earlier.verdict.in_range is None and "Not judged yet" in earlier.verdict.explanation
    assert report.calibration is not None and report.calibration.reference_rows == 100


@pytest.mark.parametrize(
    ("limit", "value", "windows"),
    [("MAX_ROWS_PER_WINDOW", 10, 1), ("MAX_ROWS_PER_REPORT", 20, 2)],
    ids=["window-limit", "report-budget"],
)
def test_a_window_larger_than_one_read_is_counted_exactly(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch, limit: str, value: int, windows: int
) -> None:
    # 10 rows per read: one window's own limit, or a report's budget shared by two windows.
    monkeypatch.setattr(perf, limit, value)
    start = 1_750_003_600.0
    answers = [(i % 2, 0.8 if i % 2 else 0.2) for i in range(30)]
    insert_window(workspace, start, answers, {i: (i % 2, 1.0) for i in range(0, 30, 2)})
    info = workspace.registry.get_version("toy", "1")
    report = performance_report(
        workspace.sessions, workspace.registry, CalibrationCache(), "toy", info,
        window_s=3600, windows=windows, end=start, min_labels=5,
    )  # fmt: skip
    window = report.windows[-1]
    # Counted exactly; the metrics and the delay come from the first rows read.
    assert (window.predictions, window.read, window.label_delay.labelled) == (30, 10, 15)
    assert window.label_delay.share == 0.5
    assert window.label_delay.median_s == 1.0
    assert "Measured on 10 labelled predictions" in window.verdict.explanation


def test_the_window_read_follows_the_indexes(sqlite_workspace: Workspace) -> None:
    """The read costs the window, not the log: SQLite walks (model, created_at) and finds
    each label by its unique (model, request_id, row_index) index."""
    captured: list[tuple[str, Any]] = []
    engine = sqlite_workspace.engine
    from sqlalchemy import event

    def capture(_conn, _cursor, statement, _parameters, _context, _many) -> None:  # type: ignore[no-untyped-def]
        if "FROM predictions" in statement and "labels" in statement:
            captured.append((statement, _parameters))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        version_window(sqlite_workspace.sessions, "toy", "1", 0.0, 10.0, 5)
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    ((statement, parameters),) = captured
    with engine.connect() as connection:
        plan = " | ".join(
            str(row[-1])
            for row in connection.exec_driver_sql(
                f"EXPLAIN QUERY PLAN {statement}", tuple(parameters)
            )
        )
    assert "ix_predictions_model_time" in plan, plan
    assert "sqlite_autoindex_labels" in plan or "uq_label_model_prediction" in plan, plan
    assert "SCAN predictions" not in plan and "SCAN labels" not in plan, plan


# ---------------------------------------------------------------- the API


def toy_rows(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(4)
    return [
        {
            **TOY_ROW,
            "amount": float(rng.gamma(2.0, 200.0)),
            "count": int(rng.integers(0, 20)),
            "country": str(rng.choice(["DE", "FR", "US"])),
            "online": bool(rng.random() < 0.4),
        }
        for _ in range(n)
    ]


def test_the_api_reports_realized_and_estimated_performance(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    before = time.time()
    rows = toy_rows(40)
    answer = client.post(
        "/v1/models/toy:predict", headers=admin_headers, json={"instances": rows, "id": "perf-1"}
    )
    assert answer.status_code == 200, answer.text
    predictions = answer.json()["predictions"]
    price = client.post(
        "/v1/models/price:predict", headers=admin_headers,
        json={"instances": [PRICE_ROW] * 12, "id": "perf-price"},
    )  # fmt: skip
    assert price.status_code == 200, price.text
    client.app.state.serving.prediction_log.flush(10)  # type: ignore[attr-defined]
    truth = [int(r["amount"] > 350 or r["online"]) for r in rows]
    labelled = 30
    feedback = client.post(
        "/api/v1/feedback",
        headers=admin_headers,
        json={
            "labels": [
                {"request_id": "perf-1", "row": i, "label": truth[i], "model": "toy"}
                for i in range(labelled)
            ]
            + [
                {"request_id": "perf-price", "row": i, "label": 2.0 + i / 10, "model": "price"}
                for i in range(12)
            ]
        },
    )
    assert feedback.status_code == 200 and feedback.json()["unmatched"] == 0, feedback.text
    after = time.time()

    page = client.get(
        "/api/v1/models/toy/performance",
        headers=admin_headers,
        params={"window_s": 86_400, "windows": 2, "min_labels": 10},
    )
    assert page.status_code == 200, page.text
    report = page.json()
    assert (report["model"], report["version"], report["task"]) == ("toy", "1", "classification")
    assert report["metric"] == "accuracy" and report["acceptable_range"] == [0.7, 1.0]
    assert report["calibration"]["reference_rows"] == 100
    assert report["calibration"]["method"] in ("isotonic", "none")
    assert "confidence set of version 1" in report["calibration"]["reference"]
    window = report["windows"][-1]
    assert window["partial"] and window["predictions"] == 40
    delay = window["label_delay"]
    assert delay["labelled"] == labelled and delay["share"] == pytest.approx(labelled / 40)
    assert 0.0 <= delay["median_s"] <= delay["p90_s"] <= after - before
    served = [p["prediction"] for p in predictions[:labelled]]
    got = values(window["realized"])
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(truth[:labelled], served))
    assert got["f1"] == pytest.approx(skm.f1_score(truth[:labelled], served, zero_division=0))
    estimated = window["estimated"]
    assert estimated["supported"] and not estimated["trusted"]
    assert any("Only 40 predictions" in w for w in estimated["warnings"])
    assert "cannot be trusted here" in estimated["explanation"]
    assert values(estimated["metrics"])["accuracy"] is not None
    assert next(m for m in estimated["metrics"] if m["metric"] == "log_loss")["reason"]
    verdict = window["verdict"]
    assert verdict["source"] == "realized" and verdict["value"] == pytest.approx(got["accuracy"])
    assert "Measured on 30 labelled predictions" in verdict["explanation"]
    # Too few labels for the default: not measured, and the estimate is not trusted.
    unjudged = client.get(
        "/api/v1/models/toy/performance", headers=admin_headers, params={"windows": 1}
    ).json()["windows"][0]
    assert unjudged["verdict"]["in_range"] is None
    assert "30 labelled predictions of the 50 needed" in unjudged["verdict"]["explanation"]

    regression = client.get(
        "/api/v1/models/price/performance",
        headers=admin_headers,
        params={"version": "1", "windows": 1, "min_labels": 5},
    ).json()
    assert regression["calibration"] is None
    (window,) = regression["windows"]
    assert window["estimated"]["supported"] is False
    assert "need the true values" in window["estimated"]["explanation"]
    assert [m["metric"] for m in window["estimated"]["metrics"]] == ["mae", "rmse", "r2"]
    assert all(m["value"] is None and m["reason"] for m in window["estimated"]["metrics"])
    # The price model answers 12 times the same row; labels 2.0 ... 3.1.
    served_price = client.get(
        "/api/v1/predictions", headers=admin_headers, params={"request_id": "perf-price"}
    ).json()["predictions"]
    answered = [p["outputs"]["predict"] for p in sorted(served_price, key=lambda p: p["row"])]
    expected_labels = [2.0 + i / 10 for i in range(12)]
    assert values(window["realized"])["mae"] == pytest.approx(
        skm.mean_absolute_error(expected_labels, answered)
    )


def test_the_api_refuses_what_the_token_may_not_read_and_bad_parameters(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    price_support = workspace.tokens.create("price-support", "support", models=["price"])
    toy_client = workspace.tokens.create("toy-client", "client", models=["toy"])
    url = "/api/v1/models/toy/performance"
    other = client.get(url, headers=bearer(price_support))
    assert other.status_code == 403 and other.json()["field"] == "model"
    assert client.get(url, headers=bearer(toy_client)).status_code == 403
    assert client.get(url).status_code == 401
    assert (
        client.get("/api/v1/models/price/performance", headers=bearer(price_support)).status_code
        == 200
    )
    missing = client.get("/api/v1/models/nobody/performance", headers=admin_headers)
    assert missing.status_code == 404
    no_version = client.get(url, headers=admin_headers, params={"version": "9"})
    assert no_version.status_code == 404
    for params, field in (
        ({"window_s": 10}, "window_s"),
        ({"windows": 0}, "windows"),
        ({"windows": 49}, "windows"),
        ({"end": "nan"}, "end"),
        ({"end": 2**40}, "end"),  # beyond the last date a report can show: was a 500
        ({"min_labels": 0}, "min_labels"),
        ({"version": "x" * 40}, "version"),
    ):
        answer = client.get(url, headers=admin_headers, params=params)
        assert answer.status_code == 422, (params, answer.text)
        assert field in (answer.json().get("field") or ""), answer.json()
    # The extremes that are allowed are answered: the Unix epoch and the last end there is.
    for end in (0, 253_402_300_799 - 2 * 7 * 86_400):
        edge = client.get(url, headers=admin_headers, params={"end": end})
        assert edge.status_code == 200, (end, edge.text)


def test_the_calibration_is_fitted_once_per_version(workspace: Workspace) -> None:
    cache = CalibrationCache()
    info = workspace.registry.get_version("toy", "1")
    first, source = cache.get(workspace.registry, "toy", info)
    again, _ = cache.get(workspace.registry, "toy", info)
    assert again is first and "confidence set" in source
