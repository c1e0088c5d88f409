"""The demo workspace as a newcomer meets it: build, serve with live traffic, label, stop."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers import launch, start_server


# Alone, after the parallel part: the simulator's request rate is measured.
@pytest.mark.serial
def test_demo_serves_live_traffic_with_delayed_labels(tmp_path: Path) -> None:
    demo = launch(["demo", "--serve", "--port", "0", "--rate", "40"], tmp_path, timeout=120)
    try:
        url = demo.url
        headers = {"Authorization": f"Bearer {(tmp_path / 'admin.token').read_text().strip()}"}
        models = requests.get(f"{url}/api/v1/models", headers=headers, timeout=10).json()
        described = {m["name"]: m for m in models["models"]}
        assert described["fraud"]["active_version"] == "1"
        assert [v["version"] for v in described["fraud"]["versions"]] == ["1", "2"]
        assert described["ride-price"]["task"] == "regression"
        # Simulated traffic flows and chargeback labels follow a few seconds later.
        deadline = time.monotonic() + 60
        labelled: list[dict] = []
        while time.monotonic() < deadline and not labelled:
            page = requests.get(
                f"{url}/api/v1/predictions",
                headers=headers,
                params={"model": "fraud", "limit": 1000},
                timeout=10,
            ).json()
            labelled = [p for p in page["predictions"] if p["label"] is not None]
            time.sleep(0.5)
        assert labelled, "no labelled predictions within a minute"
        record = labelled[0]
        assert set(record["features"]) >= {"amount", "user_txn_count_7d", "card_txn_count_1h"}
        assert record["entity_id"] and record["label"] in (0, 1)
    finally:
        demo.stop(timeout=30)
    # Building again is idempotent: no new versions, and quick.
    again = subprocess.run(
        [sys.executable, "-m", "backend.cli", "demo", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 0, again.stderr
    assert "built nothing (already there)" in again.stderr
    assert "fraud: active version 1, versions 1, 2" in again.stderr


@pytest.mark.serial  # its request rate is measured too
def test_simulate_command_against_a_running_server(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "backend.cli", "demo", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    server = start_server(tmp_path)
    try:
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "backend.cli",
                "simulate",
                "--data-dir",
                str(tmp_path),
                "--rate",
                "30",
                "--duration",
                "4",
                "--label-delay",
                "1",
                "--drift-at",
                "2",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        stats = json.loads(result.stdout)
        assert stats["sent"] > 50 and stats["ok"] == stats["sent"]
        assert stats["labels_posted"] > 0 and stats["drift_started_s"] is not None
    finally:
        server.stop()


# In the parallel part: a busy machine can only make it send less, and it asserts an upper bound.
def test_simulator_backs_off_from_an_unreachable_server() -> None:
    from backend.demo.simulate import run_simulator

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
    stats = run_simulator(url, "sdk_none", rate=50, duration=2.0, label_delay=0.1)
    # It reports the failure and backs off (0.25 s, 0.5 s, 1 s...) instead of hammering.
    assert stats.errors.get("connection", 0) >= 1
    assert stats.ok == 0 and stats.sent < 10
