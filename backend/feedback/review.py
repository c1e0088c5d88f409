"""The held-out review queue: people label what the model was not allowed to influence.

Held-out predictions (route ``held_out``: the model scored them, the caller got the held-out
policy's answer) are read from the log into ``review_items`` as they arrive. A reviewer asks
for the next examples and gets them on a lease: an item has one slot per review it wants (two
for an agreement sample, else one), a slot is taken by inserting a row under a unique
(item, slot) constraint, so two reviewers never hold the same slot, and an expired lease is
taken over by a conditional update, so it returns to the queue. A reviewer answers (one of
the model's classes) or skips; undo takes back their last decision and hands the example back
to them. The first answer of an example becomes its label (source ``review``, not influenced
by the model) unless a label from another source is there already.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import LabelRow, ReviewAssignmentRow, ReviewItemRow
from backend.errors import Conflict, InputError, NotFound
from backend.feedback.review_leases import candidates, claim, renew_leases
from backend.feedback.review_stats import class_text, review_stats
from backend.predictions.held_out_reads import (
    HeldOutExample,
    held_out_examples,
    held_out_rows_since,
)
from backend.predictions.loop_counts import sync_label_outcomes
from backend.registry import Registry
from backend.schemas import ModelVersionInfo
from backend.schemas.review import (
    HeldOutPolicyAnswer,
    ReviewBatch,
    ReviewDecision,
    ReviewItem,
    ReviewStats,
    ReviewUndone,
)

REVIEW_SOURCE = "review"
MAX_BATCH = 50
# Rows arrive in the log up to a flush (and a writer restart) late: each read of the log
# starts this long before the newest example already queued.
LOG_LAG_S = 900.0
SYNC_PAGE = 2_000
SYNC_PAGES = 10


def wants_second_opinion(model: str, request_id: str, row: int, share: float) -> bool:
    """Whether an example is an agreement sample: a stable draw from its key, so every
    worker (and every re-read of the log) decides the same."""
    digest = hashlib.blake2b(f"{model}\0{request_id}\0{row}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < share


@dataclass
class _Choices:
    """What a version accepts as an answer: its task and classes."""

    task: str
    classes: list[Any] | None
    class_names: list[str] | None


class ReviewQueue:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: Registry,
        *,
        lease_s: float = 300.0,
        agreement_share: float = 0.1,
        sync_interval_s: float = 2.0,
        clock: Callable[[], float] = time.time,
    ):
        self.sessions = sessions
        self.registry = registry
        self.lease_s = lease_s
        self.agreement_share = agreement_share
        self.sync_interval_s = sync_interval_s
        self.clock = clock
        self._synced_at: dict[str, float] = {}
        self._sync_lock = threading.Lock()

    # ---------------------------------------------------------------- the queue from the log

    def sync(self, model: str, force: bool = False) -> int:
        """Queue the model's held-out rows logged since the last read; returns how many.

        At most once per ``sync_interval_s`` per model and process: a read of the log is
        cheap (the held-out index), but reviewers press keys faster than rows arrive.
        """
        # Held for the whole read: a caller arriving meanwhile waits for the rows instead of
        # going on without them.
        with self._sync_lock:
            now = time.monotonic()
            if not force and now - self._synced_at.get(model, -math.inf) < self.sync_interval_s:
                return 0
            added = self._read_log(model)
            self._synced_at[model] = time.monotonic()
            return added

    def _read_log(self, model: str) -> int:
        with self.sessions() as session:
            newest = session.scalar(
                select(func.max(ReviewItemRow.created_at)).where(ReviewItemRow.model == model)
            )
        cursor = 0.0 if newest is None else newest - LOG_LAG_S
        added = 0
        for _page in range(SYNC_PAGES):
            rows = held_out_rows_since(self.sessions, model, cursor, SYNC_PAGE)
            if rows:
                added += self._enqueue(model, rows)
            if len(rows) < SYNC_PAGE or rows[-1].created_at <= cursor:
                break
            cursor = rows[-1].created_at
        return added

    def _enqueue(self, model: str, rows: Sequence[Any]) -> int:
        values = [
            {
                "model": model,
                "request_id": row.request_id,
                "row_index": row.row_index,
                "version": row.version,
                "created_at": row.created_at,
                "reviews_wanted": 2
                if wants_second_opinion(model, row.request_id, row.row_index, self.agreement_share)
                else 1,
                "reviews_done": 0,
                "is_open": True,
            }
            for row in rows
        ]
        with self.sessions.begin() as session:
            insert = pg_insert if _dialect(session) == "postgresql" else sqlite_insert
            statement = insert(ReviewItemRow).on_conflict_do_nothing(
                index_elements=["model", "request_id", "row_index"]
            )
            result = session.execute(statement, values)
            return max(int(getattr(result, "rowcount", 0) or 0), 0)

    # ---------------------------------------------------------------- handing out

    def next(self, model: str, reviewer: str, limit: int = 10) -> ReviewBatch:
        """The reviewer's next ``limit`` examples: those they hold already (leases renewed),
        topped up with new ones claimed from the queue, oldest first."""
        self.registry.get_model(model)  # 404 for a model that does not exist
        limit = max(1, min(limit, MAX_BATCH))
        self.sync(model)
        now = self.clock()
        held = renew_leases(self.sessions, model, reviewer, now, self.lease_s)
        if len(held) < limit:
            held += claim(self.sessions, model, reviewer, limit - len(held), now, self.lease_s)
        items = self._items(model, held[:limit])
        in_queue, available = self._queue_counts(model, reviewer, now)
        return ReviewBatch(
            model=model,
            items=items,
            in_queue=in_queue,
            available=available,
            note=""
            if len(items) == limit
            else self._why_short(model, reviewer, in_queue, available),
        )

    # ---------------------------------------------------------------- deciding

    def answer(self, model: str, item_id: int, reviewer: str, label: Any) -> ReviewDecision:
        """The reviewer's correct answer for an example they hold."""
        with self.sessions.begin() as session:
            item = self._item_row(session, model, item_id)
            label = _valid_label(self._choices(model, item.version), label)
            self._decide(session, item, reviewer, "answer", label)
            note = self._store_label(session, item, label)
        return ReviewDecision(
            item=item_id,
            model=model,
            decision="answer",
            label=label,
            label_stored=not note,
            note=note,
        )

    def skip(self, model: str, item_id: int, reviewer: str) -> ReviewDecision:
        """The reviewer cannot tell: the example leaves their queue (and, once every slot is
        decided, the queue) without an answer from them."""
        with self.sessions.begin() as session:
            item = self._item_row(session, model, item_id)
            self._decide(session, item, reviewer, "skip", None)
        return ReviewDecision(item=item_id, model=model, decision="skip")

    def undo(self, model: str, reviewer: str) -> ReviewUndone:
        """Take back the reviewer's newest decision on the model; the example is theirs again
        (leased anew), and the label follows the answers that remain."""
        self.registry.get_model(model)
        now = self.clock()
        with self.sessions.begin() as session:
            mine = session.execute(
                select(
                    ReviewAssignmentRow.id,
                    ReviewAssignmentRow.item_id,
                    ReviewAssignmentRow.decision,
                    ReviewAssignmentRow.label,
                    ReviewAssignmentRow.decided_at,
                )
                .where(
                    ReviewAssignmentRow.model == model,
                    ReviewAssignmentRow.reviewer == reviewer,
                    ReviewAssignmentRow.decided_at.is_not(None),
                )
                .order_by(ReviewAssignmentRow.decided_at.desc(), ReviewAssignmentRow.id.desc())
                .limit(1)
            ).first()
            if mine is None:
                raise Conflict(
                    f"nothing to undo: you have decided no example of model {model!r}", "undo"
                )
            # Conditional, so that a second undo racing this one takes back the next decision
            # rather than this one twice.
            taken_back = session.execute(
                update(ReviewAssignmentRow)
                .where(
                    ReviewAssignmentRow.id == mine.id,
                    ReviewAssignmentRow.decided_at == mine.decided_at,
                )
                .values(
                    decision=None,
                    label=None,
                    decided_at=None,
                    leased_at=now,
                    lease_expires_at=now + self.lease_s,
                )
            )
            if getattr(taken_back, "rowcount", 0) != 1:
                raise Conflict("that decision was just taken back elsewhere; try again", "undo")
            _count_decision(session, mine.item_id, -1)
            item = session.get(ReviewItemRow, mine.item_id)
            assert item is not None  # an assignment is deleted with its item
            if mine.decision == "answer":
                self._relabel(session, item)
        undone = ReviewDecision(
            item=mine.item_id, model=model, decision=mine.decision, label=mine.label
        )
        items = self._items(model, [mine.item_id])
        if not items:
            raise NotFound(
                f"item {mine.item_id}'s prediction is no longer in the log; it was taken back",
                "item",
            )
        return ReviewUndone(undone=undone, item=items[0])

    @staticmethod
    def _item_row(session: Session, model: str, item_id: int) -> ReviewItemRow:
        item = session.get(ReviewItemRow, item_id)
        if item is None or item.model != model:
            raise NotFound(f"model {model!r} has no review item {item_id}", "item")
        return item

    def _decide(
        self, session: Session, item: ReviewItemRow, reviewer: str, decision: str, label: Any
    ) -> None:
        """Record the decision on the reviewer's undecided hold of the item, in one
        conditional update (an expired lease taken over meanwhile is not theirs any more);
        otherwise say why there is none."""
        now = self.clock()
        decided = session.execute(
            update(ReviewAssignmentRow)
            .where(
                ReviewAssignmentRow.item_id == item.id,
                ReviewAssignmentRow.reviewer == reviewer,
                ReviewAssignmentRow.decision.is_(None),
            )
            .values(decision=decision, label=label, decided_at=now, lease_expires_at=None)
        )
        if getattr(decided, "rowcount", 0) == 1:
            _count_decision(session, item.id, +1)
            return
        assignments = session.execute(
            select(
                ReviewAssignmentRow.reviewer,
                ReviewAssignmentRow.decision,
                ReviewAssignmentRow.lease_expires_at,
            ).where(ReviewAssignmentRow.item_id == item.id)
        ).all()
        mine = next((a for a in assignments if a.reviewer == reviewer), None)
        if mine is not None:
            raise Conflict(
                f"you already {'answered' if mine.decision == 'answer' else 'skipped'} item "
                f"{item.id}; undo (U) to change it",
                "item",
            )
        held = [a.lease_expires_at or 0.0 for a in assignments if a.decision is None]
        if any(expires > now for expires in held):
            raise Conflict(
                f"item {item.id} is handed to another reviewer for "
                f"{math.ceil(max(held) - now)} s more",
                "item",
            )
        raise Conflict(
            f"item {item.id} is not handed to you: ask for the next examples first", "item"
        )

    def _store_label(self, session: Session, item: ReviewItemRow, label: Any) -> str:
        """Make the example's first answer its label unless a label from another source is
        there; returns "" when the stored label is this answer, else why it is not."""
        first = self._first_answer(session, item.id)
        insert = pg_insert if _dialect(session) == "postgresql" else sqlite_insert
        session.execute(
            insert(LabelRow)
            .values(
                model=item.model,
                request_id=item.request_id,
                row_index=item.row_index,
                label=first,
                received_at=self.clock(),
                source=REVIEW_SOURCE,
                influenced=False,
            )
            .on_conflict_do_nothing(index_elements=["model", "request_id", "row_index"])
        )
        key = _label_key(item)
        session.execute(
            update(LabelRow)
            .where(key, LabelRow.source == REVIEW_SOURCE)
            .values(label=first, influenced=False)
        )
        sync_label_outcomes(session, [(item.model, item.request_id, item.row_index)])
        source = session.scalar(select(LabelRow.source).where(key))
        if source != REVIEW_SOURCE:
            return f"a label from {source!r} is kept as the label; your answer is recorded"
        if first != label:
            return "an earlier reviewer's answer is the label; yours counts for agreement"
        return ""

    def _relabel(self, session: Session, item: ReviewItemRow) -> None:
        """After an answer is taken back: the first answer left is the label, or none."""
        first = self._first_answer(session, item.id)
        key = and_(_label_key(item), LabelRow.source == REVIEW_SOURCE)
        if first is None:
            session.execute(delete(LabelRow).where(key))
        else:
            session.execute(update(LabelRow).where(key).values(label=first, influenced=False))
        sync_label_outcomes(session, [(item.model, item.request_id, item.row_index)])

    @staticmethod
    def _first_answer(session: Session, item_id: int) -> Any:
        return session.scalars(
            select(ReviewAssignmentRow.label)
            .where(ReviewAssignmentRow.item_id == item_id, ReviewAssignmentRow.decision == "answer")
            .order_by(ReviewAssignmentRow.decided_at, ReviewAssignmentRow.id)
            .limit(1)
        ).first()

    # ---------------------------------------------------------------- reading items

    def _choices(self, model: str, version: str) -> _Choices:
        info: ModelVersionInfo = self.registry.get_version(model, version)
        return _Choices(info.task, info.class_labels, info.class_names)

    def _items(self, model: str, item_ids: Sequence[int]) -> list[ReviewItem]:
        if not item_ids:
            return []
        with self.sessions() as session:
            rows = session.execute(
                select(ReviewItemRow, ReviewAssignmentRow.lease_expires_at)
                .join(ReviewAssignmentRow, ReviewAssignmentRow.item_id == ReviewItemRow.id)
                .where(ReviewItemRow.id.in_(item_ids), ReviewAssignmentRow.decision.is_(None))
            ).all()
            leases = {item.id: (item, expires) for item, expires in rows}
            logged = held_out_examples(
                session, model, [(item.request_id, item.row_index) for item, _ in rows]
            )
        choices: dict[str, _Choices] = {}
        items = []
        for item_id in item_ids:
            if item_id not in leases:
                continue
            item, expires = leases[item_id]
            example = logged.get((item.request_id, item.row_index))
            if example is None:
                continue  # the log row is gone (retention): nothing to show
            if item.version not in choices:
                choices[item.version] = self._choices(model, item.version)
            items.append(_item(item, example, choices[item.version], expires or self.clock()))
        return items

    # ---------------------------------------------------------------- counts and stats

    def _queue_counts(self, model: str, reviewer: str, now: float) -> tuple[int, int]:
        with self.sessions() as session:
            in_queue = session.scalar(
                select(func.count(ReviewItemRow.id)).where(
                    ReviewItemRow.model == model, ReviewItemRow.is_open.is_(True)
                )
            )
        available = len(candidates(self.sessions, model, reviewer, now, MAX_BATCH * 20))
        return int(in_queue or 0), available

    def stats(self, model: str) -> ReviewStats:
        """The queue's progress, each reviewer's pace and the reviewers' agreement."""
        self.registry.get_model(model)
        self.sync(model)
        return review_stats(self.sessions, model, self.clock(), self.agreement_share, self.lease_s)

    def _why_short(self, model: str, reviewer: str, in_queue: int, available: int) -> str:
        with self.sessions() as session:
            total = session.scalar(
                select(func.count(ReviewItemRow.id)).where(ReviewItemRow.model == model)
            )
            waiting = session.scalar(
                select(func.count(ReviewAssignmentRow.id))
                .join(ReviewItemRow, ReviewItemRow.id == ReviewAssignmentRow.item_id)
                .where(
                    ReviewAssignmentRow.model == model,
                    ReviewAssignmentRow.reviewer == reviewer,
                    ReviewAssignmentRow.decision.is_not(None),
                    ReviewItemRow.is_open.is_(True),
                )
            )
        if not total:
            return (
                f"No held-out traffic of model {model!r} yet: an engineer sets a held-out "
                f"share and its policy (PUT /api/v1/models/{model}/held-out), and its "
                "held-out predictions appear here as they are made."
            )
        if in_queue == 0:
            return f"Every held-out example of model {model!r} so far has been reviewed."
        if available == 0:
            parts = []
            if waiting:
                parts.append(
                    f"{waiting} you decided wait for a second reviewer (agreement samples)"
                )
            if in_queue - (waiting or 0) > 0:
                parts.append(
                    f"{in_queue - (waiting or 0)} are handed to other reviewers; one not "
                    f"decided within {self.lease_s / 60:g} minutes returns to the queue"
                )
            return f"Of the {in_queue} examples left, " + "; ".join(parts) + "."
        return ""


def _count_decision(session: Session, item_id: int, change: int) -> None:
    """One statement, so that two reviewers deciding one item at once both count."""
    done = ReviewItemRow.reviews_done + change
    session.execute(
        update(ReviewItemRow)
        .where(ReviewItemRow.id == item_id)
        .values(reviews_done=done, is_open=done < ReviewItemRow.reviews_wanted)
    )


def _valid_label(choices: _Choices, label: Any) -> Any:
    """The label as the model gives it (a class given as text becomes the class itself)."""
    field = "label"
    if choices.task != "classification":
        if isinstance(label, bool) or not isinstance(label, int | float):
            raise InputError(f"a regression model's answer is a number, got {label!r}", field)
        return label
    classes = list(choices.classes or [])
    for known in classes:
        if label == known and type(label) is type(known):
            return known
    for known in classes:
        if class_text(label) == class_text(known):
            return known
    shown = ", ".join(class_text(c) for c in classes)
    raise InputError(f"{label!r} is not one of the model's classes: {shown}", field)


def _item(
    item: ReviewItemRow, example: HeldOutExample, choices: _Choices, expires: float
) -> ReviewItem:
    outputs = dict(example.outputs)
    recorded = outputs.pop("held_out", None)
    held_out = None
    if isinstance(recorded, dict):
        policy = recorded.get("policy")
        held_out = HeldOutPolicyAnswer(
            policy=None if policy is None else str(policy), answer=recorded.get("answer")
        )
    return ReviewItem(
        item=item.id,
        model=item.model,
        version=item.version,
        request_id=item.request_id,
        row=item.row_index,
        entity_id=example.entity_id,
        predicted_at=datetime.fromtimestamp(example.created_at, UTC),
        features=example.features,
        model_answer=outputs.get("predict"),
        outputs=outputs,
        held_out=held_out,
        task=choices.task,  # type: ignore[arg-type]
        classes=choices.classes,
        class_names=choices.class_names,
        lease_expires_at=datetime.fromtimestamp(expires, UTC),
    )


def _label_key(item: ReviewItemRow) -> Any:
    return and_(
        LabelRow.model == item.model,
        LabelRow.request_id == item.request_id,
        LabelRow.row_index == item.row_index,
    )


def _dialect(session: Session) -> str:
    return session.get_bind().dialect.name
