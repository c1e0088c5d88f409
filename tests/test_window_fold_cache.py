"""A writer's fold takes the deltas it committed itself, and the buckets it wrote last, from
memory (``store.FoldCache``): the buckets must hold exactly what folding the stored rows would
give, also when another writer folds into the same buckets in between, and nothing a rolled-back
transaction wrote may be kept. SQLite and PostgreSQL."""

from __future__ import annotations

import time

import numpy as np
import pytest

from backend.predictions.log import writer_target
from backend.predictions.store import OffsetConflict, open_store
from backend.predictions.window_counts import Retention, WindowCounter
from backend.predictions.window_reads import read_window
from backend.workspace import Workspace
from tests.test_window_counts import (
    HOUR,
    MINUTE,
    _assert_same,
    _deltas_left,
    _expected,
    _log_rows,
    _reference,
    _store_reference,
)


def test_folds_from_memory_equal_counting_the_rows_with_another_writer_folding_too(
    store: Workspace,
) -> None:
    rng = np.random.default_rng(31)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    start = (time.time() // HOUR - 2) * HOUR
    rows = [list(r) for r in _log_rows(rng, 3_000, start, 6 * MINUTE)]
    dialect, location = writer_target(store.engine)
    writing = open_store(dialect, location)
    writing.keep_fold_cache()
    other = open_store(dialect, location)  # another writer, folding without a cache
    cache = writing.fold_cache  # type: ignore[attr-defined]
    counter = WindowCounter(writing.references)
    key = "owner/000001"
    offset = writing.committed_offset(key)
    before = int(start + HOUR)
    for round_index, first in enumerate(range(0, len(rows), 300)):
        for part_start in range(first, first + 300, 100):
            part = rows[part_start : part_start + 100]
            writing.commit(key, offset, offset + 1, part, counter.count(part))
            offset += 1
        assert cache.deltas, "a commit keeps its deltas for its own fold"
        # Every third round the other writer folds: the buckets this writer cached grew
        # behind its back, and its cached deltas are gone from the store.
        folder = other if round_index % 3 == 2 else writing
        while folder.fold_windows(before, Retention(), time.time()) > 0:
            pass
        if folder is writing:
            assert not cache.deltas and cache.buckets
    assert _deltas_left(store) == 0
    with store.engine.connect() as connection:
        window = read_window(connection, "m", start, start + HOUR)
    _assert_same(window.summary, _expected(rows, reference))


def test_a_rolled_back_commit_leaves_nothing_in_the_cache(store: Workspace) -> None:
    rng = np.random.default_rng(32)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    start = (time.time() // HOUR - 2) * HOUR
    rows = [list(r) for r in _log_rows(rng, 200, start, MINUTE)]
    dialect, location = writer_target(store.engine)
    writing = open_store(dialect, location)
    writing.keep_fold_cache()
    cache = writing.fold_cache  # type: ignore[attr-defined]
    counter = WindowCounter(writing.references)
    key = "owner/000001"
    offset = writing.committed_offset(key)
    writing.commit(key, offset, offset + 1, rows[:100], counter.count(rows[:100]))
    kept = dict(cache.deltas)
    assert len(kept) == 1
    with pytest.raises(OffsetConflict):  # the offset moved on: the transaction rolls back
        writing.commit(key, offset, offset + 1, rows[100:], counter.count(rows[100:]))
    assert cache.deltas == kept and _deltas_left(store) == 1
    writing.commit(key, offset + 1, offset + 2, rows[100:], counter.count(rows[100:]))
    while writing.fold_windows(int(start + HOUR), Retention(), time.time()) > 0:
        pass
    with store.engine.connect() as connection:
        window = read_window(connection, "m", start, start + HOUR)
    _assert_same(window.summary, _expected(rows, reference))


def test_another_writers_delta_under_a_reused_id_is_read_from_the_store(store: Workspace) -> None:
    """SQLite gives a new row the id of a deleted last row: a cache keyed by id would take
    another writer's delta for this writer's own, already folded one."""
    rng = np.random.default_rng(33)
    reference = _reference(rng)
    _store_reference(store, "m", "1", reference)
    start = (time.time() // HOUR - 2) * HOUR
    rows = [list(r) for r in _log_rows(rng, 300, start, MINUTE)]
    dialect, location = writer_target(store.engine)
    writing = open_store(dialect, location)
    writing.keep_fold_cache()
    other = open_store(dialect, location)
    counter = WindowCounter(writing.references)
    assert writing.committed_offset("owner/000001") == other.committed_offset("other/000001") == 0
    before = int(start + HOUR)
    writing.commit("owner/000001", 0, 1, rows[:100], counter.count(rows[:100]))
    while other.fold_windows(before, Retention(), time.time()) > 0:  # folds and deletes it
        pass
    other.commit("other/000001", 0, 1, rows[100:], counter.count(rows[100:]))
    while writing.fold_windows(before, Retention(), time.time()) > 0:
        pass
    with store.engine.connect() as connection:
        window = read_window(connection, "m", start, start + HOUR)
    _assert_same(window.summary, _expected(rows, reference))
