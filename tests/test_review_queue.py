"""The held-out review queue: leases, two reviewers, agreement samples, labels, undo, stats."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from sklearn.metrics import cohen_kappa_score
from sqlalchemy import select, text

from backend.auth import Principal
from backend.db.tables import LabelRow, ReviewItemRow
from backend.errors import Conflict, InputError, NotFound
from backend.feedback import store_labels
from backend.feedback.review import ReviewQueue, wants_second_opinion
from backend.feedback.review_stats import per_minute
from backend.schemas import LabelIn
from backend.workspace import Workspace
from tests.review_helpers import add_held_out_rows

LEASE_S = 300.0
POLICY = {"policy": "default_answer", "answer": 0}


class Clock:
    """A clock the test moves: leases expire when the test says so."""

    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_queue(workspace: Workspace, clock: Callable[[], float], share: float = 0.0) -> ReviewQueue:
    return ReviewQueue(
        workspace.sessions,
        workspace.registry,
        lease_s=LEASE_S,
        agreement_share=share,
        sync_interval_s=0.0,
        clock=clock,
    )


def label_of(workspace: Workspace, request_id: str) -> LabelRow | None:
    with workspace.sessions() as session:
        return session.scalars(
            select(LabelRow).where(LabelRow.model == "toy", LabelRow.request_id == request_id)
        ).first()


def test_a_batch_shows_the_input_the_unseen_answer_and_what_the_policy_did(
    workspace: Workspace,
) -> None:
    recorded = add_held_out_rows(workspace, 2, prefix="rec", policy=POLICY)
    unrecorded = add_held_out_rows(workspace, 1, prefix="bare")
    add_held_out_rows(workspace, 3, prefix="served", route="active")
    queue = make_queue(workspace, Clock())
    batch = queue.next("toy", "ana", limit=10)
    assert [item.request_id for item in batch.items] == recorded + unrecorded
    first = batch.items[0]
    assert first.features["amount"] == 10.0 and first.features["country"] == "DE"
    assert first.model_answer == 0 and "held_out" not in first.outputs
    assert first.held_out is not None
    assert (first.held_out.policy, first.held_out.answer) == ("default_answer", 0)
    assert batch.items[2].held_out is None
    assert first.classes == [0, 1] and first.class_names == ["legit", "fraud"]
    assert (batch.in_queue, batch.available) == (3, 0)
    assert "handed to other reviewers" in batch.note


def test_an_empty_queue_says_why(workspace: Workspace) -> None:
    queue = make_queue(workspace, Clock())
    batch = queue.next("toy", "ana")
    assert batch.items == [] and "No held-out traffic of model 'toy' yet" in batch.note
    with pytest.raises(NotFound, match="no model named 'nope'"):
        queue.next("nope", "ana")


def test_two_reviewers_never_hold_the_same_example_and_expired_leases_return(
    workspace: Workspace,
) -> None:
    ids = add_held_out_rows(workspace, 5)
    clock = Clock()
    queue = make_queue(workspace, clock)
    ana = [item.request_id for item in queue.next("toy", "ana", limit=3).items]
    ben = [item.request_id for item in queue.next("toy", "ben", limit=3).items]
    assert ana == ids[:3] and ben == ids[3:]
    # Asking again hands back what one holds (the lease renewed), nothing of the other's.
    assert [i.request_id for i in queue.next("toy", "ana", limit=3).items] == ana
    first = queue.next("toy", "ana", limit=3).items[0]
    with pytest.raises(Conflict, match="handed to another reviewer for 300 s more"):
        queue.answer("toy", first.item, "ben", 1)

    clock.now += LEASE_S + 1  # ana left for lunch: her examples return to the queue
    queue.next("toy", "ben", limit=3)  # ben renews his own three
    taken = [i.request_id for i in queue.next("toy", "ben", limit=6).items]
    assert sorted(taken) == sorted(ids)
    with pytest.raises(Conflict, match="handed to another reviewer"):
        queue.answer("toy", first.item, "ana", 1)  # too late: ben has it now


def test_concurrent_reviewers_on_several_workers_claim_disjoint_examples(
    workspace: Workspace,
) -> None:
    add_held_out_rows(workspace, 60)
    clock = Clock()
    make_queue(workspace, clock).sync("toy", force=True)
    # One queue per worker process, as several uvicorn workers would have.
    workers = [make_queue(workspace, clock) for _ in range(4)]
    start = threading.Barrier(8)

    def take(n: int) -> tuple[str, list[int]]:
        reviewer = f"reviewer-{n}"
        start.wait()
        return reviewer, [i.item for i in workers[n % 4].next("toy", reviewer, limit=10).items]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(take, range(8)))
    every = [item for _, items in results for item in items]
    assert len(every) == len(set(every))  # nobody holds what another holds
    assert len(every) == 60  # and nothing was lost to the races


def test_agreement_samples_go_to_exactly_two_reviewers(workspace: Workspace) -> None:
    add_held_out_rows(workspace, 2)
    queue = make_queue(workspace, Clock(), share=1.0)
    ana = [i.item for i in queue.next("toy", "ana").items]
    ben = [i.item for i in queue.next("toy", "ben").items]
    assert ana == ben and len(ana) == 2
    assert queue.next("toy", "cleo").items == []
    # The draw is stable per example and near the share asked for.
    drawn = sum(wants_second_opinion("toy", f"r{i}", 0, 0.1) for i in range(4_000))
    assert 400 - 4 * 19 <= drawn <= 400 + 4 * 19  # four standard deviations
    assert wants_second_opinion("toy", "r7", 0, 0.1) == wants_second_opinion("toy", "r7", 0, 0.1)


def test_an_answer_must_be_one_of_the_models_classes(workspace: Workspace) -> None:
    add_held_out_rows(workspace, 2)
    queue = make_queue(workspace, Clock())
    item = queue.next("toy", "ana", limit=1).items[0]
    with pytest.raises(Conflict, match="not handed to you: ask for the next examples"):
        queue.answer("toy", item.item + 1, "ana", 1)
    with pytest.raises(InputError, match="7 is not one of the model's classes: 0, 1") as refused:
        queue.answer("toy", item.item, "ana", 7)
    assert refused.value.field == "label"
    with pytest.raises(NotFound) as unknown:
        queue.answer("toy", 999_999, "ana", 1)
    assert unknown.value.field == "item"
    with pytest.raises(NotFound):
        queue.answer("price", item.item, "ana", 1)  # another model's item
    decided = queue.answer("toy", item.item, "ana", "1")  # a class given as text
    assert decided.label == 1 and decided.label_stored
    with pytest.raises(Conflict, match="already answered item"):
        queue.answer("toy", item.item, "ana", 0)


def test_the_first_answer_becomes_a_review_label_not_influenced_by_the_model(
    workspace: Workspace,
) -> None:
    ids = add_held_out_rows(workspace, 2)
    queue = make_queue(workspace, Clock(), share=1.0)
    items = queue.next("toy", "ana").items
    queue.next("toy", "ben")
    assert queue.answer("toy", items[0].item, "ana", 1).label_stored
    second = queue.answer("toy", items[0].item, "ben", 0)
    assert not second.label_stored and "earlier reviewer's answer" in second.note
    label = label_of(workspace, ids[0])
    assert label is not None
    assert (label.label, label.source, label.influenced) == (1, "review", False)

    # A label from another source (a chargeback) is kept; the answer is still recorded.
    store_labels(
        workspace.sessions,
        [LabelIn(request_id=ids[1], label=0, model="toy")],
        Principal("bank", "admin"),
    )
    kept = queue.answer("toy", items[1].item, "ana", 1)
    assert not kept.label_stored and "'bank'" in kept.note
    other = label_of(workspace, ids[1])
    assert other is not None and (other.label, other.source, other.influenced) == (0, "bank", None)
    # A label posted later over a review label: its influence is unknown again.
    store_labels(
        workspace.sessions,
        [LabelIn(request_id=ids[0], label=0, model="toy")],
        Principal("bank", "admin"),
    )
    replaced = label_of(workspace, ids[0])
    assert replaced is not None and (replaced.source, replaced.influenced) == ("bank", None)


def test_skip_and_undo(workspace: Workspace) -> None:
    ids = add_held_out_rows(workspace, 3)
    clock = Clock()
    queue = make_queue(workspace, clock)
    with pytest.raises(Conflict, match="nothing to undo") as nothing:
        queue.undo("toy", "ana")
    assert nothing.value.field == "undo"
    items = queue.next("toy", "ana").items
    queue.answer("toy", items[0].item, "ana", 1)
    clock.now += 1
    assert queue.skip("toy", items[1].item, "ana").decision == "skip"
    stats = queue.stats("toy")
    assert (stats.done, stats.skipped, stats.in_queue) == (1, 1, 1)
    assert label_of(workspace, ids[1]) is None  # a skip is no label

    undone = queue.undo("toy", "ana")  # the skip: the example is hers again
    assert undone.undone.decision == "skip" and undone.item.request_id == ids[1]
    undone = queue.undo("toy", "ana")  # then the answer, and its label goes with it
    assert (undone.undone.decision, undone.undone.label) == ("answer", 1)
    assert label_of(workspace, ids[0]) is None
    assert queue.stats("toy").in_queue == 3
    # Both are hers again: another reviewer cannot take them, she can answer them.
    assert [i.request_id for i in queue.next("toy", "ben").items] == []
    assert queue.answer("toy", undone.item.item, "ana", 0).label_stored
    stored = label_of(workspace, ids[0])
    assert stored is not None and stored.label == 0


def test_kappa_over_double_labelled_examples_matches_sklearn(workspace: Workspace) -> None:
    add_held_out_rows(workspace, 12)
    clock = Clock()
    queue = make_queue(workspace, clock, share=1.0)
    ana_says = [1, 1, 0, 0, 1, 0, 1, 1, 0, 0, 1, 0]
    ben_says = [1, 0, 0, 0, 1, 0, 1, 1, 1, 0, 1, 1]
    ana_items = queue.next("toy", "ana", limit=12).items
    ben_items = queue.next("toy", "ben", limit=12).items
    assert queue.stats("toy").agreement.kappa is None
    for item, a, b in zip(ana_items, ana_says, ben_says, strict=True):
        clock.now += 2
        queue.answer("toy", item.item, "ana", a)
        queue.answer("toy", ben_items[ana_items.index(item)].item, "ben", b)
    agreement = queue.stats("toy").agreement
    assert agreement.examples == 12
    assert agreement.kappa == pytest.approx(cohen_kappa_score(ana_says, ben_says))
    assert "agreed on 9 of 12" in agreement.explanation


def test_stats_count_progress_and_each_reviewers_pace(workspace: Workspace) -> None:
    add_held_out_rows(workspace, 10)
    clock = Clock()
    queue = make_queue(workspace, clock)
    items = queue.next("toy", "ana", limit=6).items
    for item in items[:5]:
        clock.now += 12  # one every 12 s: 5 per minute
        queue.answer("toy", item.item, "ana", 1)
    stats = queue.stats("toy")
    assert (stats.total, stats.done, stats.in_queue, stats.leased) == (10, 5, 5, 1)
    assert stats.progress == pytest.approx(0.5)
    (ana,) = stats.reviewers
    assert (ana.reviewer, ana.answered, ana.skipped) == ("ana", 5, 0)
    assert ana.per_minute == pytest.approx(5.0)
    # A break longer than the active gap starts a new period.
    assert per_minute([(1_000.0, 1_030.0), (1_000.0, 1_020.0), (0.0, 10.0)]) == pytest.approx(4.0)


def test_rows_logged_late_join_the_queue_and_none_is_queued_twice(workspace: Workspace) -> None:
    clock = Clock()
    queue = make_queue(workspace, clock)
    add_held_out_rows(workspace, 3, prefix="early", start=clock.now - 100)
    queue.sync("toy", force=True)
    # Written by the log writer a minute late, with a time before the newest queued one.
    add_held_out_rows(workspace, 2, prefix="late", start=clock.now - 150)
    queue.sync("toy", force=True)
    queue.sync("toy", force=True)
    with workspace.sessions() as session:
        queued = session.scalars(select(ReviewItemRow.request_id)).all()
    assert sorted(queued) == ["early-0", "early-1", "early-2", "late-0", "late-1"]


def test_the_held_out_read_uses_its_partial_index(sqlite_workspace: Workspace) -> None:
    from backend.db.tables import PredictionRow
    from backend.predictions.held_out_reads import _IS_HELD_OUT

    query = select(PredictionRow.request_id).where(
        PredictionRow.model == "toy", _IS_HELD_OUT, PredictionRow.created_at >= 0
    )
    compiled = query.compile(sqlite_workspace.engine, compile_kwargs={"literal_binds": True})
    with sqlite_workspace.engine.connect() as connection:
        plan = connection.execute(text(f"EXPLAIN QUERY PLAN {compiled}")).all()
    assert "ix_predictions_held_out" in " ".join(str(row) for row in plan)
