"""Leases of the review queue: handing examples to reviewers so that two never hold the same.

An item has one slot per review it wants. A slot is claimed by inserting an assignment under
the unique (item, slot) constraint, or by taking over an expired lease with an update that
holds only while it is still expired: either way exactly one of two racing reviewers wins,
on SQLite and PostgreSQL alike, without locks held between statements.
"""

from __future__ import annotations

from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import ReviewAssignmentRow, ReviewItemRow


def renew_leases(
    sessions: sessionmaker[Session], model: str, reviewer: str, now: float, lease_s: float
) -> list[int]:
    """Extend the reviewer's undecided leases (an expired one too, unless taken over)."""
    with sessions.begin() as session:
        session.execute(
            update(ReviewAssignmentRow)
            .where(
                ReviewAssignmentRow.model == model,
                ReviewAssignmentRow.reviewer == reviewer,
                ReviewAssignmentRow.decision.is_(None),
            )
            .values(lease_expires_at=now + lease_s)
        )
        return list(
            session.scalars(
                select(ReviewAssignmentRow.item_id)
                .where(
                    ReviewAssignmentRow.model == model,
                    ReviewAssignmentRow.reviewer == reviewer,
                    ReviewAssignmentRow.decision.is_(None),
                )
                .order_by(ReviewAssignmentRow.item_id)
            )
        )


def claim(
    sessions: sessionmaker[Session],
    model: str,
    reviewer: str,
    wanted: int,
    now: float,
    lease_s: float,
) -> list[int]:
    """Claim up to ``wanted`` new examples for the reviewer, oldest first; their item ids."""
    claimed: list[int] = []
    # Candidates may be taken by another reviewer between the read and the claim: read a
    # few more than wanted, and read again while claims are lost and candidates remain.
    for _round in range(5):
        found = candidates(sessions, model, reviewer, now, (wanted - len(claimed)) * 3)
        if not found:
            break
        for item_id, reviews_wanted in found:
            if _claim_one(sessions, model, item_id, reviews_wanted, reviewer, now, lease_s):
                claimed.append(item_id)
                if len(claimed) == wanted:
                    return claimed
    return claimed


def candidates(
    sessions: sessionmaker[Session], model: str, reviewer: str, now: float, limit: int
) -> list[tuple[int, int]]:
    """Open items the reviewer has no part in yet with a slot nobody holds."""
    taken = (
        select(func.count(ReviewAssignmentRow.id))
        .where(
            ReviewAssignmentRow.item_id == ReviewItemRow.id,
            (ReviewAssignmentRow.decision.is_not(None))
            | (ReviewAssignmentRow.lease_expires_at > now),
        )
        .scalar_subquery()
    )
    mine = exists().where(
        ReviewAssignmentRow.item_id == ReviewItemRow.id,
        ReviewAssignmentRow.reviewer == reviewer,
    )
    with sessions() as session:
        rows = session.execute(
            select(ReviewItemRow.id, ReviewItemRow.reviews_wanted)
            .where(
                ReviewItemRow.model == model,
                ReviewItemRow.is_open.is_(True),
                ~mine,
                taken < ReviewItemRow.reviews_wanted,
            )
            .order_by(ReviewItemRow.id)
            .limit(limit)
        ).all()
    return [(item_id, reviews_wanted) for item_id, reviews_wanted in rows]


def _claim_one(
    sessions: sessionmaker[Session],
    model: str,
    item_id: int,
    reviews_wanted: int,
    reviewer: str,
    now: float,
    lease_s: float,
) -> bool:
    """Take a free slot of the item: an expired lease (conditional update) or a slot
    never used (insert under the unique slot). False when another reviewer was first."""
    try:
        with sessions.begin() as session:
            slots = session.execute(
                select(ReviewAssignmentRow.id, ReviewAssignmentRow.slot)
                .where(ReviewAssignmentRow.item_id == item_id)
                .order_by(ReviewAssignmentRow.slot)
            ).all()
            expired = session.scalars(
                select(ReviewAssignmentRow.id).where(
                    ReviewAssignmentRow.item_id == item_id,
                    ReviewAssignmentRow.decision.is_(None),
                    ReviewAssignmentRow.lease_expires_at <= now,
                )
            ).first()
            if expired is not None:
                taken_over = session.execute(
                    update(ReviewAssignmentRow)
                    .where(
                        ReviewAssignmentRow.id == expired,
                        ReviewAssignmentRow.decision.is_(None),
                        ReviewAssignmentRow.lease_expires_at <= now,
                    )
                    .values(reviewer=reviewer, leased_at=now, lease_expires_at=now + lease_s)
                )
                return bool(getattr(taken_over, "rowcount", 0) == 1)
            used = {slot for _id, slot in slots}
            free = next((slot for slot in range(reviews_wanted) if slot not in used), None)
            if free is None:
                return False
            session.add(
                ReviewAssignmentRow(
                    item_id=item_id,
                    model=model,
                    slot=free,
                    reviewer=reviewer,
                    leased_at=now,
                    lease_expires_at=now + lease_s,
                )
            )
        return True
    except IntegrityError:
        return False  # another reviewer took the slot (or this reviewer, in another tab)
