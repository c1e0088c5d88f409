"""Error reports over HTTP: filing against a logged prediction, the reporter's status, the
triage workflow with its history, duplicates, bulk changes, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import replace

import pytest

from backend.feedback.report_rules import TRANSITIONS
from backend.predictions.reads import logged_rows_of
from backend.schemas.reports import REPORT_STATUSES
from backend.workspace import Workspace
from tests.report_helpers import ReportWorld, report_world


@pytest.fixture
def world(workspace: Workspace) -> Iterator[ReportWorld]:
    yield from report_world(workspace)


@pytest.fixture
def sqlite_world(sqlite_workspace: Workspace) -> Iterator[ReportWorld]:
    yield from report_world(sqlite_workspace)


def test_the_workflow_end_to_end(world: ReportWorld) -> None:
    client, headers = world.client, world.headers
    # Filed right after the answer: the prediction may still be on its way to the log.
    request_id = world.predict()
    filed = world.file(
        request_id=request_id,
        description="The payment was flagged although it was my usual grocery shop",
        expected="legit",  # the class's name: stored as its label
        reporter="user-42",
    )
    assert filed["status"] == "new" and filed["headline"] == "We received your report"
    report_id = filed["id"]

    detail = world.detail(report_id)
    assert detail["expected"] == 0 and detail["reporter"] == "user-42"
    assert (detail["model"], detail["version"], detail["request_id"]) == ("toy", "1", request_id)
    assert detail["decision"] == "answered" and detail["filed_by"] == "shop-app"
    assert detail["prediction"]["route"] == "active"
    assert detail["prediction"]["features"]["country"] == "DE"
    assert detail["allowed_statuses"] == list(TRANSITIONS["new"])
    assert [c["kind"] for c in detail["history"]] == ["filed"]

    steps = [
        {"status": "in_review", "assignee": "dana", "severity": "high", "tags": [" grocery "]},
        {"status": "confirmed", "correction": 0},
        {"status": "resolved", "fixed_in_version": "1"},
    ]
    for step in steps:
        answer = world.patch(report_id, **step)
        assert answer.status_code == 200, answer.text
    noted = client.post(
        f"/api/v1/reports/{report_id}/notes",
        headers=headers["support"],
        json={"text": "Customer confirmed by phone: internal only"},
    )
    assert noted.status_code == 200, noted.text
    detail = noted.json()
    assert (detail["status"], detail["assignee"], detail["severity"]) == (
        "resolved",
        "dana",
        "high",
    )
    assert detail["tags"] == ["grocery"] and detail["fixed_in_version"] == "1"
    assert detail["correction"] == 0 and detail["notes"] == 1
    assert detail["note_thread"][0]["author"] == "support"
    kinds = [c["kind"] for c in detail["history"]]
    assert kinds == [
        "filed", "status", "assignee", "severity", "tags", "status", "correction",
        "status", "fixed_in", "note",
    ]  # fmt: skip
    assert {c["actor"] for c in detail["history"][1:]} == {"support"}
    assert detail["history"][1]["before"] == "new" and detail["history"][1]["after"] == "in_review"

    status = client.get(f"/api/v1/reports/{report_id}/status", headers=headers["app"])
    assert status.status_code == 200, status.text
    public = status.json()
    assert public["headline"] == "Fixed in an update" and public["status"] == "resolved"
    # Nothing internal reaches the reporter.
    text = str(public)
    for internal in ("dana", "high", "phone", "grocery", "support"):
        assert internal not in text


def test_search_finds_words_of_descriptions_and_notes(world: ReportWorld) -> None:
    first = world.file(description="The refunds were refused at checkout")["id"]
    second = world.file(description="Wrong answer for a bakery purchase")["id"]
    world.client.post(
        f"/api/v1/reports/{second}/notes",
        headers=world.headers["support"],
        json={"text": "Bakery chain changed its terminal"},
    )
    assert [r["id"] for r in world.inbox(q="refund")["reports"]] == [first]  # stemmed
    assert [r["id"] for r in world.inbox(q="terminal")["reports"]] == [second]
    assert [r["id"] for r in world.inbox(q="bakery terminal")["reports"]] == [second]
    assert world.inbox(q="refund terminal")["total"] == 0
    # Query-language characters are plain text, never an error.
    for hostile in ('"refund', "refund*", "NEAR(refund checkout)", "refund OR -x", "a:b'c"):
        answer = world.client.get(
            "/api/v1/reports", headers=world.headers["support"], params={"q": hostile}
        )
        assert answer.status_code == 200, (hostile, answer.text)
    only_symbols = world.client.get(
        "/api/v1/reports", headers=world.headers["support"], params={"q": '"*()'}
    )
    assert only_symbols.status_code == 422 and only_symbols.json()["field"] == "q"


def test_a_report_needs_a_prediction_the_token_may_see(world: ReportWorld) -> None:
    client, headers = world.client, world.headers

    def post(who: str, **body: object) -> tuple[int, dict[str, object]]:
        body.setdefault("category", "other")
        answer = client.post("/api/v1/reports", headers=headers[who], json=body)
        return answer.status_code, answer.json()

    status, body = post("app", request_id="never-answered")
    assert (status, body["field"]) == (404, "request_id")
    price_request = world.predict("price", who="price-app")
    # Another model's prediction is not revealed to a toy token...
    status, body = post("app", request_id=price_request)
    assert (status, body["field"]) == (404, "request_id")
    # ... and naming that model is refused as outside the token's scope.
    status, body = post("app", request_id=price_request, model="price")
    assert (status, body["field"]) == (403, "model")
    toy_request = world.predict()
    for expected in ("maybe", 7, True, [0]):
        status, body = post("app", request_id=toy_request, expected=expected)
        assert (status, body["field"]) == (422, "expected"), expected
    for expected in ("many", True):
        status, body = post("price-app", request_id=price_request, expected=expected)
        assert (status, body["field"]) == (422, "expected"), expected
    status, body = post("price-app", request_id=price_request, expected=12.5)
    assert status == 201, body
    status, body = post("app", request_id=toy_request, category="rude")
    assert (status, body["field"]) == (422, "category")
    # A client token limited to French rows reports only predictions on French rows.
    registry, tokens = world.workspace.registry, world.workspace.tokens
    french = tokens.create(
        "fr-app", "client", ["toy"], registry.token_constraints(["toy"], {"country": ["FR"]})
    )
    headers["fr-app"] = {"Authorization": f"Bearer {french}"}
    status, body = post("fr-app", request_id=toy_request)  # a German row
    assert (status, body["field"]) == (404, "request_id")


def test_the_status_is_only_for_the_token_that_filed_it(world: ReportWorld) -> None:
    client, headers = world.client, world.headers
    report_id = world.file()["id"]
    path = f"/api/v1/reports/{report_id}/status"
    for who, expected in (
        ("app", 200),
        ("support", 200),
        ("toy-support", 200),
        ("other-app", 404),
        ("price-support", 404),
    ):
        assert client.get(path, headers=headers[who]).status_code == expected, who
    assert client.get("/api/v1/reports/999999/status", headers=headers["app"]).status_code == 404
    # Clients file reports; they never read the inbox or another report's detail.
    assert client.get("/api/v1/reports", headers=headers["app"]).status_code == 403
    assert client.get(f"/api/v1/reports/{report_id}", headers=headers["app"]).status_code == 403
    hidden = client.get(f"/api/v1/reports/{report_id}", headers=headers["price-support"])
    assert hidden.status_code == 404 and hidden.json()["field"] == "id"


def _reach(world: ReportWorld, status: str, original: int) -> int:
    """A new report moved along allowed transitions into ``status``."""
    report_id = world.file()["id"]
    path = {
        "new": [],
        "resolved": [{"status": "confirmed"}, {"status": "resolved"}],
        "duplicate": [{"status": "duplicate", "duplicate_of": original}],
    }.get(status, [{"status": status}])
    for step in path:
        answer = world.patch(report_id, **step)
        assert answer.status_code == 200, answer.text
    return report_id


def test_every_transition_outside_the_workflow_is_refused(sqlite_world: ReportWorld) -> None:
    world = sqlite_world
    original = world.file()["id"]
    for status in REPORT_STATUSES:
        report_id = _reach(world, status, original)
        for target in REPORT_STATUSES:
            if target == status or target in TRANSITIONS[status]:
                continue
            answer = world.patch(report_id, status=target, duplicate_of=original)
            assert answer.status_code == 409, (status, target, answer.text)
            body = answer.json()
            assert body["field"] == "status" and body["allowed"] == list(TRANSITIONS[status])
            for allowed in TRANSITIONS[status]:
                assert allowed in body["reason"]
        assert world.detail(report_id)["status"] == status


def test_every_transition_of_the_workflow_is_allowed(sqlite_world: ReportWorld) -> None:
    world = sqlite_world
    original = world.file()["id"]
    for status in REPORT_STATUSES:
        for target in TRANSITIONS[status]:
            report_id = _reach(world, status, original)
            change: dict[str, object] = {"status": target}
            if target == "duplicate":
                change["duplicate_of"] = original
            answer = world.patch(report_id, **change)
            assert answer.status_code == 200, (status, target, answer.text)
            assert answer.json()["status"] == target


def test_duplicates_link_to_the_original_never_a_chain(world: ReportWorld) -> None:
    request_id = world.predict()
    first, second, third = (
        world.file(request_id=request_id, description=f"Blocked card {i}")["id"] for i in range(3)
    )
    unrelated = world.file(description="Completely different issue with exports")["id"]
    similar = world.file(description="My card was blocked while travelling")["id"]
    candidates = [r["id"] for r in world.detail(first)["possible_duplicates"]]
    # The same prediction first, then matching text; unrelated text not at all.
    assert candidates[:2] == [second, third] and similar in candidates
    assert unrelated not in candidates

    assert world.patch(second, status="duplicate", duplicate_of=first).status_code == 200
    linked = world.patch(third, status="duplicate", duplicate_of=second)
    assert linked.status_code == 200 and linked.json()["duplicate_of"] == first
    cycle = world.patch(first, status="duplicate", duplicate_of=third)
    assert cycle.status_code == 422 and cycle.json()["field"] == "duplicate_of"
    for change, field, code in (
        ({"status": "duplicate", "duplicate_of": first}, "duplicate_of", 422),  # itself
        ({"status": "duplicate"}, "duplicate_of", 422),
        ({"status": "duplicate", "duplicate_of": 999999}, "duplicate_of", 404),
        ({"status": "in_review", "duplicate_of": second}, "duplicate_of", 422),
    ):
        answer = world.patch(first, **change)
        assert (answer.status_code, answer.json()["field"]) == (code, field), change
    price_report = world.file(who="price-app", model="price")["id"]
    other_model = world.patch(first, status="duplicate", duplicate_of=price_report)
    assert other_model.status_code == 404

    # The original becoming a duplicate takes its duplicates along to its own original.
    assert world.patch(first, status="duplicate", duplicate_of=similar).status_code == 200
    assert world.detail(second)["duplicate_of"] == similar
    assert world.detail(third)["duplicate_of"] == similar
    status = world.client.get(f"/api/v1/reports/{second}/status", headers=world.headers["app"])
    assert status.json()["headline"].startswith("Someone reported the same problem")
    # Back to review clears the link, and says so in the history.
    back = world.patch(second, status="in_review").json()
    assert back["duplicate_of"] is None
    assert back["history"][-2]["kind"] == "duplicate_of" and back["history"][-2]["after"] is None


def test_bulk_changes_are_all_or_nothing(world: ReportWorld) -> None:
    client, headers = world.client, world.headers
    fresh = [world.file()["id"] for _ in range(3)]
    resolved = _reach(world, "resolved", fresh[0])

    def bulk(**body: object) -> tuple[int, dict[str, object]]:
        answer = client.post("/api/v1/reports/bulk", headers=headers["support"], json=body)
        return answer.status_code, answer.json()

    status, body = bulk(ids=[*fresh, resolved], change={"status": "confirmed"}, add_tags=["x"])
    assert (status, body.get("field")) == (409, "ids[3]"), body
    assert f"report {resolved}" in str(body["reason"])
    assert all(world.detail(i)["status"] == "new" and world.detail(i)["tags"] == [] for i in fresh)
    status, body = bulk(ids=[fresh[0], fresh[0]], change={"severity": "low"})
    assert (status, body["field"]) == (422, "ids[1]")
    status, body = bulk(ids=[fresh[0]], change={}, add_tags=["ok", "bad\x07tag"])
    assert (status, body["field"]) == (422, "add_tags[1]")
    price_report = world.file(who="price-app", model="price")["id"]
    answer = client.post(
        "/api/v1/reports/bulk",
        headers=headers["toy-support"],
        json={"ids": [fresh[0], price_report], "change": {"severity": "low"}},
    )
    assert (answer.status_code, answer.json()["field"]) == (404, "ids[1]")

    status, body = bulk(
        ids=fresh, change={"status": "in_review", "assignee": "sam"}, add_tags=["batch"]
    )
    assert (status, body) == (200, {"updated": 3})
    for report_id in fresh:
        detail = world.detail(report_id)
        assert (detail["status"], detail["assignee"], detail["tags"]) == (
            "in_review", "sam", ["batch"],
        )  # fmt: skip
    assert world.inbox(tag="batch", assignee="sam")["total"] == 3


def test_filters_pages_and_counts(world: ReportWorld) -> None:
    ids = [
        world.file(category="offensive" if i % 3 == 0 else "wrong_answer")["id"] for i in range(7)
    ]
    price = world.file(who="price-app", model="price", category="privacy")["id"]
    world.patch(ids[0], status="in_review", assignee="kim", severity="critical")
    world.patch(ids[1], status="needs_info", severity="low")

    pages: list[int] = []
    cursor = None
    while True:
        params: dict[str, object] = {"limit": 3}
        if cursor:
            params["after"] = cursor
        page = world.inbox(**params)
        assert page["total"] == 8
        pages += [r["id"] for r in page["reports"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == sorted([*ids, price], reverse=True)
    assert [r["id"] for r in world.inbox(category="offensive")["reports"]] == [
        ids[6],
        ids[3],
        ids[0],
    ]
    assert world.inbox(model="price")["total"] == 1 and world.inbox(version="1")["total"] == 8
    assert world.inbox(assignee="none")["total"] == 7
    assert [r["id"] for r in world.inbox(assignee="kim")["reports"]] == [ids[0]]
    both = world.inbox(status=["in_review", "needs_info"], sort="severity")["reports"]
    assert [r["id"] for r in both] == [ids[0], ids[1]]
    assert world.inbox(min_age_s=3600)["total"] == 0 and world.inbox(max_age_s=3600)["total"] == 8
    assert world.inbox(who="toy-support")["total"] == 7  # only its model

    counts = world.client.get(
        "/api/v1/reports/counts", headers=world.headers["support"], params={"model": "toy"}
    ).json()
    by_status = {c["status"]: c for c in counts["statuses"]}
    assert counts["total"] == 7 and by_status["new"]["count"] == 5
    assert by_status["in_review"]["count"] == 1 and by_status["resolved"]["count"] == 0
    assert by_status["new"]["oldest_age_s"] >= by_status["new"]["median_age_s"] >= 0

    for params, field in (
        ({"after": "not-a-cursor"}, "after"),
        # A forged cursor with an id no store holds, or a value that is not a number.
        (
            {
                "after": base64.urlsafe_b64encode(
                    b'["filed_at","desc",1.0,10000000000000000000000000000]'
                ).decode()
            },
            "after",
        ),
        ({"after": base64.urlsafe_b64encode(b'["filed_at","desc",NaN,1]').decode()}, "after"),
        ({"sort": "severity", "after": world.inbox(limit=1)["next_cursor"]}, "after"),
        ({"limit": 501}, "limit"),
        ({"status": "open"}, "status[0]"),
        ({"min_age_s": -1}, "min_age_s"),
    ):
        answer = world.client.get(
            "/api/v1/reports", headers=world.headers["support"], params=params
        )
        assert (answer.status_code, answer.json()["field"]) == (422, field), params


def test_bad_triage_input_names_the_field(world: ReportWorld) -> None:
    report_id = world.file()["id"]
    for change, field in (
        ({"tags": ["a" * 65]}, "tags[0]"),
        ({"tags": ["  "]}, "tags[0]"),
        ({"severity": "urgent"}, "severity"),
        ({"correction": "maybe"}, "correction"),
        ({"status": "confirmed", "fixed_in_version": "1"}, "fixed_in_version"),
        ({"assignee": "x\x00y"}, "assignee"),
        ({"assignee": "None"}, "assignee"),
        ({"colour": "red"}, "colour"),
    ):
        answer = world.patch(report_id, **change)
        assert answer.status_code == 422 and answer.json()["field"] == field, (change, answer.text)
    world.patch(report_id, status="confirmed")
    unknown = world.patch(report_id, status="resolved", fixed_in_version="9")
    assert (unknown.status_code, unknown.json()["field"]) == (404, "fixed_in_version")
    empty_note = world.client.post(
        f"/api/v1/reports/{report_id}/notes", headers=world.headers["support"], json={"text": " "}
    )
    assert empty_note.status_code == 422 and empty_note.json()["field"] == "text"
    assert world.patch(999999, severity="low").status_code == 404


def test_a_prediction_answered_a_moment_ago_is_found(sqlite_workspace: Workspace) -> None:
    """The writer commits the log every 30 s here: the answered prediction is only in the
    spool when the report comes, and filing asks the writer to write it first."""
    sqlite_workspace.settings = replace(sqlite_workspace.settings, log_flush_interval_s=30.0)
    worlds = report_world(sqlite_workspace)
    world = next(worlds)
    try:
        request_id = world.predict()
        with sqlite_workspace.sessions() as session:
            assert logged_rows_of(session, request_id, 0) == []
        report_id = world.file(request_id=request_id)["id"]
        detail = world.detail(report_id)
        assert (detail["version"], detail["prediction"]["request_id"]) == ("1", request_id)
    finally:
        worlds.close()
