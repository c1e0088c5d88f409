"""The Lineage page against a real backend: the empty state, then a graph whose feedback loop
is drawn in red and written out in words, as versions declare their feature sources."""

from __future__ import annotations

import json
from collections.abc import Callable

import requests
import skops.io as sio
from pytestqt.qtbot import QtBot

from console.context import ConsoleContext
from console.pages import pages_for
from console.pages.lineage import LineagePage
from console.widgets.lineage_graph import EMPTY_TITLE, place_nodes, waypoint
from tests.console.conftest import Backend
from tests.helpers import PRICE_SIGNATURE, price_model, price_validity

TIMEOUT_MS = 20_000


def _register(backend: Backend, name: str, sources: list[dict[str, str]], **extra: object) -> None:
    metadata = {
        "validity": price_validity().model_dump(mode="json"),
        "signature": [s.model_dump() for s in PRICE_SIGNATURE],
        "feature_sources": sources,
        **extra,
    }
    answer = requests.post(
        f"{backend.url}/api/v1/models/{name}/versions",
        headers={"Authorization": f"Bearer {backend.admin_token}"},
        files={"artifact": ("p.skops", sio.dumps(price_model()[0]), "application/octet-stream")},
        data={"metadata": json.dumps(metadata)},
        timeout=60,
    )
    assert answer.status_code == 201, answer.text


def _items(page: LineagePage, kind: str) -> list[object]:
    return [item for item in page.view.scene.items() if item.data(0) == kind]


def test_the_page_draws_declared_lineage_with_its_loop_in_red(
    qtbot: QtBot, make_context: Callable[[str, str], ConsoleContext], backend: Backend
) -> None:
    assert all(LineagePage in pages_for(role) for role in ("admin", "engineer"))
    assert LineagePage not in pages_for("support")
    assert LineagePage not in pages_for("client")
    page = LineagePage(make_context(backend.url, backend.admin_token))
    qtbot.addWidget(page)
    page.resize(1000, 700)
    page.show()
    page.page_shown()
    # The toy workspace declares no lineage: the page says so and how to declare it.
    qtbot.waitUntil(lambda: page.graph is not None, timeout=TIMEOUT_MS)
    assert not page.view.showing_graph
    assert page.view.empty_title.text() == EMPTY_TITLE
    assert "--feature-source" in page.view.empty_text.text()

    # fraud's output feeds risk, whose output feeds fraud (registered anyway, with a reason).
    _register(backend, "fraud", [{"feature": "x1", "model": "risk", "output": "predict_proba"}])
    _register(backend, "risk", [{"feature": "x2", "model": "fraud"}], force_lineage=True,
              lineage_reason="the test's loop")  # fmt: skip
    _register(backend, "report", [{"feature": "x1", "model": "risk"}])
    page.refresh()
    qtbot.waitUntil(
        lambda: page.graph is not None and len(page.graph.edges) == 3, timeout=TIMEOUT_MS
    )
    assert page.view.showing_graph
    loop_nodes = {item.data(1) for item in _items(page, "loop-node")}  # type: ignore[attr-defined]
    assert loop_nodes == {"fraud", "risk"}
    assert {item.data(1) for item in _items(page, "node")} == {"report", "toy", "price"}  # type: ignore[attr-defined]
    assert len(_items(page, "loop-edge")) == 2 and len(_items(page, "edge")) == 1
    words = page.view.loops.text()
    assert "Feedback loop: fraud -&gt; risk -&gt; fraud" in words
    assert "fraud's output feeds risk (as 'x2')" in words and "held-out traffic" in words
    assert "1 feedback loop" in page.summary.text()


def test_upstream_models_sit_left_of_what_they_feed() -> None:
    placed = place_nodes(
        ["a", "b", "c", "d", "lone"], [("a", "b"), ("b", "c"), ("a", "c"), ("c", "a"), ("d", "d")]
    )
    # The loop's closing arrow (c -> a) places nothing: a, b, c go left to right.
    assert [placed[n].column for n in ("a", "b", "c")] == [0, 1, 2]
    assert placed["d"].column == 0 and placed["lone"].column == 0
    # a -> c skips b's column: it passes through an empty slot there, not through b.
    assert placed[waypoint("a", "c", 1)].column == 1
    assert len({(p.column, p.row) for p in placed.values()}) == len(placed) == 6
