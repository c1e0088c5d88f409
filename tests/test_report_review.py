"""Error reports under hostile use: racing triage changes, query text the search engines
read their own way, values beyond what the store holds; on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import pytest

from backend.feedback.report_rules import TRANSITIONS
from backend.workspace import Workspace
from tests.report_helpers import ReportWorld, report_world


@pytest.fixture
def world(workspace: Workspace) -> Iterator[ReportWorld]:
    yield from report_world(workspace)


def test_racing_status_changes_never_record_a_forbidden_transition(world: ReportWorld) -> None:
    """Two staff move one new report at once, to statuses that rule each other out: one wins,
    the other is refused from the winner's status; history follows the workflow."""
    request_id = world.predict()
    reports = [world.file(request_id=request_id)["id"] for _ in range(8)]
    pool = ThreadPoolExecutor(2)
    for report_id in reports:
        barrier = Barrier(2)

        def move(status: str, report_id: int = report_id, barrier: Barrier = barrier) -> int:
            barrier.wait()
            return int(world.patch(report_id, status=status).status_code)

        answers = sorted(pool.map(move, ("confirmed", "not_model_error")))
        assert answers == [200, 409], (report_id, answers)
        moves = [c for c in world.detail(report_id)["history"] if c["kind"] == "status"]
        assert len(moves) == 1, moves
        assert moves[0]["after"] in TRANSITIONS[moves[0]["before"]]
    pool.shutdown()


def test_search_words_the_text_index_does_not_keep(world: ReportWorld) -> None:
    """PostgreSQL's English configuration drops words like "the" and "is"; a search holding
    them finds what SQLite finds, and one of nothing else says so."""
    found = world.file(description="The model is wrong about the groceries")["id"]
    for q in ("the groceries", "model is wrong", "groceries!"):
        assert [r["id"] for r in world.inbox(q=q)["reports"]] == [found], q
        counts = world.client.get(
            "/api/v1/reports/counts", headers=world.headers["support"], params={"q": q}
        )
        assert counts.status_code == 200 and counts.json()["total"] == 1, q
    only_common = world.client.get(
        "/api/v1/reports", headers=world.headers["support"], params={"q": "the is"}
    )
    if world.workspace.engine.dialect.name == "postgresql":
        assert (only_common.status_code, only_common.json()["field"]) == (422, "q")
    else:  # FTS5 keeps every word
        assert only_common.status_code == 200 and only_common.json()["total"] == 1


def test_query_values_the_store_cannot_hold_are_refused(world: ReportWorld) -> None:
    world.file()
    for params in (
        {"assignee": "a\x00b"},
        {"model": "to\x00y"},
        {"version": "1\x00"},
        {"tag": "x\x00"},
        {"q": "groceries\x00"},
        {"q": "___"},
        {"q": "🙂 🙂"},
        {"q": "x" * 10_000},
        {"limit": 10**6},
        {"sort": "id; drop table error_reports"},
        {"order": "sideways"},
        {"status": "lost"},
        {"filed_after": "nan"},
        {"min_age_s": "inf"},
        {"max_age_s": "-1"},
        {"after": "not-a-cursor"},
        {"after": "W10"},  # base64 of "[]"
        {"q": 'NEAR("a" "b", 2) OR -c*'},
        {"q": "description:card"},
    ):
        answer = world.client.get(
            "/api/v1/reports", headers=world.headers["support"], params=params
        )
        assert answer.status_code in (200, 400, 422), (params, answer.text)
        if answer.status_code != 200:
            assert answer.json()["field"], (params, answer.text)


def test_a_duplicate_link_beyond_any_report_id_is_unknown(world: ReportWorld) -> None:
    report_id = world.file()["id"]
    for original in (2**31, 2**63, 2**70):
        answer = world.patch(report_id, status="duplicate", duplicate_of=original)
        assert answer.status_code in (404, 422), (original, answer.text)
        assert answer.json()["field"] == "duplicate_of"


def test_an_empty_change_changes_nothing(world: ReportWorld) -> None:
    report_id = world.file()["id"]
    before = world.detail(report_id)
    answer = world.patch(report_id)
    assert answer.status_code in (200, 422), answer.text
    assert world.detail(report_id)["history"] == before["history"]


def test_bulk_changes_racing_over_the_same_reports_both_apply(world: ReportWorld) -> None:
    """Two staff change the same reports in bulk, naming them in opposite orders: each waits
    for the other, neither fails (PostgreSQL would find a deadlock if rows were locked in the
    order given)."""
    request_id = world.predict()
    reports = [world.file(request_id=request_id)["id"] for _ in range(6)]
    pool = ThreadPoolExecutor(2)
    for _ in range(5):
        barrier = Barrier(2)

        def bulk(ids: list[int], tag: str, barrier: Barrier = barrier) -> int:
            barrier.wait()
            answer = world.client.post(
                "/api/v1/reports/bulk",
                headers=world.headers["support"],
                json={"ids": ids, "change": {}, "add_tags": [tag]},
            )
            return int(answer.status_code)

        orders = (reports, reports[::-1])
        assert list(pool.map(bulk, orders, ("one", "two"))) == [200, 200]
    pool.shutdown()
    assert all(r["tags"] == ["one", "two"] for r in world.inbox()["reports"])


def test_a_support_token_of_one_model_sees_nothing_of_another(world: ReportWorld) -> None:
    """Lists, counts, searches, duplicate candidates and bulk changes of a toy-only token
    never name, count or change a price report."""
    client, headers = world.client, world.headers
    toy = world.file(description="Declined card at the bakery")["id"]
    price = world.file(who="price-app", model="price", description="Declined card at the bakery")
    toy_support = headers["toy-support"]

    def get(path: str, **params: object) -> Any:
        answer = client.get(path, headers=toy_support, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    for params in ({}, {"q": "bakery"}, {"status": "new"}, {"category": "wrong_answer"}):
        page = get("/api/v1/reports", **params)
        assert ([r["id"] for r in page["reports"]], page["total"]) == ([toy], 1), params
        assert get("/api/v1/reports/counts", **params)["total"] == 1, params
    assert world.inbox(who="support", q="bakery")["total"] == 2
    assert price["id"] not in [
        r["id"] for r in world.detail(toy, who="toy-support")["possible_duplicates"]
    ]
    named = client.get("/api/v1/reports", headers=toy_support, params={"model": "price"})
    assert (named.status_code, named.json()["field"]) == (403, "model")
    for path in (f"/api/v1/reports/{price['id']}", f"/api/v1/reports/{price['id']}/status"):
        assert client.get(path, headers=toy_support).status_code == 404, path
    # 1000 ids, unknown and other-model ones among them: refused as a whole, naming the first.
    ids = [toy, *range(10_000, 10_998), price["id"]]
    answer = client.post(
        "/api/v1/reports/bulk",
        headers=toy_support,
        json={"ids": ids, "change": {"severity": "high"}},
    )
    assert (answer.status_code, answer.json()["field"]) == (404, "ids[1]")
    assert world.detail(toy)["severity"] is None
    answer = client.post(
        "/api/v1/reports/bulk",
        headers=toy_support,
        json={"ids": [toy, price["id"]], "change": {"severity": "high"}},
    )
    assert (answer.status_code, answer.json()["field"]) == (404, "ids[1]")
    assert world.detail(price["id"])["severity"] is None


def test_tags_are_found_as_they_are_stored(world: ReportWorld) -> None:
    """Tags are kept trimmed; a tag filter is trimmed the same way."""
    report_id = world.file()["id"]
    assert world.patch(report_id, tags=["  Card Fraud "]).status_code == 200
    assert world.detail(report_id)["tags"] == ["Card Fraud"]
    for tag in ("Card Fraud", " Card Fraud  "):
        assert world.inbox(tag=tag)["total"] == 1, tag
    answer = world.client.post(
        "/api/v1/reports/bulk",
        headers=world.headers["support"],
        json={"ids": [report_id], "change": {}, "add_tags": [f"t{i}" for i in range(20)]},
    )
    assert (answer.status_code, answer.json()["field"]) == (422, "ids[0]"), answer.text
    assert len(world.detail(report_id)["tags"]) == 1


def test_racing_duplicate_links_never_make_a_cycle(world: ReportWorld) -> None:
    """Two staff mark two reports duplicates of each other at once: one link is made, the
    other is refused as a cycle (or follows the first to its original), never a loop."""
    request_id = world.predict()
    pool = ThreadPoolExecutor(2)
    for _ in range(5):
        first, second = (world.file(request_id=request_id)["id"] for _ in range(2))
        barrier = Barrier(2)

        def link(pair: tuple[int, int], barrier: Barrier = barrier) -> int:
            barrier.wait()
            return int(world.patch(pair[0], status="duplicate", duplicate_of=pair[1]).status_code)

        answers = sorted(pool.map(link, ((first, second), (second, first))))
        assert answers == [200, 422], answers
        links = {world.detail(i)["duplicate_of"] for i in (first, second)}
        assert None in links, links
    pool.shutdown()
