"""A model file is loaded for registration in the probe process: a hostile or broken file
gets a 4xx naming why, and never runs code in, crashes or exhausts the server."""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import signal
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import skops.io as sio
from fastapi.testclient import TestClient
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from backend.api.app import create_app
from backend.deploy.audit import list_events
from backend.errors import InputError
from backend.registry import Registry
from backend.registry.sandbox import ModelProbe
from backend.workspace import Workspace
from tests.helpers import TOY_SIGNATURE, toy_classifier, toy_validity


def write_pid(path: str) -> list[int]:
    """Run by unpickling (see RecordsWhereItRuns): leaves the loading process's id behind."""
    Path(path).write_text(str(os.getpid()))
    return [1, 2, 3]


class RecordsWhereItRuns:
    def __init__(self, path: str):
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (write_pid, (self.path,))


def crash() -> None:
    """Run by unpickling: the loading process dies as a segfaulting extension would."""
    os.kill(os.getpid(), signal.SIGSEGV)


class Crashes:
    def __reduce__(self) -> tuple[Any, ...]:
        return (crash, ())


class Sleeps:
    def __reduce__(self) -> tuple[Any, ...]:
        return (time.sleep, (60,))


class EatsMemory:
    def __reduce__(self) -> tuple[Any, ...]:
        return (bytearray, (64 * 2**30,))


class Exits:
    def __reduce__(self) -> tuple[Any, ...]:
        return (os._exit, (3,))


@pytest.fixture
def http(sqlite_workspace: Workspace) -> Iterator[TestClient]:
    with TestClient(create_app(workspace=sqlite_workspace)) as test_client:
        yield test_client


def register(
    client: TestClient,
    token: str,
    data: bytes,
    filename: str = "m.skops",
    **metadata: Any,
) -> Any:
    meta = {
        "validity": toy_validity().model_dump(mode="json"),
        "signature": [s.model_dump() for s in TOY_SIGNATURE],
        **metadata,
    }
    return client.post(
        "/api/v1/models/toy/versions",
        headers={"Authorization": f"Bearer {token}"},
        files={"artifact": (filename, data, "application/octet-stream")},
        data={"metadata": json.dumps(meta)},
    )


def test_a_pickles_code_runs_in_the_probe_never_in_the_server(
    http: TestClient, sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    marker = tmp_path / "ran-in"
    admin = sqlite_workspace.admin_token()
    answer = register(
        http,
        admin,
        pickle.dumps(RecordsWhereItRuns(str(marker))),
        "m.pkl",
        trust_pickle=True,
        trust_reason="testing isolation",
    )
    assert answer.status_code == 422 and answer.json()["field"] == "artifact"
    assert "no model" in answer.json()["reason"] and "no predict method" in answer.json()["reason"]
    ran_in = int(marker.read_text())
    assert ran_in != os.getpid()


# Only the hang needs a short deadline; the others get one that a busy CI machine (forking,
# loading and inspecting took over 2 s there once) cannot reach, so they say what they say.
@pytest.mark.parametrize(
    ("hostile", "timeout_s", "says"),
    [
        (Crashes(), 60, "crashed the loader (it was ended by signal SIGSEGV)"),
        (Exits(), 60, "crashed the loader (it exited with code 3)"),
        (Sleeps(), 2, "took longer than 2 s"),
        (EatsMemory(), 60, "more memory than the 256 MiB"),
    ],
)
def test_a_crash_a_hang_or_a_memory_bomb_is_a_4xx(
    sqlite_workspace: Workspace, hostile: Any, timeout_s: float, says: str
) -> None:
    probe = ModelProbe(timeout_s=timeout_s, memory_bytes=256 * 2**20)
    registry = Registry(sqlite_workspace.sessions, sqlite_workspace.registry.store, probe)
    data = pickle.dumps(hostile)
    try:
        with pytest.raises(InputError) as caught:
            registry.register_version(
                "toy",
                data,
                filename="m.pkl",
                validity=toy_validity(),
                registered_by="tests",
                signature=TOY_SIGNATURE,
                trust_pickle=True,
                trust_reason="testing isolation",
            )
        assert caught.value.status == 422 and caught.value.field == "artifact"
        assert says in caught.value.reason
        # The probe survives its child and registers a good file next.
        info = registry.register_version(
            "toy",
            sio.dumps(toy_classifier()),
            filename="m.skops",
            validity=toy_validity(),
            registered_by="tests",
            signature=TOY_SIGNATURE,
        )
        assert info.version == "2"
    finally:
        probe.close()
    # A refused file is never stored, and its staged copy is gone.
    assert not registry.store.path_for(hashlib.sha256(data).hexdigest()).exists()
    assert not list(registry.store.root.glob(".probe-*"))


def test_only_an_admin_of_every_model_may_trust_a_pickle_and_must_say_why(
    http: TestClient, sqlite_workspace: Workspace
) -> None:
    tokens = sqlite_workspace.tokens
    data = pickle.dumps(toy_classifier())
    engineer = tokens.create("eng", "engineer")
    refused = register(http, engineer, data, "m.pkl", trust_pickle=True, trust_reason="mine")
    assert refused.status_code == 403, refused.text
    scoped_admin = tokens.create("toy-admin", "admin", models=["toy"])
    refused = register(http, scoped_admin, data, "m.pkl", trust_pickle=True, trust_reason="x")
    assert refused.status_code == 403, refused.text
    admin = sqlite_workspace.admin_token()
    no_reason = register(http, admin, data, "m.pkl", trust_pickle=True)
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "trust_reason"
    accepted = register(
        http, admin, data, "m.pkl", trust_pickle=True, trust_reason="built by CI job 1234"
    )
    assert accepted.status_code == 201, accepted.text
    version = accepted.json()["version"]
    events = [
        e for e in list_events(sqlite_workspace.sessions, model="toy") if e.action == "trust_pickle"
    ]
    assert [(e.actor, e.role, e.to_version, e.reason) for e in events] == [
        ("admin", "admin", version, "built by CI job 1234")
    ]
    # The engineer's skops registrations are unaffected.
    assert register(http, engineer, sio.dumps(toy_classifier())).status_code == 201


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, content in members.items():
            archive.writestr(name, content)
    return buffer.getvalue()


def test_a_file_that_holds_no_servable_model_is_a_4xx(
    http: TestClient, sqlite_workspace: Workspace
) -> None:
    admin = sqlite_workspace.admin_token()
    good = sio.dumps(toy_classifier())
    cases: list[tuple[bytes, str, str]] = [
        (sio.dumps([1, 2, 3]), "m.skops", "a list has no predict method"),
        (sio.dumps({"weights": [1.0]}), "m.skops", "a dict has no predict method"),
        (sio.dumps(StandardScaler().fit([[1.0], [2.0]])), "m.skops", "no predict method"),
        (good[: len(good) // 2], "m.skops", "not a readable skops file"),
        (_zip({"model.txt": b"hello"}), "m.skops", "not a readable skops file"),
        (_zip({"schema.json": b"{not json"}), "m.skops", "not a readable skops file"),
        (b"\x00" * 64, "m.skops", "not a readable skops file"),
        (b"PK\x03\x04", "m.skops", "not a readable skops file"),
    ]
    for data, filename, says in cases:
        answer = register(http, admin, data, filename)
        assert answer.status_code == 422, (says, answer.text)
        assert answer.json()["field"] == "artifact" and says in answer.json()["reason"], answer.text
    empty = register(http, admin, b"", "m.skops")
    assert empty.status_code == 422 and empty.json()["field"] == "artifact"
    huge = register(http, admin, b"PK\x03\x04" + b"\x00" * (9 * 2**20), "m.skops")
    assert huge.status_code == 413 and huge.json()["field"] == "body"
    # A model that fails on its own example: fitted on three columns, given two.
    three = LogisticRegression().fit([[0, 0, 0], [1, 1, 1], [0, 1, 0], [1, 0, 1]], [0, 1, 0, 1])
    two = [{"name": "x1", "type": "float"}, {"name": "x2", "type": "float"}]
    example = {"x1": 1.0, "x2": 0.0}
    misfit = register(
        http,
        admin,
        sio.dumps(three),
        signature=two,
        validity={
            **toy_validity().model_dump(mode="json"),
            "end_to_end": [{"inputs": example, "expected": 0}],
            "confidence_set": [{"inputs": example, "label": 0}],
        },
    )
    assert misfit.status_code == 422 and misfit.json()["field"] == "artifact", misfit.text
    assert "cannot predict on its own example" in misfit.json()["reason"]


def test_a_model_that_answers_several_values_per_row_is_a_4xx(
    http: TestClient, sqlite_workspace: Workspace
) -> None:
    """A multi-output regressor answers an array per row, which no protocol route, log row,
    metric or drift count takes: refused at registration (it was accepted, then served arrays)."""
    features = np.random.default_rng(0).normal(size=(50, 2))
    two = [{"name": "x1", "type": "float"}, {"name": "x2", "type": "float"}]
    example = {"x1": 1.0, "x2": 0.0}
    validity = {
        **toy_validity().model_dump(mode="json"),
        "metric": "rmse",
        "acceptable_range": [0, 10],
        "end_to_end": [{"inputs": example, "expected": 1.0}],
        "confidence_set": [{"inputs": example, "label": 1.0}],
    }
    for width in (2, 3):
        targets = np.column_stack([features[:, 0] * k for k in range(1, width + 1)])
        answer = _register_regressor(
            http, sqlite_workspace, Ridge().fit(features, targets), two, validity
        )
        assert answer.status_code == 422, answer.text
        assert answer.json()["field"] == "artifact", answer.text
        assert f"an array of shape [{width}] for one row" in answer.json()["reason"], answer.text
    one = _register_regressor(
        http, sqlite_workspace, Ridge().fit(features, features[:, 0]), two, validity
    )
    assert one.status_code == 201, one.text


def _register_regressor(
    http: TestClient, workspace: Workspace, model: Any, signature: Any, validity: Any
) -> Any:
    metadata = {"signature": signature, "task": "regression", "validity": validity}
    return http.post(
        "/api/v1/models/several/versions",
        headers={"Authorization": f"Bearer {workspace.admin_token()}"},
        files={"artifact": ("m.skops", sio.dumps(model), "application/octet-stream")},
        data={"metadata": json.dumps(metadata)},
    )
