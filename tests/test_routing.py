"""The canary split: sticky per entity, the asked share within statistical tolerance."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from backend.schemas import RolloutChecks, RolloutState
from backend.serving.routing import ModelRouting, goes_to_canary

ENTITIES = [f"card-{i}" for i in range(20_000)]


def _routing(percent: float, phase: str = "canary") -> ModelRouting:
    now = datetime.now(UTC)
    rollout = RolloutState(
        candidate="2", mode="canary", phase=phase, steps=[percent], step_index=0,  # type: ignore[arg-type]
        percent=percent if phase == "canary" else 0.0, paused=False, min_dwell_s=0,
        min_samples=0, checks=RolloutChecks(), started_by="t", started_at=now, step_started_at=now,
    )  # fmt: skip
    return ModelRouting(active="1", generation=1, rollout=rollout)


@pytest.mark.parametrize("percent", [1.0, 5.0, 25.0, 50.0])
def test_the_canary_share_is_the_asked_percentage(percent: float) -> None:
    routing = _routing(percent)
    share = sum(goes_to_canary(routing, "fraud", e) for e in ENTITIES) / len(ENTITIES)
    p = percent / 100
    # Four standard errors of a binomial share: fails by chance about once in 16,000 runs.
    assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / len(ENTITIES))


def test_an_entity_keeps_its_version_and_a_larger_share_only_adds_entities() -> None:
    small, large = _routing(5.0), _routing(25.0)
    in_small = {e for e in ENTITIES if goes_to_canary(small, "fraud", e)}
    assert in_small == {e for e in ENTITIES if goes_to_canary(small, "fraud", e)}
    in_large = {e for e in ENTITIES if goes_to_canary(large, "fraud", e)}
    assert in_small < in_large


def test_models_split_independently_and_shadow_or_none_sends_nobody() -> None:
    routing = _routing(25.0)
    fraud = {e for e in ENTITIES if goes_to_canary(routing, "fraud", e)}
    price = {e for e in ENTITIES if goes_to_canary(routing, "ride-price", e)}
    overlap = len(fraud & price) / len(ENTITIES)
    assert abs(overlap - 0.25 * 0.25) < 0.01  # independent draws, not the same entities
    assert not any(goes_to_canary(_routing(25.0, "shadow"), "fraud", e) for e in ENTITIES[:500])
    assert _routing(25.0, "shadow").shadow == "2" and _routing(25.0).shadow is None
    assert not goes_to_canary(ModelRouting("1", 1), "fraud", "card-1")


def test_without_an_entity_each_request_is_drawn_on_its_own() -> None:
    routing = _routing(50.0)
    draws = [goes_to_canary(routing, "fraud", None) for _ in range(4_000)]
    assert 0.45 < sum(draws) / len(draws) < 0.55
