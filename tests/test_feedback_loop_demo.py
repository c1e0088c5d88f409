"""The demo's feedback loop, driven in-process: the simulator's traffic through a test client of
the app (no clock), with and without ``--feedback-loop``, fixed seeds.

With the loop, the transactions the fraud model blocks never get a label, held-out ones always
do: the indicators must reach warn or alert and say why. Without it every indicator stays ok.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.cli import build_parser
from backend.demo.simulate import SimulationStats, send_requests
from backend.demo.workspace import DEMO_HELD_OUT, DEMO_SETUP, build_demo
from backend.monitoring.feedback_loops.alerting import FeedbackLoopWatch
from backend.monitoring.rules import RuleStore
from backend.predictions.loop_counts import count_recent_labels
from backend.schemas import DefaultPolicy, HeldOutSettings
from backend.settings import Settings
from backend.workspace import Workspace

REQUESTS = 1_000
INDICATORS = (
    "outcome_rate_gap",
    "performance_gap",
    "label_drift",
    "selective_labels",
    "prediction_bias",
    "exposure_concentration",
)


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The demo workspace, built once for both runs (each runs on its own copy)."""
    path = tmp_path_factory.mktemp("demo")
    workspace = Workspace.open(Settings.load(data_dir=path))
    try:
        build_demo(workspace)
        assert workspace.deploy.held_out.get("fraud") == DEMO_HELD_OUT
    finally:
        workspace.close()
    yield path


class _FraudServing:
    def models_serving(self) -> list[str]:
        return ["fraud"]


def _run(
    demo_dir: Path, tmp_path: Path, *, feedback_loop: bool
) -> tuple[SimulationStats, dict[str, Any], dict[str, str]]:
    copy = tmp_path / "demo"
    shutil.copytree(demo_dir, copy)
    workspace = Workspace.open(Settings.load(data_dir=copy))
    try:
        # Half the card holders held out instead of the demo's fifth: the indicators get the
        # data of a few minutes of demo traffic from a thousand requests.
        workspace.deploy.held_out.set(
            "fraud",
            HeldOutSettings(share_percent=50, policy=DefaultPolicy(kind="default", answer=0)),
            "test: more held-out traffic",
            DEMO_SETUP,
        )
        token = workspace.admin_token()
        with TestClient(create_app(workspace=workspace)) as client:
            stats = send_requests(client, token, REQUESTS, seed=11, feedback_loop=feedback_loop)
            client.app.state.serving.prediction_log.flush(10)  # type: ignore[attr-defined]
            count_recent_labels(workspace.sessions, time.time() - 3600)
            page = client.get(
                "/api/v1/models/fraud/feedback-loops",
                headers={"Authorization": f"Bearer {token}"},
                params={"window_s": 3600, "windows": 2},
            )
            assert page.status_code == 200, page.text
            rules = RuleStore(workspace.sessions)
            rule = rules.rule("fraud", "feedback_loop").model_copy(update={"for_s": 0})
            rules.replace("fraud", [rule], "tests")
            watch = FeedbackLoopWatch(
                workspace.sessions, workspace.registry, rules, workspace.alerts, _FraudServing()
            )
            outcomes = watch.evaluate(["fraud"])
    finally:
        workspace.close()
    return stats, page.json(), outcomes


def test_the_demo_loop_makes_the_indicators_warn_and_say_why(
    demo_dir: Path, tmp_path: Path
) -> None:
    stats, report, alerting = _run(demo_dir, tmp_path, feedback_loop=True)
    assert stats.labels_withheld > 0 and stats.held_out > 300
    assert report["status"] in ("warn", "alert")
    selective = report["selective_labels"]
    assert selective["status"] == "alert"
    blocked = next(entry for entry in selective["by_answer"] if entry["answer"] == "1")
    assert blocked["served_labelled"] == 0 and blocked["served_predictions"] > 0
    assert blocked["held_out_coverage"]["value"] == 1.0
    assert "'fraud' (1)" in selective["explanation"] and "chargeback" in selective["explanation"]
    assert "Selective labels" in report["explanation"]
    assert alerting[("fraud", "feedback_loop")].startswith("raised"), alerting


def test_without_the_loop_every_indicator_stays_ok(demo_dir: Path, tmp_path: Path) -> None:
    stats, report, alerting = _run(demo_dir, tmp_path, feedback_loop=False)
    assert stats.labels_withheld == 0 and stats.labels_posted == stats.ok
    assert report["status"] == "ok", report["explanation"]
    for name in INDICATORS:
        assert report[name]["status"] == "ok", (name, report[name]["explanation"])
        assert report[name]["enough_data"], name
    assert report["explanation"].startswith("No sign of a feedback loop")
    assert alerting[("fraud", "feedback_loop")] == "clear"


def test_simulate_and_demo_take_the_feedback_loop_flag() -> None:
    parser = build_parser()
    assert parser.parse_args(["simulate", "--feedback-loop"]).feedback_loop
    assert not parser.parse_args(["simulate"]).feedback_loop
    assert parser.parse_args(["demo", "--serve", "--feedback-loop"]).feedback_loop
