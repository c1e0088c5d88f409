"""Statistics of the review queue: progress, each reviewer's pace, agreement (Cohen's kappa)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sklearn.metrics import cohen_kappa_score
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import ReviewAssignmentRow, ReviewItemRow
from backend.schemas.review import ReviewAgreement, ReviewerStats, ReviewStats

# Decisions further apart than this end a reviewer's active period (a break, a meeting).
ACTIVE_GAP_S = 300.0
# Decisions read per reviewer for the throughput (the newest; an active period is shorter).
THROUGHPUT_WINDOW = 500


def review_stats(
    sessions: sessionmaker[Session], model: str, now: float, agreement_share: float, lease_s: float
) -> ReviewStats:
    """Counts of the model's queue, each reviewer's pace, and their agreement."""
    with sessions() as session:
        counts = session.execute(
            select(ReviewItemRow.is_open, func.count(ReviewItemRow.id))
            .where(ReviewItemRow.model == model)
            .group_by(ReviewItemRow.is_open)
        ).all()
        by_state = {bool(is_open): int(n) for is_open, n in counts}
        total = sum(by_state.values())
        answered_items = session.scalar(
            select(func.count(func.distinct(ReviewAssignmentRow.item_id)))
            .join(ReviewItemRow, ReviewItemRow.id == ReviewAssignmentRow.item_id)
            .where(
                ReviewAssignmentRow.model == model,
                ReviewAssignmentRow.decision == "answer",
                ReviewItemRow.is_open.is_(False),
            )
        )
        leased = session.scalar(
            select(func.count(func.distinct(ReviewAssignmentRow.item_id))).where(
                ReviewAssignmentRow.model == model,
                ReviewAssignmentRow.decision.is_(None),
                ReviewAssignmentRow.lease_expires_at > now,
            )
        )
        reviewers = _reviewer_stats(session, model)
        agreement = _agreement(session, model)
    closed = by_state.get(False, 0)
    done = int(answered_items or 0)
    return ReviewStats(
        model=model,
        total=total,
        in_queue=by_state.get(True, 0),
        leased=int(leased or 0),
        done=done,
        skipped=closed - done,
        progress=closed / total if total else 0.0,
        reviewers=reviewers,
        agreement=agreement,
        agreement_share=agreement_share,
        lease_s=lease_s,
    )


def _reviewer_stats(session: Session, model: str) -> list[ReviewerStats]:
    totals = session.execute(
        select(
            ReviewAssignmentRow.reviewer,
            ReviewAssignmentRow.decision,
            func.count(ReviewAssignmentRow.id),
        )
        .where(ReviewAssignmentRow.model == model, ReviewAssignmentRow.decision.is_not(None))
        .group_by(ReviewAssignmentRow.reviewer, ReviewAssignmentRow.decision)
    ).all()
    found: dict[str, dict[str, int]] = {}
    for reviewer, decision, n in totals:
        found.setdefault(reviewer, {})[str(decision)] = int(n)
    stats = []
    for reviewer in sorted(found):
        newest = session.execute(
            select(ReviewAssignmentRow.leased_at, ReviewAssignmentRow.decided_at)
            .where(
                ReviewAssignmentRow.model == model,
                ReviewAssignmentRow.reviewer == reviewer,
                ReviewAssignmentRow.decided_at.is_not(None),
            )
            .order_by(ReviewAssignmentRow.decided_at.desc())
            .limit(THROUGHPUT_WINDOW)
        ).all()
        stats.append(
            ReviewerStats(
                reviewer=reviewer,
                answered=found[reviewer].get("answer", 0),
                skipped=found[reviewer].get("skip", 0),
                per_minute=per_minute([(float(a), float(b or a)) for a, b in newest]),
                last_decided_at=_utc(newest[0][1]) if newest else None,
            )
        )
    return stats


def _agreement(session: Session, model: str) -> ReviewAgreement:
    rows = session.execute(
        select(ReviewAssignmentRow.item_id, ReviewAssignmentRow.label)
        .where(ReviewAssignmentRow.model == model, ReviewAssignmentRow.decision == "answer")
        .where(
            ReviewAssignmentRow.item_id.in_(
                select(ReviewAssignmentRow.item_id)
                .where(
                    ReviewAssignmentRow.model == model,
                    ReviewAssignmentRow.decision == "answer",
                )
                .group_by(ReviewAssignmentRow.item_id)
                .having(func.count(ReviewAssignmentRow.id) >= 2)
            )
        )
        .order_by(
            ReviewAssignmentRow.item_id,
            ReviewAssignmentRow.decided_at,
            ReviewAssignmentRow.id,
        )
    ).all()
    pairs: dict[int, list[Any]] = {}
    for item_id, label in rows:
        pairs.setdefault(item_id, []).append(label)
    return agreement_of([(labels[0], labels[1]) for labels in pairs.values()])


def agreement_of(pairs: Sequence[tuple[Any, Any]]) -> ReviewAgreement:
    """Cohen's kappa of the first and second reviewer over examples answered twice."""
    n = len(pairs)
    if n < 2:
        return ReviewAgreement(
            examples=n,
            explanation=(
                "Kappa needs at least 2 examples answered by two reviewers; "
                f"{n} so far. Agreement samples go to a second reviewer on purpose."
            ),
        )
    first = [class_text(a) for a, _ in pairs]
    second = [class_text(b) for _, b in pairs]
    kappa = float(cohen_kappa_score(first, second))
    agreeing = sum(a == b for a, b in zip(first, second, strict=True))
    if math.isnan(kappa):
        return ReviewAgreement(
            examples=n,
            explanation=(
                f"Both reviewers gave one class only on all {n} examples: kappa is undefined "
                "until the double-labelled examples cover two classes."
            ),
        )
    return ReviewAgreement(
        kappa=kappa,
        examples=n,
        explanation=(
            f"Reviewers agreed on {agreeing} of {n} examples labelled twice; kappa {kappa:.2f} "
            "corrects for agreement by chance (1: perfect, 0: no better than chance; below "
            "0.6 the guidelines for reviewers are worth a look)."
        ),
    )


def per_minute(newest_first: Sequence[tuple[float, float]]) -> float | None:
    """Examples per minute over the reviewer's last active period: from when the first of
    its examples was handed out to the last decision, decisions at most ACTIVE_GAP_S apart.
    ``newest_first``: (leased_at, decided_at) of the reviewer's decisions."""
    if len(newest_first) < 2:
        return None
    period = [newest_first[0]]
    for leased_at, decided_at in newest_first[1:]:
        if period[-1][1] - decided_at > ACTIVE_GAP_S:
            break
        period.append((leased_at, decided_at))
    if len(period) < 2:
        return None
    start = min(period[-1][0], period[-1][1])
    elapsed = max(period[0][1] - start, 1.0)
    return len(period) * 60.0 / elapsed


def _utc(seconds: float | None) -> datetime | None:
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC)


def class_text(value: Any) -> str:
    """A class as text, the same for 1 and "1" (answers are compared as people read them)."""
    return value if isinstance(value, str) else str(value)
