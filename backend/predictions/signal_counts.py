"""User signals (undo, complaint) per prediction minute, counted as the signals arrive.

A signal is stored once per (model, request id, row, kind) and counted once: in the
transaction that stores it, ``count_signals`` looks up its logged prediction (not a shadow's:
nobody saw that answer) and adds one to ``user_signal_counts`` for the prediction's (model,
version, route, minute, kind), marking the signal with that minute. A signal whose prediction
is not logged yet (still in the writer's buffer) keeps minute ``PENDING`` and is counted by
``count_pending_signals`` (run by the user-signal watch every round) once it has landed.
A rate then costs the minutes of its window, never the signals or the log.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

from sqlalchemy import and_, delete, false, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from backend.db.signal_tables import UserSignalCountRow, UserSignalRow
from backend.predictions.reads import logged_by_keys

MINUTE_S = 60
PENDING = -1
LOOKUP_CHUNK = 400

SignalKey = tuple[str, str, int, str]  # (model, request id, row index, kind)


def store_signals(session: Session, keys: Sequence[SignalKey], source: str, now: float) -> int:
    """Store the signals not stored yet and count the ones whose prediction is logged (inside
    the caller's transaction). Returns how many are still waiting for their prediction."""
    if not keys:
        return 0
    # In one order, as labels are: requests storing the same signals never wait on each other.
    keys = sorted(keys)
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(
        insert(UserSignalRow).on_conflict_do_nothing(
            index_elements=["model", "request_id", "row_index", "kind"]
        ),
        [
            {
                "model": model,
                "request_id": request_id,
                "row_index": row,
                "kind": kind,
                "received_at": now,
                "source": source,
                "version": "",
                "route": "",
                "minute": PENDING,
            }
            for model, request_id, row, kind in keys
        ],
    )
    return count_signals(session, keys)


def count_signals(session: Session, keys: Iterable[SignalKey]) -> int:
    """Count the uncounted signals of ``keys`` whose prediction is logged; returns how many of
    them still wait. Each signal is locked while it is counted, so it is counted once."""
    wanted = set(keys)
    if not wanted:
        return 0
    if session.get_bind().dialect.name == "sqlite":
        # The store's write lock before the reads (pysqlite begins a transaction only at the
        # first write): two writers counting the same signal would count it twice.
        session.execute(delete(UserSignalRow).where(false()))
    pending: list[UserSignalRow] = []
    ordered = sorted(wanted)
    for start in range(0, len(ordered), LOOKUP_CHUNK):
        chunk = ordered[start : start + LOOKUP_CHUNK]
        rows = session.scalars(
            select(UserSignalRow)
            .where(
                UserSignalRow.minute == PENDING,
                UserSignalRow.model.in_({k[0] for k in chunk}),
                UserSignalRow.request_id.in_({k[1] for k in chunk}),
            )
            .with_for_update()
        )
        pending += [
            row for row in rows if (row.model, row.request_id, row.row_index, row.kind) in wanted
        ]
    logged = logged_by_keys(
        session, [(row.model, row.request_id, row.row_index) for row in pending]
    )
    added: Counter[tuple[str, str, str, int, str]] = Counter()
    waiting = 0
    for row in pending:
        found = logged.get((row.model, row.request_id, row.row_index))
        if found is None:
            waiting += 1
            continue
        version, route, created_at = found
        minute = int(created_at // MINUTE_S) * MINUTE_S
        row.version, row.route, row.minute = version, route, minute
        added[(row.model, version, route, minute, row.kind)] += 1
    session.flush()
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    # Always in the same order, or two writers adding to minutes in turn deadlock (PostgreSQL).
    for (model, version, route, minute, kind), n in sorted(added.items()):
        statement = insert(UserSignalCountRow).values(
            model=model, version=version, route=route, minute=minute, kind=kind, signals=n
        )
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["model", "version", "route", "minute", "kind"],
                set_={"signals": UserSignalCountRow.signals + statement.excluded.signals},
            )
        )
    return waiting


def count_pending_signals(sessions: sessionmaker[Session], since: float, limit: int = 5_000) -> int:
    """Count the signals received since ``since`` that came before their prediction was
    logged and whose prediction is logged now; returns how many were counted. Reads only the
    waiting ones (by the minute index), so a round costs in proportion to them; all of them,
    ``limit`` at a time by id: signals whose prediction never comes must not hide the rest."""
    counted = 0
    after = 0
    while True:
        with sessions.begin() as session:
            waiting = session.execute(
                select(
                    UserSignalRow.id,
                    UserSignalRow.model,
                    UserSignalRow.request_id,
                    UserSignalRow.row_index,
                    UserSignalRow.kind,
                )
                .where(
                    UserSignalRow.minute == PENDING,
                    UserSignalRow.received_at >= since,
                    UserSignalRow.id > after,
                )
                .order_by(UserSignalRow.id)
                .limit(limit)
            ).all()
            keys: list[SignalKey] = [
                (model, request_id, row, kind) for _, model, request_id, row, kind in waiting
            ]
            counted += len(keys) - count_signals(session, keys)
        if len(waiting) < limit:
            return counted
        after = waiting[-1][0]


def read_signal_counts(
    session: Session,
    model: str,
    version: str,
    routes: Sequence[str],
    start: float,
    end: float,
) -> Counter[tuple[int, str]]:
    """(minute, kind) -> signals about the predictions of [start, end) (whole minutes whose
    start lies inside it) of one version on ``routes``."""
    rows = session.execute(
        select(UserSignalCountRow.minute, UserSignalCountRow.kind, UserSignalCountRow.signals)
        .where(
            and_(
                UserSignalCountRow.model == model,
                UserSignalCountRow.version == version,
                UserSignalCountRow.route.in_(list(routes)),
                UserSignalCountRow.minute >= math.floor(start),
                UserSignalCountRow.minute < math.ceil(end),
            )
        )
        .execution_options(yield_per=1_000)
    )
    found: Counter[tuple[int, str]] = Counter()
    for minute, kind, signals in rows:
        found[(int(minute), kind)] += int(signals)
    return found
