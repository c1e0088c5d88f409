"""Toy models and server helpers shared by the tests."""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import requests
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder
from sqlalchemy import func, select

from backend.auth.tokens import Principal
from backend.db.tables import PredictionRow
from backend.demo.data import plain_records
from backend.predictions.rows import LogRow, log_row
from backend.schemas import FeatureSpec, ValidityAssets
from backend.settings import Settings
from backend.workspace import Workspace

TOY_SIGNATURE = [
    FeatureSpec(name="amount", type="float", min=0, max=10_000),
    FeatureSpec(name="count", type="int", min=0),
    FeatureSpec(name="country", type="category", categories=["DE", "FR", "US"]),
    FeatureSpec(name="online", type="bool"),
    FeatureSpec(name="note", type="string", required=False, default=""),
]
TOY_ROW: dict[str, Any] = {
    "amount": 120.5,
    "count": 3,
    "country": "DE",
    "online": True,
    "note": "hi",
}


def services_required() -> bool:
    return os.environ.get("SERVEDECK_REQUIRE_SERVICES") == "1"


@functools.cache
def toy_frame() -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(7)
    n = 600
    frame = pd.DataFrame(
        {
            "amount": rng.gamma(2.0, 200.0, n),
            "count": rng.integers(0, 20, n),
            "country": rng.choice(["DE", "FR", "US"], n),
            "online": rng.random(n) < 0.4,
            "note": [""] * n,
        }
    )
    score = frame["amount"] / 400 + frame["online"] * 1.5 + (frame["country"] == "US") - 2
    labels = (score + rng.normal(0, 0.5, n) > 0).astype(int)
    return frame, labels


@functools.cache
def toy_classifier() -> Pipeline:
    frame, labels = toy_frame()
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
            ("num", "passthrough", ["amount", "count", "online"]),
        ]
    )
    return Pipeline([("prep", prep), ("clf", LogisticRegression(max_iter=2000))]).fit(frame, labels)


def toy_validity(model: Any = None) -> ValidityAssets:
    model = model or toy_classifier()
    frame, labels = toy_frame()
    held = frame.tail(100)
    expected = model.predict(held.head(10))
    return ValidityAssets(
        end_to_end=[
            {"inputs": row, "expected": int(e)}
            for row, e in zip(plain_records(held.head(10)), expected, strict=True)
        ],
        confidence_set=[
            {"inputs": row, "label": int(label)}
            for row, label in zip(plain_records(held), labels.tail(100), strict=True)
        ],
        metric="accuracy",
        acceptable_range=(0.7, 1.0),
    )


@functools.cache
def price_model() -> tuple[Ridge, np.ndarray]:
    rng = np.random.default_rng(3)
    features = rng.normal(size=(200, 2))
    target = features @ np.array([1.5, -0.5]) + 2.0
    return Ridge().fit(features, target), features


def price_validity() -> ValidityAssets:
    model, features = price_model()
    rows = [{"x1": float(a), "x2": float(b)} for a, b in features[:20]]
    predictions = model.predict(features[:20])
    return ValidityAssets(
        end_to_end=[
            {"inputs": r, "expected": float(p)} for r, p in zip(rows, predictions, strict=True)
        ],
        confidence_set=[
            {"inputs": r, "label": float(p)} for r, p in zip(rows, predictions, strict=True)
        ],
        metric="mae",
        acceptable_range=(0.0, 0.5),
        tolerance=1e-9,
    )


PRICE_SIGNATURE = [FeatureSpec(name="x1", type="float"), FeatureSpec(name="x2", type="float")]


SETUP = Principal(name="test-setup", role="admin")


# What people call the toy classifier's classes 0 and 1.
TOY_CLASS_NAMES = {"0": "legit", "1": "fraud"}


def register_toy_with_training_data(workspace: Workspace) -> None:
    """The toy registered with its training data (so with a drift reference) and deployed."""
    frame, labels = toy_frame()
    workspace.registry.register_version(
        "toy",
        sio.dumps(toy_classifier()),
        filename="toy.skops",
        validity=toy_validity(),
        registered_by="tests",
        signature=TOY_SIGNATURE,
        class_names=TOY_CLASS_NAMES,
        training_frame=frame.assign(label=labels.to_numpy()),
        training_target="label",
    )
    workspace.deploy.deploy("toy", "1", "test setup", SETUP)


def register_toy_models(workspace: Workspace) -> None:
    registry = workspace.registry
    registry.register_version(
        "toy",
        sio.dumps(toy_classifier()),
        filename="toy.skops",
        validity=toy_validity(),
        registered_by="tests",
        signature=TOY_SIGNATURE,
        class_names=TOY_CLASS_NAMES,
    )
    workspace.deploy.deploy("toy", "1", "test setup", SETUP)
    registry.register_version(
        "price",
        sio.dumps(price_model()[0]),
        filename="price.skops",
        validity=price_validity(),
        registered_by="tests",
        signature=PRICE_SIGNATURE,
    )
    workspace.deploy.deploy("price", "1", "test setup", SETUP)


def oip_tensors(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One OIP tensor per toy feature, the way a stock client sends them."""
    datatypes = {
        "amount": "FP64",
        "count": "INT64",
        "country": "BYTES",
        "online": "BOOL",
        "note": "BYTES",
    }
    return {
        "inputs": [
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": datatype,
                "data": [row[name] for row in rows],
            }
            for name, datatype in datatypes.items()
        ]
    }


@dataclass
class ServerProcess:
    process: subprocess.Popen[str]
    url: str
    data_dir: Path
    # The server's last output lines, kept so that a server that died can say why.
    output: deque[str] = field(default_factory=lambda: deque(maxlen=80))

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        else:
            # It ended before anyone stopped it: show why (pytest prints this on failure).
            print(f"server exited by itself with {self.process.returncode}; its last output:")
            print("".join(self.output))
        return self.process.wait(timeout=timeout)

    def _drain(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``condition`` every 20 ms (outside a Qt test: qtbot.waitUntil there)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout_s:g} s waiting: {what}"
        time.sleep(0.02)


def make_settings(tmp_path, database_url: str | None = None, **overrides) -> Settings:  # type: ignore[no-untyped-def]
    """Test settings: no token cache, a short log flush interval."""
    base = Settings.load(data_dir=tmp_path, database_url=database_url)
    values = {**base.__dict__, "token_cache_ttl_s": 0.0, "log_flush_interval_s": 0.05}
    values.update(overrides)
    return Settings(**values)


# The ``toy_data_dir`` fixture: prepare_toy_data_dir, copied from a template made once per process.
ToyDataDir = Callable[[Path], str]


def prepare_toy_data_dir(data_dir: Path) -> str:
    """A data directory with the toy models registered; returns its admin token."""
    workspace = Workspace.open(make_settings(data_dir))
    try:
        register_toy_models(workspace)
        return workspace.admin_token()
    finally:
        workspace.close()


def start_server(
    data_dir: Path,
    *extra: str,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    port: int = 0,
) -> ServerProcess:
    """A real `servedeck-server serve` (on a free port by default), once it said it is ready."""
    return launch(
        ["serve", "--port", str(port), "--log-level", "warning", *extra], data_dir, env, timeout
    )


def post_predictions(
    url: str, token: str, count: int, *, model: str = "toy", entity: str = "card"
) -> list[str]:
    """`count` record-form predictions of TOY_ROW, entity ids `<entity>-<i>`; their request ids."""
    session = requests.Session()
    request_ids = []
    for i in range(count):
        response = session.post(
            f"{url}/v1/models/{model}:predict",
            headers={"Authorization": f"Bearer {token}"},
            json={"instances": [TOY_ROW], "entity_id": f"{entity}-{i}"},
            timeout=10,
        )
        response.raise_for_status()
        request_ids.append(response.json()["request_id"])
    return request_ids


def logged_rows(workspace: Workspace) -> int:
    """Rows in the prediction log."""
    with workspace.sessions() as session:
        return int(session.scalar(select(func.count()).select_from(PredictionRow)) or 0)


def launch(
    command: list[str], data_dir: Path, env: dict[str, str] | None = None, timeout: float = 60
) -> ServerProcess:
    """Run a `servedeck-server` command that serves, and wait for its ready line."""
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", *command, "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, **(env or {})},
    )
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.startswith("SERVEDECK READY "):
            server = ServerProcess(process, line.split()[-1], data_dir)
            server.output.extend(seen)
            # Keep draining output so a chatty server never blocks on a full pipe.
            threading.Thread(target=server._drain, daemon=True).start()
            return server
    process.kill()
    raise RuntimeError("server did not become ready:\n" + "".join(seen))


def sample_log_rows(request_id: str, n: int = 1) -> list[LogRow]:
    """``n`` log rows of one request, with text that JSON must escape (quotes, a newline)."""
    return [
        log_row(
            request_id=request_id,
            row_index=i,
            created_at=time.time(),
            model="toy",
            version="1",
            route="active",
            entity_id=f"user-{i}",
            features={"amount": 12.5 + i, "country": "DE", "note": 'tricky "],[" text\n'},
            outputs={"predict": 1, "predict_proba": [0.25, 0.75]},
            latency_ms=1.25,
            token_name="test",
        )
        for i in range(n)
    ]


def child_pids(pid: int) -> list[int]:
    """The child processes of ``pid`` (Linux; none elsewhere). Every thread's children: the
    log writer is restarted from a thread, and a thread's children are listed under it alone."""
    found: list[int] = []
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return found
    for task in tasks:
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:  # the thread ended meanwhile
            continue
    return found


def command_line(pid: int) -> str:
    """A process's command line ("" once it has ended)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def child_pids_running(pid: int, module: str) -> list[int]:
    """The children of ``pid`` running ``python -m module`` (the log writer
    ``backend.predictions.writer``, the watcher ``backend.watcher``)."""
    return [child for child in child_pids(pid) if f"-m {module}" in command_line(child)]
