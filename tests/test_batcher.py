"""Micro-batching: concurrent requests share model calls; cheap models run on the loop."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from backend.api.app import create_app
from backend.registry import CompiledSignature, LoadedVersion, Prediction
from backend.schemas import FeatureSpec
from backend.serving.batcher import MicroBatcher
from backend.workspace import Workspace
from tests.helpers import TOY_ROW


class _Recorder:
    """A real predict function standing in for an estimator, with a chosen cost per call."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.calls: list[int] = []

    def predict_proba(self, design: Any) -> Any:
        import numpy as np

        self.calls.append(len(design))
        time.sleep(self.seconds)
        return np.tile([0.25, 0.75], (len(design), 1))

    classes_ = __import__("numpy").array([0, 1])


def _batcher(seconds: float, **kwargs: Any) -> tuple[MicroBatcher, _Recorder]:
    recorder = _Recorder(seconds)
    loaded = LoadedVersion(
        "m",
        "1",
        recorder,
        CompiledSignature([FeatureSpec(name="x", type="float")]),
        "classification",
        [0, 1],
    )
    return MicroBatcher(loaded, ThreadPoolExecutor(1), **kwargs), recorder


def test_concurrent_requests_share_calls_and_get_their_own_rows() -> None:
    batcher, recorder = _batcher(0.01, max_batch_size=64)

    async def scenario() -> list[Prediction]:
        return await asyncio.gather(
            *(batcher.predict([{"x": float(i)}] * (1 + i % 3)) for i in range(40))
        )

    results = asyncio.run(scenario())
    assert [len(r.labels) for r in results] == [1 + i % 3 for i in range(40)]
    assert all(r.probabilities and r.probabilities[0] == [0.25, 0.75] for r in results)
    assert sum(recorder.calls) == sum(1 + i % 3 for i in range(40))
    assert len(recorder.calls) < 10, recorder.calls
    assert max(recorder.calls) <= 64


@pytest.mark.serial  # the inline choice measures the model's cost: not beside another worker
def test_cheap_models_run_inline_and_slow_ones_on_the_thread() -> None:
    cheap, _ = _batcher(0.0)
    slow, _ = _batcher(0.01)

    async def sequential(batcher: MicroBatcher) -> None:
        for _ in range(5):
            await batcher.predict([{"x": 1.0}])

    # A first predict in a fresh process pays one-time costs (lazy imports, first frames)
    # that say nothing of the model: alone in the serial run, this test is such a process.
    warm, _ = _batcher(0.0)
    asyncio.run(sequential(warm))
    asyncio.run(sequential(cheap))
    asyncio.run(sequential(slow))
    # The first call is measured on the thread; later cheap ones run inline unless a pause on
    # a busy machine made one of them look slow.
    assert 1 <= cheap.inline_batches <= 4
    assert slow.inline_batches == 0


def test_a_failing_model_fails_only_its_batch() -> None:
    batcher, recorder = _batcher(0.0)

    def broken(_design: Any) -> Any:
        raise RuntimeError("model exploded")

    recorder.predict_proba = broken  # type: ignore[method-assign]

    async def scenario() -> None:
        with pytest.raises(RuntimeError, match="exploded"):
            await batcher.predict([{"x": 1.0}])

    asyncio.run(scenario())


def test_lone_requests_are_not_taken_for_a_crowd_and_a_crowd_is_still_batched(
    sqlite_workspace: Workspace,
) -> None:
    """Lone requests may skip the loop turn that counts a crowd; a burst must still batch."""
    app = create_app(workspace=sqlite_workspace)
    serving = app.state.serving
    headers = {"Authorization": f"Bearer {sqlite_workspace.admin_token()}"}

    async def scenario() -> tuple[list[int], int, float, int]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://deck") as http:

                async def post() -> int:
                    response = await http.post(
                        "/v1/models/toy:predict", headers=headers, json={"instances": [TOY_ROW]}
                    )
                    return response.status_code

                # The first call measures the model on its thread; then it counts as cheap.
                statuses = [await post() for _ in range(30)]
                batcher = serving.state.loaded("toy", "1")
                assert batcher is not None
                lone_calls, crowded_after_lone = batcher.calls, serving.crowd.last_crowded
                statuses += await asyncio.gather(*(post() for _ in range(48)))
                return statuses, lone_calls, crowded_after_lone, batcher.calls - lone_calls

    statuses, lone_calls, crowded_after_lone, crowd_calls = asyncio.run(scenario())
    assert statuses == [200] * 78
    assert lone_calls == 30  # one model call per lone request
    assert crowded_after_lone < 0, "requests one at a time were taken for a crowd"
    assert serving.crowd.last_crowded > 0
    assert crowd_calls < 48 / 2, f"48 concurrent requests took {crowd_calls} model calls"
