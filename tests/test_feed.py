"""The live feed's ring: events as streams send them, and nothing for the collector to scan."""

from __future__ import annotations

import gc

import orjson

from backend.monitoring.feed import PredictionFeed
from backend.predictions.rows import LogRow, log_row


def _rows(request_id: str, n: int, model: str = "fraud") -> list[LogRow]:
    return [
        log_row(
            request_id=request_id,
            row_index=i,
            created_at=1_700_000_000.0 + i,
            model=model,
            version="2",
            route="canary",
            entity_id=f"card-{i}",
            features={"amount": 12.5 * (i + 1), "country": "DE", "online": True},
            outputs={"predict": i % 2, "predict_proba": [0.25, 0.75]},
            latency_ms=0.5,
            token_name="shop",
        )
        for i in range(n)
    ]


def test_events_carry_every_field_of_the_logged_row() -> None:
    feed = PredictionFeed(capacity=10)
    feed.publish(_rows("r1", 2), [0, 1], [0.75, None])
    events, missed, position = feed.since(0)
    assert missed == 0 and position == 2
    wire = orjson.loads(orjson.dumps({"events": events}))["events"]
    assert wire[1] == {
        "seq": 2,
        "request_id": "r1",
        "row": 1,
        "created_at": 1_700_000_001.0,
        "model": "fraud",
        "version": "2",
        "route": "canary",
        "decision": "answered",
        "top_output": 1,
        "confidence": None,
        "latency_ms": 0.5,
        "entity_id": "card-1",
        "features": {"amount": 25.0, "country": "DE", "online": True},
        "outputs": {"predict": 1, "predict_proba": [0.25, 0.75]},
    }
    assert wire[0]["confidence"] == 0.75 and wire[0]["top_output"] == 0


def test_model_filter_and_missed_count() -> None:
    feed = PredictionFeed(capacity=3)
    feed.publish(_rows("a", 2, "fraud"), [0, 0], [0.9, 0.9])
    feed.publish(_rows("b", 3, "ride-price"), [1.5, 1.6, 1.7], [None] * 3)
    events, missed, position = feed.since(1, {"ride-price"})
    assert missed == 1  # event 2 left the ring of three before it was read
    assert [e["top_output"] for e in events] == [1.5, 1.6, 1.7] and position == 5
    assert feed.since(5) == ([], 0, 5)


def test_several_models_are_read_together() -> None:
    """A token scoped to several models follows all of them in one stream."""
    feed = PredictionFeed()
    feed.publish(_rows("a", 1, "fraud"), [0], [0.9])
    feed.publish(_rows("b", 1, "ride-price"), [1.5], [None])
    feed.publish(_rows("c", 1, "churn"), [1], [0.6])
    events, missed, position = feed.since(0, {"fraud", "churn"})
    assert [e["model"] for e in events] == ["fraud", "churn"] and (missed, position) == (0, 3)
    assert [e["model"] for e in feed.since(0)[0]] == ["fraud", "ride-price", "churn"]


def test_the_ring_holds_nothing_the_garbage_collector_must_scan() -> None:
    # Thousands of events live in the ring: objects the collector tracks there made every
    # young-generation collection under load scan them again.
    feed = PredictionFeed(capacity=1_000)
    for n in range(200):
        feed.publish(_rows(f"r{n}", 3), [0, 1, 0], [0.6, 0.7, 0.8])
    gc.collect()
    events = list(feed._events)
    assert len(events) == 600
    assert not [e for e in events if gc.is_tracked(e)]
