"""A real `servedeck-server serve` process: handshake, stock OIP client, shutdown durability."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator

import numpy as np
import pytest
import requests

from backend.workspace import Workspace
from tests.helpers import TOY_ROW, ServerProcess, logged_rows, start_server


@pytest.fixture
def server(workspace: Workspace) -> Iterator[ServerProcess]:
    env = {
        "SERVEDECK_DATABASE_URL": workspace.settings.database_url,
        "SERVEDECK_LOG_FLUSH_INTERVAL": "0.2",
    }
    running = start_server(workspace.settings.data_dir, env=env)
    yield running
    running.stop()


def test_ready_handshake_and_requests(server: ServerProcess, workspace: Workspace) -> None:
    info = json.loads(workspace.settings.server_info_file.read_text())
    assert info["url"] == server.url and info["pid"] == server.process.pid
    headers = {"Authorization": f"Bearer {workspace.admin_token()}"}
    assert requests.get(f"{server.url}/v2/health/ready", timeout=5).json() == {"ready": True}
    response = requests.post(
        f"{server.url}/v1/models/toy:predict",
        headers=headers,
        json={"instances": [TOY_ROW]},
        timeout=5,
    )
    assert response.status_code == 200 and response.json()["model_version"] == "1"
    # The first fetch builds the schema of every route (~2 s of CPU on a busy 2-core machine):
    # this checks that it is served, not how fast.
    document = requests.get(f"{server.url}/openapi.json", timeout=60).json()
    assert document["info"]["title"] == "ServeDeck"


def test_stock_tritonclient_works_unchanged(server: ServerProcess, workspace: Workspace) -> None:
    import tritonclient.http as triton

    token = workspace.admin_token()
    client = triton.InferenceServerClient(url=server.url.removeprefix("http://"))
    headers = {"Authorization": f"Bearer {token}"}
    assert client.is_server_live()
    assert client.is_model_ready("toy", headers=headers)
    metadata = client.get_model_metadata("toy", headers=headers)
    assert metadata["name"] == "toy"
    tensors = []
    for name, datatype, values in (
        ("amount", "FP64", np.array([120.5, 9000.0])),
        ("count", "INT64", np.array([3, 1], dtype=np.int64)),
        ("country", "BYTES", np.array(["DE", "US"], dtype=object)),
        ("online", "BOOL", np.array([True, False])),
        ("note", "BYTES", np.array(["", ""], dtype=object)),
    ):
        tensor = triton.InferInput(name, [2], datatype)
        tensor.set_data_from_numpy(values, binary_data=False)
        tensors.append(tensor)
    # By default tritonclient asks for binary outputs; we answer JSON, which it reads as well.
    result = client.infer("toy", tensors, headers=headers)
    labels = result.as_numpy("predict")
    probabilities = result.as_numpy("predict_proba")
    assert labels.shape == (2,) and probabilities.shape == (2, 2)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    bad = triton.InferInput("country", [2], "BYTES")
    bad.set_data_from_numpy(np.array(["DE", "XX"], dtype=object), binary_data=False)
    with pytest.raises(triton.InferenceServerException, match="unknown category 'XX'"):
        client.infer("toy", [tensors[0], tensors[1], bad, *tensors[3:]], headers=headers)


def test_graceful_stop_flushes_every_accepted_prediction(
    server: ServerProcess, workspace: Workspace
) -> None:
    headers = {"Authorization": f"Bearer {workspace.admin_token()}"}
    session = requests.Session()
    accepted = 0
    for _ in range(150):
        response = session.post(
            f"{server.url}/v1/models/toy:predict",
            headers=headers,
            json={"instances": [TOY_ROW]},
            timeout=5,
        )
        accepted += response.status_code == 200
    # uvicorn re-raises SIGTERM after its graceful shutdown, so -SIGTERM is a clean stop.
    assert server.stop() in (0, -signal.SIGTERM)
    assert logged_rows(workspace) == accepted == 150
    assert not workspace.settings.server_info_file.exists()


def test_the_ready_line_comes_once_connections_are_accepted(workspace: Workspace) -> None:
    import socket
    from urllib.parse import urlsplit

    env = {"SERVEDECK_DATABASE_URL": workspace.settings.database_url}
    for _ in range(2):
        running = start_server(workspace.settings.data_dir, env=env)
        try:
            address = urlsplit(running.url)
            # At once, no retry: a ready line printed before uvicorn listens is refused here.
            with socket.create_connection((address.hostname, address.port), timeout=2):
                pass
        finally:
            running.stop()
