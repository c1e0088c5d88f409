"""User signals (undo, complaint): stored once per kind beside labels, counted per prediction
minute as they arrive, shown as rates in the performance report and judged by the
undo_rate / complaint_rate alert rules.

Traffic goes through the real app (TestClient): the log writer, the window counts (the
rates' denominators) and the feedback API.
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi.testclient import TestClient
from scipy import stats
from sqlalchemy import func, select

from backend.db.signal_tables import UserSignalCountRow, UserSignalRow
from backend.db.tables import LabelRow, PredictionRow
from backend.monitoring.rules import RuleStore
from backend.monitoring.user_signals import UserSignalWatch
from backend.predictions.signal_counts import PENDING, count_pending_signals
from backend.schemas import AlertRule
from backend.workspace import Workspace
from tests.helpers import TOY_ROW

REQUESTS = 40


def _predict(client: TestClient, headers: dict[str, str], prefix: str, n: int) -> list[str]:
    ids = []
    for i in range(n):
        row = {**TOY_ROW, "amount": 50.0 + 37 * i}
        body = {"instances": [row], "id": f"{prefix}-{i}"}
        answer = client.post("/v1/models/toy:predict", headers=headers, json=body)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["request_id"])
    client.app.state.serving.prediction_log.flush(10)  # type: ignore[attr-defined]
    return ids


def _post(client: TestClient, headers: dict[str, str], items: list[dict[str, Any]]) -> Any:
    return client.post("/api/v1/feedback", headers=headers, json={"labels": items})


def _wilson(k: int, n: int) -> tuple[float, float, float]:
    """Wilson's score interval written out, to check the report's."""
    z = stats.norm.ppf(0.975)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return p, centre - half, centre + half


def test_signals_are_stored_once_per_kind_and_rates_match_the_raw_rows(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    ids = _predict(client, admin_headers, "sig", REQUESTS)
    undone = ids[:6]
    complained = ids[4:7]
    items = [{"request_id": rid, "kind": "undo"} for rid in undone]
    items += [{"request_id": rid, "kind": "complaint"} for rid in complained]
    # A label on an undone prediction is kept beside the undo.
    items.append({"request_id": ids[0], "label": 1})
    first = _post(client, admin_headers, items)
    assert first.status_code == 200, first.text
    assert first.json() == {"accepted": len(items), "unmatched": 0}
    # Sent again (a client retrying): nothing is counted twice.
    again = _post(client, admin_headers, items)
    assert again.status_code == 200, again.text
    with workspace.sessions() as session:
        stored = session.execute(
            select(UserSignalRow.request_id, UserSignalRow.kind, UserSignalRow.minute)
        ).all()
        counted = session.execute(
            select(UserSignalCountRow.kind, func.sum(UserSignalCountRow.signals)).group_by(
                UserSignalCountRow.kind
            )
        ).all()
        label = session.scalar(select(LabelRow.label).where(LabelRow.request_id == ids[0]))
        predictions = session.scalar(
            select(func.count()).select_from(PredictionRow).where(PredictionRow.model == "toy")
        )
    assert sorted((rid, kind) for rid, kind, _ in stored) == sorted(
        [(rid, "undo") for rid in undone] + [(rid, "complaint") for rid in complained]
    )
    assert all(minute != PENDING for _, _, minute in stored)
    assert dict(counted) == {"undo": len(undone), "complaint": len(complained)}
    assert label == 1

    report = client.get(
        "/api/v1/models/toy/performance",
        headers=admin_headers,
        params={"window_s": 3600, "windows": 2},
    )
    assert report.status_code == 200, report.text
    windows = report.json()["windows"]
    assert windows[0]["user_signals"]["predictions"] == 0
    assert "No answered predictions" in windows[0]["user_signals"]["explanation"]
    newest = windows[-1]["user_signals"]
    assert newest["predictions"] == predictions == REQUESTS
    rates = {rate["kind"]: rate for rate in newest["rates"]}
    for kind, k in (("undo", len(undone)), ("complaint", len(complained))):
        assert rates[kind]["signals"] == k
        value, low, high = _wilson(k, REQUESTS)
        assert math.isclose(rates[kind]["rate"]["value"], value)
        assert math.isclose(rates[kind]["rate"]["low"], low, rel_tol=1e-6)
        assert math.isclose(rates[kind]["rate"]["high"], high, rel_tol=1e-6)
    assert f"{len(undone)} of {REQUESTS} answers were undone" in newest["explanation"]
    # Windows that are not whole minutes: each signal still counts in exactly one window.
    odd = client.get(
        "/api/v1/models/toy/performance",
        headers=admin_headers,
        params={"window_s": 90, "windows": 4},
    )
    assert odd.status_code == 200, odd.text
    undos = [
        rate["signals"]
        for window in odd.json()["windows"]
        for rate in window["user_signals"]["rates"]
        if rate["kind"] == "undo"
    ]
    assert sum(undos) == len(undone)


def test_a_signal_before_its_prediction_is_counted_once_it_lands(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    early = _post(
        client, admin_headers, [{"request_id": "early-0", "kind": "undo", "model": "toy"}]
    )
    assert early.status_code == 200 and early.json()["unmatched"] == 1, early.text
    with workspace.sessions() as session:
        assert session.scalar(select(UserSignalRow.minute)) == PENDING
    _predict(client, admin_headers, "early", 1)
    assert count_pending_signals(workspace.sessions, time.time() - 60) == 1
    # A second round finds nothing left to count.
    assert count_pending_signals(workspace.sessions, time.time() - 60) == 0
    with workspace.sessions() as session:
        assert session.scalar(select(func.sum(UserSignalCountRow.signals))) == 1
        assert session.scalar(select(UserSignalRow.version)) == "1"


def test_feedback_refuses_what_a_signal_or_a_label_cannot_be(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    ids = _predict(client, admin_headers, "bad", 1)
    cases = [
        ([{"request_id": ids[0]}], "labels[0].label", "required"),
        ([{"request_id": ids[0], "kind": "undo", "label": 1}], "labels[0].label", "no label"),
        (
            [{"request_id": "x", "kind": "complaint", "model": "nope"}],
            "labels[0].model",
            "no model",
        ),
        (
            [{"request_id": ids[0], "kind": "undo"}, {"request_id": ids[0], "kind": "undo"}],
            "labels[1]",
            "twice",
        ),
    ]
    for items, field, words in cases:
        refused = _post(client, admin_headers, items)
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert body["field"] == field and words in body["reason"], body
    unknown = _post(client, admin_headers, [{"request_id": ids[0], "kind": "like"}])
    assert unknown.status_code == 422 and "kind" in unknown.json()["field"]
    # A client token of another model may not signal this model's predictions.
    other = workspace.tokens.create("other-shop", "client", models=["price"])
    hidden = _post(
        client,
        {"Authorization": f"Bearer {other}"},
        [{"request_id": ids[0], "kind": "undo", "model": "toy"}],
    )
    assert hidden.status_code == 403 and hidden.json()["field"] == "labels[0].model"
    with workspace.sessions() as session:
        assert session.scalar(select(func.count()).select_from(UserSignalRow)) == 0


class _Serving:
    def models_serving(self) -> list[str]:
        return ["toy"]


def test_an_undo_rate_above_the_rule_raises_one_alert_that_resolves(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    ids = _predict(client, admin_headers, "rule", REQUESTS)
    posted = _post(client, admin_headers, [{"request_id": rid, "kind": "undo"} for rid in ids[:8]])
    assert posted.status_code == 200, posted.text
    refused = client.put(
        "/api/v1/models/toy/alert-rules",
        headers=admin_headers,
        json={"rules": [{"kind": "undo_rate", "threshold": 5}]},
    )
    assert refused.status_code == 422 and "share" in refused.json()["reason"], refused.text
    rules = RuleStore(workspace.sessions)
    undo = AlertRule(
        kind="undo_rate", threshold=0.1, window_s=3600, min_count=20, for_s=0, clear_for_s=0
    )
    complaint = AlertRule(
        kind="complaint_rate", threshold=0.1, window_s=3600, min_count=20, for_s=0, clear_for_s=0
    )
    rules.replace("toy", [undo, complaint], "tests")
    watch = UserSignalWatch(
        workspace.sessions, workspace.registry, rules, workspace.alerts, _Serving()
    )
    now = time.time()
    first = watch.evaluate(["toy"], now)
    assert first["toy/undo_rate"].startswith("raised"), first
    assert first["toy/complaint_rate"] == "clear", first
    alerts = [a for a in workspace.alerts.list(limit=100) if a.kind == "undo_rate"]
    assert len(alerts) == 1 and alerts[0].version == "1"
    assert f"8 of {REQUESTS} answers undone" in alerts[0].title
    assert alerts[0].details["signals"] == 8 and alerts[0].details["value"] == 8 / REQUESTS
    assert "roll" in alerts[0].explanation
    # Too few answers for the rule's minimum: not judged, so the alert clears.
    rules.replace("toy", [undo.model_copy(update={"min_count": 1_000}), complaint], "tests")
    later = watch.evaluate(["toy"], now + 200)
    assert later["toy/undo_rate"].startswith("resolved"), later
