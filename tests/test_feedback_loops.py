"""Feedback-loop indicators: the counts kept at label time, each indicator against a direct
computation on the same raw rows, the API's roles and refusals, and the feedback_loop alert.

Traffic goes through the real app (TestClient): held-out routing, the log writer, the window
counts and the feedback API. The toy classifier's served "1" answers mostly lose their labels
(as a blocked transaction never gets a chargeback), held-out ones never do.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson
import pytest
from fastapi.testclient import TestClient
from scipy import stats
from scipy.spatial.distance import jensenshannon
from sklearn.metrics import accuracy_score
from sqlalchemy import delete, select

from backend.auth.tokens import Principal
from backend.db.tables import (
    DriftReferenceRow,
    LabelRow,
    LoopContributionRow,
    LoopCountRow,
    PredictionRow,
)
from backend.feedback.labels import store_labels
from backend.feedback.review import ReviewQueue
from backend.monitoring.feedback_loops.alerting import FeedbackLoopWatch
from backend.monitoring.rules import RuleStore
from backend.predictions.loop_counts import (
    PENDING,
    Outcome,
    count_recent_labels,
    decode_counts,
    expand,
    merge,
    slicers_of,
    sync_label_outcomes,
)
from backend.predictions.signal_counts import read_signal_counts
from backend.schemas import AlertRule, DefaultPolicy, HeldOutSettings, LabelIn
from backend.serving.held_out import is_held_out
from backend.workspace import Workspace
from tests.helpers import TOY_ROW
from tests.review_helpers import add_held_out_rows

Z = 1.959963984540054  # the 0.975 normal quantile
REQUESTS = 60
ROWS_PER_REQUEST = 8


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _rows(rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
    return [
        {
            "amount": float(round(rng.gamma(2.0, 200.0), 2)),
            "count": int(rng.integers(0, 20)),
            "country": str(rng.choice(["DE", "FR", "US"])),
            "online": bool(rng.random() < 0.4),
            "note": "",
        }
        for _ in range(n)
    ]


def _truth(row: dict[str, Any], rng: np.random.Generator) -> int:
    score = row["amount"] / 400 + row["online"] * 1.5 + (row["country"] == "US") - 2
    return int(score + rng.normal(0, 0.8) > 0)


def _wilson(k: int, n: int) -> tuple[float, float, float]:
    """Wilson's score interval written out (Wilson 1927), to check the report's."""
    p = k / n
    centre = (p + Z * Z / (2 * n)) / (1 + Z * Z / n)
    half = Z * math.sqrt(p * (1 - p) / n + Z * Z / (4 * n * n)) / (1 + Z * Z / n)
    return p, centre - half, centre + half


def _newcombe(a: tuple[float, float, float], b: tuple[float, float, float]) -> tuple[float, ...]:
    gap = a[0] - b[0]
    return (
        gap,
        gap - math.sqrt((a[0] - a[1]) ** 2 + (b[2] - b[0]) ** 2),
        gap + math.sqrt((a[2] - a[0]) ** 2 + (b[0] - b[1]) ** 2),
    )


def _close(interval: dict[str, Any], expected: tuple[float, ...]) -> None:
    got = (interval["value"], interval["low"], interval["high"])
    assert got == pytest.approx(expected, abs=1e-9), (got, expected)


def _send_loop_traffic(
    client: TestClient, headers: dict[str, str], seed: int = 3
) -> list[dict[str, Any]]:
    """Held-out share 50%; REQUESTS requests of ROWS_PER_REQUEST rows, one entity each; the
    served "1" answers lose 80% of their labels. Labels of the first ten requests are posted
    before those requests are made (they join when the predictions land), a wrong label is
    replaced for the next ten. Returns the final labels posted."""
    put = client.put(
        "/api/v1/models/toy/held-out",
        headers=headers,
        json={"share_percent": 50, "policy": {"kind": "default", "answer": 0}},
    )
    assert put.status_code == 200, put.text
    _wait_for_held_out(client, headers)
    rng = np.random.default_rng(seed)
    requests = [(f"loop-{i}", _rows(rng, ROWS_PER_REQUEST)) for i in range(REQUESTS)]
    truths = {rid: [_truth(r, rng) for r in rows] for rid, rows in requests}
    early = [
        {"request_id": rid, "row": j, "label": t, "model": "toy"}
        for rid, _ in requests[:10]
        for j, t in enumerate(truths[rid])
    ]
    pending = client.post("/api/v1/feedback", headers=headers, json={"labels": early})
    assert pending.status_code == 200 and pending.json()["unmatched"] == len(early)
    final = list(early)
    wrong = []
    for i, (rid, rows) in enumerate(requests):
        answer = client.post(
            "/v1/models/toy:predict",
            headers=headers,
            json={"instances": rows, "id": rid, "entity_id": f"card-{i}"},
        )
        assert answer.status_code == 200, answer.text
        if i < 10:
            continue
        body = answer.json()
        for j, prediction in enumerate(body["predictions"]):
            blocked = body["route"] != "held_out" and prediction["prediction"] == 1
            if blocked and rng.random() < 0.8:
                continue
            final.append({"request_id": rid, "row": j, "label": truths[rid][j], "model": "toy"})
            if i < 20:
                wrong.append({**final[-1], "label": 1 - truths[rid][j]})
    client.app.state.serving.prediction_log.flush(10)  # type: ignore[attr-defined]
    for batch in (wrong, final[len(early) :]):
        posted = client.post("/api/v1/feedback", headers=headers, json={"labels": batch})
        assert posted.status_code == 200 and posted.json()["unmatched"] == 0, posted.text
    return final


def _wait_for_held_out(client: TestClient, headers: dict[str, str]) -> None:
    """Probe with an entity the 50% share holds out until the workers route by the share."""
    settings = HeldOutSettings(share_percent=50, policy=DefaultPolicy(kind="default", answer=0))
    entity = next(f"probe-{i}" for i in range(1000) if is_held_out(settings, "toy", f"probe-{i}"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        answer = client.post(
            "/v1/models/toy:predict",
            headers=headers,
            json={"instances": [TOY_ROW], "entity_id": entity},
        )
        if answer.json()["route"] == "held_out":
            return
    raise AssertionError("the held-out share was not applied within 10 s")


def _raw(workspace: Workspace) -> list[dict[str, Any]]:
    """Every logged toy row with its label (None: unlabelled), read straight from the tables."""
    with workspace.sessions() as session:
        labels = {
            (r.request_id, r.row_index): r.label
            for r in session.scalars(select(LabelRow).where(LabelRow.model == "toy"))
        }
        return [
            {
                "route": r.route,
                "features": r.features,
                "answer": r.outputs["predict"],
                "p1": r.outputs["predict_proba"][1],
                "label": labels.get((r.request_id, r.row_index)),
            }
            for r in session.scalars(select(PredictionRow).where(PredictionRow.model == "toy"))
        ]


def _report(client: TestClient, headers: dict[str, str], **params: Any) -> dict[str, Any]:
    page = client.get(
        "/api/v1/models/toy/feedback-loops",
        headers=headers,
        params={"window_s": 3600, "windows": 2, **params},
    )
    assert page.status_code == 200, page.text
    report: dict[str, Any] = page.json()
    return report


def test_each_indicator_equals_a_direct_computation_on_the_raw_rows(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    _send_loop_traffic(client, admin_headers)
    # The ten early requests' labels came before their predictions: the catch-up counts them.
    assert count_recent_labels(workspace.sessions, time.time() - 3600) == 10 * ROWS_PER_REQUEST
    assert count_recent_labels(workspace.sessions, time.time() - 3600) == 0
    raw = _raw(workspace)
    sides = {
        "served": [r for r in raw if r["route"] in ("active", "canary")],
        "held_out": [r for r in raw if r["route"] == "held_out"],
    }
    assert min(len(rows) for rows in sides.values()) >= 100
    labelled = {side: [r for r in rows if r["label"] is not None] for side, rows in sides.items()}
    report = _report(client, admin_headers, outcome="fraud", slice_feature="amount")
    assert report["outcome"] == "1" and report["status"] == "alert"
    assert report["held_out"]["settings"]["share_percent"] == 50

    # Outcome-rate gap: the share of labels that are 1, Wilson intervals, Newcombe's gap.
    rates = {
        side: _wilson(sum(r["label"] == 1 for r in rows), len(rows))
        for side, rows in labelled.items()
    }
    gap = report["outcome_rate_gap"]
    _close(gap["served"], rates["served"])
    _close(gap["held_out"], rates["held_out"])
    _close(gap["gap"], _newcombe(rates["served"], rates["held_out"]))
    assert gap["data"]["served_labels"] == len(labelled["served"])
    assert gap["data"]["held_out_predictions"] == len(sides["held_out"])
    assert sum(p["served_count"] for p in gap["trend"]) == len(labelled["served"])

    # Performance (the toy's gate metric, accuracy): scikit-learn's on the labelled rows.
    performance = report["performance_gap"]
    assert performance["metric"] == "accuracy"
    for side, rows in labelled.items():
        expected = accuracy_score([r["label"] for r in rows], [r["answer"] for r in rows])
        assert performance[side]["value"] == pytest.approx(expected)

    # Label drift: scipy's chi-square test and Jensen-Shannon distance on the label counts.
    counts = {side: Counter(r["label"] for r in rows) for side, rows in labelled.items()}
    table = np.array([[counts[s][0], counts[s][1]] for s in ("served", "held_out")])
    chi2, p_value, _, _ = stats.chi2_contingency(table, correction=False)
    drift = report["label_drift"]
    assert drift["chi2"] == pytest.approx(chi2) and drift["p_value"] == pytest.approx(p_value)
    assert drift["js_distance"] == pytest.approx(jensenshannon(table[0], table[1], base=2))
    shares = table / table.sum(axis=1, keepdims=True)
    assert drift["gap"]["value"] == pytest.approx(abs(shares[0] - shares[1]).sum() / 2)
    # Its interval (bootstrap redraws of both sides): for two classes and a clear difference,
    # about as wide as the normal interval of the difference in one class's share.
    sizes = table.sum(axis=1)
    normal_width = 2 * 1.96 * np.sqrt((shares[:, 1] * shares[:, 0] / sizes).sum())
    low, high = drift["gap"]["low"], drift["gap"]["high"]
    assert low <= drift["gap"]["value"] <= high
    assert 0.7 * normal_width < high - low < 1.3 * normal_width, (low, high, normal_width)
    assert [(c["label"], c["served"], c["held_out"]) for c in drift["classes"]] == [
        ("0", counts["served"][0], counts["held_out"][0]),
        ("1", counts["served"][1], counts["held_out"][1]),
    ]

    # Selective labels: labels per prediction, by the model's answer and side.
    selective = report["selective_labels"]
    assert selective["status"] == "alert"
    for entry in selective["by_answer"]:
        answer = int(entry["answer"])
        for side in ("served", "held_out"):
            answered = [r for r in sides[side] if r["answer"] == answer]
            got = [r for r in answered if r["label"] is not None]
            assert entry[f"{side}_predictions"] == len(answered)
            assert entry[f"{side}_labelled"] == len(got)
            _close(entry[f"{side}_coverage"], _wilson(len(got), len(answered)))
    blocked = next(e for e in selective["by_answer"] if e["answer"] == "1")
    assert blocked["held_out_coverage"]["value"] == 1.0 and blocked["gap"]["high"] < -0.5
    assert sum(i["unknown"] for i in selective["influence"]) == sum(map(len, labelled.values()))
    assert (
        "influenced" in selective["explanation"] and "feedback_loop" in (selective["explanation"])
    )

    # Prediction bias per slice of amount: the reference's deciles, numpy on the raw rows.
    with workspace.sessions() as session:
        summary = session.scalar(
            select(DriftReferenceRow.summary).where(DriftReferenceRow.model == "toy")
        )
    edges = np.array(slicers_of(orjson.loads(summary))["amount"].edges)
    bias = report["prediction_bias"]
    assert bias["feature"] == "amount" and bias["features"][0] == "amount"
    for side, rows in labelled.items():
        where = np.searchsorted(edges, [r["features"]["amount"] for r in rows], side="left")
        for entry in bias["slices"]:
            if entry["slice"] == "(missing)":
                continue
            index = _slice_index(entry["slice"], edges)
            inside = [r for r, w in zip(rows, where, strict=True) if w == index]
            assert entry[side]["labelled"] == len(inside)
            if inside:
                mean = float(np.mean([r["p1"] for r in inside]))
                observed = float(np.mean([r["label"] == 1 for r in inside]))
                assert entry[side]["mean_predicted"] == pytest.approx(mean)
                assert entry[side]["bias"]["value"] == pytest.approx(mean - observed)
    overall = {
        side: float(np.mean([r["p1"] for r in rows])) - rates[side][0]
        for side, rows in labelled.items()
    }
    assert bias["served"]["value"] == pytest.approx(overall["served"])
    assert bias["held_out"]["value"] == pytest.approx(overall["held_out"])

    # Exposure concentration: answers per side, the most common served answer's share.
    exposure = report["exposure_concentration"]
    answers = {side: Counter(r["answer"] for r in rows) for side, rows in sides.items()}
    top = answers["served"].most_common(1)[0][0]
    assert exposure["top_answer"] == str(top)
    for side in ("served", "held_out"):
        share = _wilson(answers[side][top], len(sides[side]))
        _close(exposure[side], share)
        shares = np.array([answers[side][0], answers[side][1]]) / len(sides[side])
        expected = ((shares**2).sum() - 0.5) / 0.5
        assert exposure[f"{side}_concentration"] == pytest.approx(expected)

    # Every indicator explains itself and names its thresholds.
    for name in ("outcome_rate_gap", "performance_gap", "selective_labels", "prediction_bias"):
        assert "alerts from 10%" in report[name]["explanation"], name
    assert report["thresholds"]["alert_at"] == 0.1 and report["thresholds"]["warn_at"] == 0.05


def _slice_index(words: str, edges: np.ndarray) -> int:
    if words.startswith("<="):
        return 0
    if words.startswith(">"):
        return len(edges)
    upper = float(words.split(",")[1].strip(" ]"))
    return int(np.argmin(np.abs(edges - upper)))


def _flat(groups: dict[Any, dict[Any, float]]) -> dict[Any, float]:
    """{(group, key): number}, zeros left out: what pytest.approx compares."""
    return {(g, k): v for g, c in groups.items() for k, v in c.items() if abs(v) > 1e-9}


def _stored(workspace: Workspace) -> dict[Any, float]:
    """Every minute's counts (its base row and its features' rows together), flat."""
    minutes: dict[tuple[str, str, int], dict[Any, float]] = {}
    with workspace.sessions() as session:
        for row in session.scalars(select(LoopCountRow).where(LoopCountRow.model == "toy")):
            counts = decode_counts(row.counts)
            assert all((key[0] == "s") == (row.feature != "") for key in counts)
            merge(minutes.setdefault((row.version, row.route, row.minute), {}), counts)
    return _flat(minutes)


def test_a_replaced_or_removed_label_is_never_counted_twice(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    final = _send_loop_traffic(client, admin_headers, seed=5)
    count_recent_labels(workspace.sessions, time.time() - 3600)
    before = _stored(workspace)
    # The counts are the sum of the labels' recorded contributions.
    with workspace.sessions() as session:
        summed: dict[tuple[str, str, int], dict[Any, float]] = {}
        for row in session.scalars(select(LoopContributionRow)):
            assert row.minute != PENDING  # every label found its prediction
            merge(
                summed.setdefault((row.version, row.route, row.minute), {}),
                expand(Outcome.from_json(row.outcome), ["0", "1"]),
            )
    assert _flat(summed) == pytest.approx(before)
    some = final[20:60]
    flipped = [{**item, "label": 1 - item["label"]} for item in some]
    for batch in (flipped, some, some):  # replaced, replaced back, then stored again
        posted = client.post("/api/v1/feedback", headers=admin_headers, json={"labels": batch})
        assert posted.status_code == 200, posted.text
    assert _stored(workspace) == pytest.approx(before)
    # Syncing again (and the catch-up) changes nothing.
    keys = [("toy", item["request_id"], item["row"]) for item in final]
    with workspace.sessions.begin() as session:
        sync_label_outcomes(session, keys)
    assert count_recent_labels(workspace.sessions, time.time() - 3600) == 0
    assert _stored(workspace) == pytest.approx(before)
    # A label taken away takes its contribution with it; with no labels left, no counts.
    with workspace.sessions.begin() as session:
        session.execute(delete(LabelRow).where(LabelRow.model == "toy"))
        sync_label_outcomes(session, keys)
    assert _stored(workspace) == {}


def test_labels_replaced_by_racing_requests_are_counted_once(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    """Four requests at once replace the same labels (flipped, then back) on the same
    minutes: no deadlock, no error, and once the labels are back the counts are what they
    were (the counts lock labels, contributions and minutes in one order)."""
    final = _send_loop_traffic(client, admin_headers, seed=11)
    count_recent_labels(workspace.sessions, time.time() - 3600)
    before = _stored(workspace)
    some = [LabelIn(**item) for item in final[:80]]
    flipped = [item.model_copy(update={"label": 1 - item.label}) for item in some]
    admin = Principal(name="admin", role="admin")
    # Each request also says every one of those answers was undone: kept and counted once.
    undone = [
        LabelIn(request_id=item.request_id, row=item.row, model="toy", kind="undo") for item in some
    ]
    # Half the requests in one order, half in the other, labels and undos alike.
    forward, backward = [*flipped, *undone], [*reversed(some), *reversed(undone)]
    batches = [forward, backward, [*some, *undone], [*reversed(flipped), *reversed(undone)]] * 2
    with ThreadPoolExecutor(max_workers=4) as pool:
        done = list(pool.map(lambda batch: store_labels(workspace.sessions, batch, admin), batches))
    assert all(accepted == 2 * len(some) for accepted, _ in done), done
    store_labels(workspace.sessions, some, admin)  # the labels as they were
    assert _stored(workspace) == pytest.approx(before)
    with workspace.sessions() as session:
        counted = read_signal_counts(
            session, "toy", "1", ("active", "held_out"), 0, time.time() + 3600
        )
    assert sum(n for (_minute, kind), n in counted.items() if kind == "undo") == len(some)


def test_the_api_checks_roles_and_parameters_and_says_what_does_not_apply(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    price_support = workspace.tokens.create("price-support", "support", models=["price"])
    toy_client = workspace.tokens.create("toy-client", "client", models=["toy"])
    toy_support = workspace.tokens.create("toy-support", "support", models=["toy"])
    url = "/api/v1/models/toy/feedback-loops"
    other = client.get(url, headers=bearer(price_support))
    assert other.status_code == 403 and other.json()["field"] == "model"
    assert client.get(url, headers=bearer(toy_client)).status_code == 403
    assert client.get(url).status_code == 401
    assert client.get(url, headers=bearer(toy_support)).status_code == 200
    assert client.get(
        "/api/v1/models/nobody/feedback-loops", headers=admin_headers
    ).status_code == (404)
    for params, field in (
        ({"window_s": 10}, "window_s"),
        ({"windows": 49}, "windows"),
        ({"window_s": 86_400, "windows": 15}, "windows"),  # beyond the 14-day span
        ({"end": "nan"}, "end"),
        ({"outcome": "maybe"}, "outcome"),
        ({"slice_feature": "age"}, "slice_feature"),
        ({"version": "9"}, "version"),
    ):
        answer = client.get(url, headers=admin_headers, params=params)
        assert answer.status_code in (404, 422), (params, answer.text)
        assert field in (answer.json().get("field") or ""), answer.json()
    # The extremes of the span are answered (dates before 1970, windows of a minute).
    for params in ({"end": 0}, {"end": 253_000_000_000}, {"window_s": 61, "windows": 48}):
        edge = client.get(url, headers=admin_headers, params=params)
        assert edge.status_code == 200, (params, edge.text)
    # Nothing held out yet: every indicator is ok, with too little data, and the report says
    # what to do.
    empty = client.get(url, headers=admin_headers).json()
    assert empty["status"] == "ok" and "No held-out traffic" in empty["explanation"]
    assert empty["held_out"]["settings"] is None
    assert not empty["outcome_rate_gap"]["enough_data"]
    assert len(empty["outcome_rate_gap"]["trend"]) == 24
    # The thresholds are the model's feedback_loop alert rule, edited like every rule.
    rules_url = "/api/v1/models/toy/alert-rules"
    refused = client.put(
        rules_url, headers=admin_headers, json={"rules": [{"kind": "feedback_loop"}]}
    )
    assert refused.status_code == 422 and refused.json()["field"] == "rules[0].threshold"
    edited = client.put(
        rules_url,
        headers=admin_headers,
        json={"rules": [{"kind": "feedback_loop", "threshold": 0.2, "min_count": 80}]},
    )
    assert edited.status_code == 200, edited.text
    limits = client.get(url, headers=admin_headers).json()["thresholds"]
    assert (limits["alert_at"], limits["warn_at"], limits["min_labels"]) == (0.2, 0.1, 80)
    assert limits["customized"] and "own setting" in limits["explanation"]
    # A regression model: the class indicators say they do not apply.
    price = client.get("/api/v1/models/price/feedback-loops", headers=admin_headers).json()
    for name in ("outcome_rate_gap", "performance_gap", "label_drift", "prediction_bias"):
        assert not price[name]["applicable"] and "regression" in price[name]["explanation"]
    bad = client.get(
        "/api/v1/models/price/feedback-loops", headers=admin_headers, params={"outcome": "1"}
    )
    assert bad.status_code == 422 and bad.json()["field"] == "outcome"


class _Serving:
    def models_serving(self) -> list[str]:
        return ["toy", "price"]


def test_a_loop_raises_one_grouped_alert_that_resolves_by_itself(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    _send_loop_traffic(client, admin_headers, seed=7)
    rules = RuleStore(workspace.sessions)
    rule = AlertRule(
        kind="feedback_loop", threshold=0.1, window_s=3600, min_count=20, for_s=0, clear_for_s=0
    )
    rules.replace("toy", [rule], "tests")
    watch = FeedbackLoopWatch(
        workspace.sessions, workspace.registry, rules, workspace.alerts, _Serving()
    )
    now = time.time()
    toy, price = ("toy", "feedback_loop"), ("price", "feedback_loop")
    first = watch.evaluate(["toy", "price"], now)
    assert first[toy].startswith("raised") and first[price] == "clear"
    assert watch.evaluate(["toy", "price"], now + 5)[toy].startswith("still active")
    alerts = [a for a in workspace.alerts.list(limit=100) if a.kind == "feedback_loop"]
    assert len(alerts) == 1 and alerts[0].model == "toy" and alerts[0].status == "open"
    assert "selective labels" in alerts[0].title and "held-out" in alerts[0].explanation
    assert alerts[0].details["indicators"]["selective_labels"]["status"] == "alert"
    # The threshold raised beyond any gap: the condition clears and the alert resolves itself
    # once no worker has seen it for three rounds.
    rules.replace("toy", [rule.model_copy(update={"threshold": 1.0})], "tests")
    later = watch.evaluate(["toy"], now + 200)
    assert later[toy].startswith("resolved"), later
    assert [a.status for a in workspace.alerts.list(limit=100) if a.kind == "feedback_loop"] == [
        "resolved"
    ]


def test_a_reviewers_label_counts_as_not_influenced_and_undo_takes_it_out(
    workspace: Workspace,
) -> None:
    add_held_out_rows(workspace, 2, policy={"policy": "default", "answer": 0})
    queue = ReviewQueue(
        workspace.sessions, workspace.registry, lease_s=300, agreement_share=0.0, sync_interval_s=0
    )
    items = queue.next("toy", "ana").items
    assert queue.answer("toy", items[0].item, "ana", 1).label_stored
    counted = _stored(workspace)
    assert {key for (group, key) in counted if key[0] == "inf"} == {("inf", "1", "false")}
    assert {group[1] for group, _ in counted} == {"held_out"}
    assert sum(v for (_, key), v in counted.items() if key == ("n",)) == 1
    queue.undo("toy", "ana")
    assert _stored(workspace) == {}
