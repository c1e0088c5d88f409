"""Micro-batching: concurrent requests share model calls; cheap models run on the loop."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from backend.registry import CompiledSignature, LoadedVersion, Prediction
from backend.schemas import FeatureSpec
from backend.serving.batcher import MicroBatcher


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


def test_cheap_models_run_inline_and_slow_ones_on_the_thread() -> None:
    cheap, _ = _batcher(0.0)
    slow, _ = _batcher(0.01)

    async def sequential(batcher: MicroBatcher) -> None:
        for _ in range(5):
            await batcher.predict([{"x": 1.0}])

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
