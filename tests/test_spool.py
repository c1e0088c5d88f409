"""The prediction spool and its writer: torn records, orphans, replays and two writers at once."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from backend.db.tables import LogSegmentRow, PredictionRow
from backend.predictions.drain import Drainer
from backend.predictions.log import PredictionLog, store_identity, writer_target
from backend.predictions.rows import encode_rows
from backend.predictions.spool import (
    FIRST_READ_BYTES,
    MAGIC,
    MAX_RECORD_BYTES,
    SpoolAppender,
    claim_owner,
    read_records,
    segment_key,
    segments,
)
from backend.predictions.store import OffsetConflict, open_store
from backend.predictions.writer import BUSY_INTERVAL_S, BUSY_ROWS, Writer, WriterConfig
from backend.workspace import Workspace
from tests.helpers import TOY_ROW, logged_rows, sample_log_rows


def _writer(workspace: Workspace, owner: str) -> Writer:
    dialect, location = writer_target(workspace.engine)
    config = WriterConfig(
        dialect=dialect,
        location=location,
        spool_dir=str(workspace.settings.spool_dir),
        owner=owner,
        database=store_identity(workspace.engine),
    )
    return Writer(config, lambda: open_store(dialect, location), io.BytesIO())


def _adopt(workspace: Workspace) -> None:
    """One round of adopting stopped servers' spools, as a writer's adoption thread does."""
    writer = _writer(workspace, owner="someone-else")
    writer._adopt_orphans(Drainer(writer.store_factory(), writer.spool_dir))


def _tear_at(path: Path, offset: int) -> None:
    """Leave a header without its record at ``offset``, as a kill in the middle of a copy."""
    with open(path, "r+b") as file:
        file.seek(offset)
        file.write(b"\x40\x00\x00\x00\x01\x00\x00\x00{partial")


def _fingerprint(workspace: Workspace) -> str:
    return store_identity(workspace.engine)


@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "written"])
def test_records_read_back_and_a_torn_tail_is_not_a_record(tmp_path: Path, mapped: bool) -> None:
    spool = SpoolAppender(tmp_path, "db", segment_bytes=1 << 20, mapped=mapped)
    ends = [spool.append(encode_rows(sample_log_rows(f"r{i}", 2)))[1] for i in range(3)]
    path = segments(spool.directory)[0].path
    # Where the records end so far, the reserved zeros stop reading cleanly.
    clean = read_records(path, 0, 1 << 20)
    assert len(clean.payloads) == 3 and clean.offset == ends[-1]
    assert not clean.stopped_at_bad_record
    # Half a record, as a kill in the middle of copying a header leaves it.
    _tear_at(path, spool.offset)
    result = read_records(path, 0, 1 << 20)
    assert len(result.payloads) == 3 and result.offset == ends[-1]
    assert result.stopped_at_bad_record
    # From an offset in the middle: only what follows.
    assert len(read_records(path, ends[0], 1 << 20).payloads) == 2
    # A damaged record (CRC) stops reading at it.
    data = bytearray(path.read_bytes())
    data[len(MAGIC) + 12] ^= 0xFF
    path.write_bytes(bytes(data))
    damaged = read_records(path, 0, 1 << 20)
    assert damaged.payloads == [] and damaged.stopped_at_bad_record
    spool.close()


@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "written"])
def test_segments_rotate_and_the_owner_lock_tells_who_lives(tmp_path: Path, mapped: bool) -> None:
    spool = SpoolAppender(tmp_path, "db", segment_bytes=200, mapped=mapped)
    for i in range(10):
        spool.append(encode_rows(sample_log_rows(f"r{i}")))
    assert len(segments(spool.directory)) > 2
    assert claim_owner(spool.directory) is None  # the owner lives
    spool.close()
    lock = claim_owner(spool.directory)
    assert lock is not None  # the owner is gone: a writer may take its spool
    os.close(lock)


def test_an_orphaned_spool_is_written_once_and_removed(store: Workspace) -> None:
    spool = SpoolAppender(store.settings.spool_dir, _fingerprint(store), segment_bytes=300)
    for i in range(20):
        spool.append(encode_rows(sample_log_rows(f"orphan-{i}", 2)))
    _tear_at(segments(spool.directory)[-1].path, spool.offset)  # the owner died mid-copy
    os.close(spool._lock_fd)  # as a kill -9 releases the lock, leaving the reserved zeros
    _adopt(store)
    assert logged_rows(store) == 40
    assert not spool.directory.exists()
    # Adopting again finds nothing: no row is written twice.
    _adopt(store)
    assert logged_rows(store) == 40
    with store.sessions() as session:
        assert session.scalar(select(func.count()).select_from(LogSegmentRow)) == 0


def test_a_spool_of_another_database_is_left_alone(store: Workspace) -> None:
    spool = SpoolAppender(store.settings.spool_dir, "another-database")
    spool.append(encode_rows(sample_log_rows("elsewhere")))
    spool.close()
    _adopt(store)
    assert logged_rows(store) == 0
    assert spool.directory.exists()


def test_a_stale_offset_writes_nothing(store: Workspace) -> None:
    """Two writers on one segment (one adopting it while the other finishes): one commits."""
    dialect, location = writer_target(store.engine)
    first, second = open_store(dialect, location), open_store(dialect, location)
    key = segment_key("owner", 1)
    assert first.committed_offset(key) == 0 == second.committed_offset(key)
    rows = [list(row) for row in sample_log_rows("once", 3)]
    first.commit(key, 0, 100, rows)
    with pytest.raises(OffsetConflict):
        second.commit(key, 0, 100, rows)
    assert logged_rows(store) == 3
    assert second.committed_offset(key) == 100


def test_fsync_always_is_accepted_and_unknown_policies_refused(store: Workspace) -> None:
    log = PredictionLog(store.engine, store.settings.spool_dir, fsync="always")
    log.start()
    try:
        log.append(sample_log_rows("durable", 2))
        assert log.flush(10) == 2
    finally:
        log.stop()
    assert not any(store.settings.spool_dir.iterdir())
    with pytest.raises(ValueError, match="fsync"):
        PredictionLog(store.engine, store.settings.spool_dir, fsync="sometimes")


def test_a_restart_writes_what_a_dead_server_left(store: Workspace) -> None:
    """A server and its writer both gone (power cut, kill -9): the next start writes it all."""
    spool = SpoolAppender(store.settings.spool_dir, _fingerprint(store))
    for i in range(5):
        spool.append(encode_rows(sample_log_rows(f"left-{i}")))
    spool.close()
    log = PredictionLog(store.engine, store.settings.spool_dir, flush_interval_s=0.05)
    log.start()
    try:
        deadline = time.monotonic() + 20
        while logged_rows(store) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        log.stop()
    assert logged_rows(store) == 5
    assert not spool.directory.exists()


def test_a_spool_that_cannot_be_written_refuses_the_request(sqlite_workspace: Workspace) -> None:
    from backend.api import create_app

    with TestClient(create_app(workspace=sqlite_workspace)) as client:
        headers = {"Authorization": f"Bearer {sqlite_workspace.admin_token()}"}
        serving = client.app.state.serving  # type: ignore[attr-defined]
        served = client.post(
            "/v1/models/toy:predict", headers=headers, json={"instances": [TOY_ROW]}
        )
        assert served.status_code == 200
        serving.prediction_log._spool.close()  # as if the disk had failed
        refused = client.post(
            "/v1/models/toy:predict", headers=headers, json={"instances": [TOY_ROW]}
        )
        assert refused.status_code == 503
        assert "prediction log" in refused.json()["reason"]
    # What was answered before the failure is written all the same.
    with sqlite_workspace.sessions() as session:
        request_ids = list(session.scalars(select(PredictionRow.request_id)))
    assert request_ids == [served.json()["request_id"]]


def test_a_failed_sync_keeps_the_record_and_moves_to_a_new_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A disk error after a whole write: the answer is refused, nothing half-written stays."""
    from backend.predictions import spool as spool_module
    from backend.predictions.spool import SpoolWriteError

    spool = SpoolAppender(tmp_path, "db", fsync=True)
    spool.append(encode_rows(sample_log_rows("first")))

    def failing_sync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as patch:
        patch.setattr(spool_module.os, "fdatasync", failing_sync)
        with pytest.raises(SpoolWriteError, match="sync"):
            spool.append(encode_rows(sample_log_rows("unsure")))
    assert spool.append(encode_rows(sample_log_rows("after")))[0] == 2  # a new segment
    spool.close()
    read = [read_records(s.path, 0, 1 << 20) for s in segments(spool.directory)]
    assert [len(r.payloads) for r in read] == [2, 1]
    assert not any(r.stopped_at_bad_record for r in read)


def test_a_segment_the_disk_cannot_hold_refuses_the_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk shows when a segment reserves its space, never as a fault on the mapping:
    the request that needed the new segment is refused, and the next one tries again."""
    from backend.predictions import spool as spool_module
    from backend.predictions.spool import SpoolWriteError

    spool = SpoolAppender(tmp_path, "db", segment_bytes=4096, mapped=True)
    spool.append(encode_rows(sample_log_rows("first")))
    seen_while_failing: list[list[int]] = []

    def disk_full(fd: int, offset: int, length: int) -> None:
        # A drainer listing the segments now must not see a newer one: it would seal the
        # segment this process still appends to.
        seen_while_failing.append([s.number for s in segments(spool.directory)])
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(spool_module.os, "posix_fallocate", disk_full)
        with pytest.raises(SpoolWriteError, match="No space"):
            spool.append(encode_rows(sample_log_rows("lost", 40)))
        # A record that still fits goes on in the same segment, which nothing sealed.
        assert spool.append(encode_rows(sample_log_rows("small")))[0] == 1
    assert seen_while_failing == [[1]]
    assert spool.append(encode_rows(sample_log_rows("after", 40)))[0] == 3
    spool.close()
    found = segments(spool.directory)
    assert [s.number for s in found] == [1, 3]  # the failed attempt left no file
    read = [read_records(s.path, 0, 1 << 20) for s in found]
    assert [len(r.payloads) for r in read] == [2, 1]
    assert not any(r.stopped_at_bad_record for r in read)
    assert sorted(p.name for p in spool.directory.iterdir() if ".seg" in p.name) == [
        "000001.seg",
        "000003.seg",
    ]


def test_a_write_cut_short_leaves_no_half_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where segments are written with write(2) (no mapping), a full disk can cut one short."""
    from backend.predictions import spool as spool_module
    from backend.predictions.spool import SpoolWriteError

    spool = SpoolAppender(tmp_path, "db", mapped=False)
    spool.append(encode_rows(sample_log_rows("first")))
    real_write = os.write
    calls = {"n": 0}

    def disk_full_halfway(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(spool_module.os, "write", disk_full_halfway)
        with pytest.raises(SpoolWriteError, match="No space"):
            spool.append(encode_rows(sample_log_rows("lost", 3)))
    spool.append(encode_rows(sample_log_rows("after")))
    spool.close()
    result = read_records(segments(spool.directory)[0].path, 0, 1 << 20)
    assert len(result.payloads) == 2 and not result.stopped_at_bad_record


def test_segments_are_mapped_only_where_the_filesystem_keeps_reserved_blocks(
    tmp_path: Path,
) -> None:
    from backend.predictions.spool import MAPPABLE_FILESYSTEMS, _filesystem_type, mappable

    kind = _filesystem_type(tmp_path)
    assert kind is not None  # read from /proc/self/mountinfo
    assert mappable(tmp_path) == (kind in MAPPABLE_FILESYSTEMS)
    assert SpoolAppender(tmp_path, "db").mapped == mappable(tmp_path)


def test_zeros_at_the_end_of_a_segment_are_not_a_record_cut_short(tmp_path: Path) -> None:
    """A kill -9 leaves the reserved zeros: fewer than a header's worth are the end, too."""
    spool = SpoolAppender(tmp_path, "db", segment_bytes=1 << 20, mapped=True)
    spool.append(encode_rows(sample_log_rows("a")))
    path = segments(spool.directory)[0].path
    spool.close()
    with open(path, "ab") as file:
        file.write(bytes(5))
    result = read_records(path, 0, 1 << 20)
    assert len(result.payloads) == 1 and not result.stopped_at_bad_record
    with open(path, "ab") as file:
        file.write(b"\x07")
    assert read_records(path, 0, 1 << 20).stopped_at_bad_record


def test_a_damaged_length_never_reads_past_the_end_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "000001.seg"
    path.write_bytes(MAGIC + (MAX_RECORD_BYTES - 1).to_bytes(4, "little") + bytes(4) + b"[]")
    result = read_records(path, 0, 1 << 20)
    assert result.payloads == [] and result.stopped_at_bad_record and result.offset == len(MAGIC)


def test_a_live_segment_is_read_as_it_grows_and_cut_back_when_closed(tmp_path: Path) -> None:
    spool = SpoolAppender(tmp_path, "db", segment_bytes=1 << 20)
    path = segments(spool.directory)[0].path
    assert path.stat().st_size == 1 << 20  # reserved up front
    first = read_records(path, 0, 1 << 20)
    assert first.payloads == [] and not first.stopped_at_bad_record
    spool.append(encode_rows(sample_log_rows("a")))
    after_one = read_records(path, first.offset, 1 << 20)
    assert len(after_one.payloads) == 1
    big = encode_rows(sample_log_rows("big", 3000))  # larger than a reader's first read
    assert len(big) > FIRST_READ_BYTES
    spool.append(big)
    spool.append(encode_rows(sample_log_rows("b")))
    rest = read_records(path, after_one.offset, 1 << 20)
    assert rest.payloads[0] == big and len(rest.payloads) == 2
    # A record larger than a whole segment gets a segment of its own size.
    huge = encode_rows(sample_log_rows("huge", 6000))
    assert len(huge) > 1 << 20
    assert spool.append(huge)[0] == 2
    spool.close()
    assert path.stat().st_size == rest.offset  # a sealed segment keeps no zeros
    second = segments(spool.directory)[1].path
    assert read_records(second, 0, 1 << 20).payloads == [huge]


def test_a_record_the_store_refuses_is_set_aside_not_retried_forever(store: Workspace) -> None:
    spool = SpoolAppender(store.settings.spool_dir, _fingerprint(store))
    spool.append(encode_rows(sample_log_rows("good-1")))
    spool.append(b'[["too", "few", "columns"]]')  # a row no store takes
    spool.append(encode_rows(sample_log_rows("good-2")))
    spool.close()
    _adopt(store)
    assert logged_rows(store) == 2
    rejected = store.settings.spool_dir / "rejected"
    kept = sorted(p.name for p in rejected.iterdir())
    assert len(kept) == 2 and kept[0].endswith(".reason.txt") and kept[1].endswith(".rows.json")
    assert (rejected / kept[1]).read_bytes() == b'[["too", "few", "columns"]]'
    assert not spool.directory.exists()


def test_ids_with_control_characters_are_refused(client: TestClient) -> None:
    from tests.helpers import TOY_ROW

    headers = {"Authorization": f"Bearer {client.app.state.workspace.admin_token()}"}  # type: ignore[attr-defined]
    for body in (
        {"instances": [TOY_ROW], "id": "a\u0000b"},
        {"instances": [TOY_ROW], "entity_id": "card\n1"},
    ):
        refused = client.post("/v1/models/toy:predict", headers=headers, json=body)
        assert refused.status_code in (400, 422), refused.text
    oip = client.post(
        "/v2/models/toy/infer",
        headers=headers,
        json={
            "id": "x\u0000",
            "inputs": [{"name": "amount", "shape": [1], "datatype": "FP64", "data": [1.0]}],
        },
    )
    assert oip.status_code == 400 and oip.json()["field"] == "id"
    label = client.post(
        "/api/v1/feedback", headers=headers, json={"labels": [{"request_id": "\u0000"}]}
    )
    assert label.status_code == 422


def test_rounds_stretch_under_heavy_traffic_and_not_under_light(store: Workspace) -> None:
    """A round that drained many rows waits BUSY_INTERVAL_S for the next; a light one keeps
    the configured interval (a flush asks at once either way)."""
    spool = SpoolAppender(store.settings.spool_dir, _fingerprint(store))
    writer = _writer(store, owner=spool.owner)
    spool.append(encode_rows(sample_log_rows("heavy", BUSY_ROWS)))
    writer._drain_parent(final=False)
    assert logged_rows(store) == BUSY_ROWS
    assert writer._round_wait() == BUSY_INTERVAL_S
    spool.append(encode_rows(sample_log_rows("light", 3)))
    writer._drain_parent(final=False)
    assert logged_rows(store) == BUSY_ROWS + 3
    assert writer._round_wait() == writer.config.interval_s < BUSY_INTERVAL_S
    writer._drain_parent(final=False)  # nothing new: an idle round
    assert writer._round_wait() == writer.config.interval_s
    spool.close()
