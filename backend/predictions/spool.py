"""The spool: append-only segment files through which answered predictions reach the log.

The request path appends each answered request's rows to its process's current segment with
one ``write(2)`` before the answer leaves. From then on the rows are in the kernel's page cache:
they survive a kill -9 of the serving process, of the writer process, or of both. The writer
reads the segments, inserts their rows and records how far it got (the segment's committed
offset) in the same transaction, so that whoever drains a segment next starts exactly where the
last commit ended: nothing acknowledged is lost and nothing is written twice. A machine crash
loses what the kernel had not yet written back, unless the fsync policy is ``always``.

Layout: ``<data dir>/spool/<owner>/`` per serving process, holding ``owner.lock`` (locked with
flock by the serving process for its whole life: whoever can take the lock knows the owner is
gone), ``owner.json`` (which database the rows belong to) and the segments ``000001.seg``,
``000002.seg``... Only the newest segment of an owner is appended to; an older one is sealed.

A segment starts with ``MAGIC``; then records of a 4-byte little-endian length, a 4-byte CRC-32
of the payload, and the payload (an orjson array of log rows). A record cut short by a crash, or
still being written, fails its length or CRC check: a reader waits for it while the segment may
still grow and drops it once the segment is final, since its request was never answered.

Standard library only: the writer process imports it when it starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

MAGIC = b"SDSPOOL1"
_RECORD = struct.Struct("<II")
# A new segment is started past this size, so that drained data leaves the disk in steps.
SEGMENT_BYTES = 64 * 1024 * 1024
# One record holds one request's rows; anything larger than this is a corrupt length field.
MAX_RECORD_BYTES = 1 << 30
# Records the store refused (see ``drain``), kept with the reason; not an owner's directory.
REJECTED_DIR = "rejected"
LOCK_FILE = "owner.lock"
OWNER_FILE = "owner.json"
SEGMENT_SUFFIX = ".seg"


class SpoolWriteError(OSError):
    """The spool could not take a record (disk full, I/O error): the request must not be
    answered, since its prediction could not be kept."""


def segment_name(number: int) -> str:
    return f"{number:06d}{SEGMENT_SUFFIX}"


def segment_key(owner: str, number: int) -> str:
    """A segment's name in the store's ``log_segments`` table: unique across hosts and runs."""
    return f"{owner}/{number:06d}"


def _new_owner() -> str:
    # Time first (directories list in start order), then pid and randomness (unique per host
    # and across hosts sharing one database).
    return f"{time.time_ns() // 1_000_000:012x}-{os.getpid()}-{os.urandom(4).hex()}"


class SpoolAppender:
    """The serving process's side: appends records to its own segments. Event loop only."""

    def __init__(
        self,
        spool_dir: Path,
        database: str,
        *,
        fsync: bool = False,
        segment_bytes: int = SEGMENT_BYTES,
    ):
        self.owner = _new_owner()
        self.directory = spool_dir / self.owner
        self.directory.mkdir(parents=True, mode=0o700)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        owner_info = {"database": database, "pid": os.getpid(), "host": socket.gethostname()}
        _write_small_file(self.directory / OWNER_FILE, json.dumps(owner_info).encode())
        self.segment = 0
        self.offset = 0
        self._fd = -1
        # The next segment number to try (a failed attempt's number is never reused).
        self._next_number = 1
        # The current segment may hold a cut-short record: append in a new one.
        self._broken = False
        self._open_next_segment()

    def append(self, payload: bytes) -> tuple[int, int]:
        """Append one record; returns (segment, offset after it) once the kernel holds it."""
        if self._fd < 0:
            raise SpoolWriteError("the prediction spool is closed")
        if self._broken or self.offset >= self.segment_bytes:
            self._open_next_segment()
        record = _RECORD.pack(len(payload), zlib.crc32(payload)) + payload
        try:
            _write_all(self._fd, record)
        except OSError as exc:
            # Cut short (disk full): no part of it may stay in front of the next record.
            self._cut_back()
            raise SpoolWriteError(f"cannot write the prediction spool: {exc}") from exc
        # Whole in the file from here on: a writer may read and store it at any moment.
        self.offset += len(record)
        if self.fsync:
            try:
                os.fdatasync(self._fd)
            except OSError as exc:
                # Whether this file reached the disk is unknown now: leave the record (it may
                # be stored already, and an answer refused then has a logged row) and go on
                # in a new segment.
                self._broken = True
                raise SpoolWriteError(f"cannot sync the prediction spool: {exc}") from exc
        return self.segment, self.offset

    def close(self) -> None:
        """Stop appending and release the owner lock (a writer may then finish the spool)."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _open_next_segment(self) -> None:
        number = self._next_number
        self._next_number += 1
        path = self.directory / segment_name(number)
        try:
            # O_EXCL: a file left by a failed attempt is never appended to (numbers move on).
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise SpoolWriteError(f"cannot start a prediction spool segment: {exc}") from exc
        try:
            _write_all(fd, MAGIC)
            if self.fsync:
                os.fsync(fd)
                _fsync_directory(self.directory)
        except OSError as exc:
            os.close(fd)
            # Readers drop a segment without its header once a newer one exists.
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise SpoolWriteError(f"cannot start a prediction spool segment: {exc}") from exc
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self.segment, self.offset = fd, number, len(MAGIC)
        self._broken = False

    def _cut_back(self) -> None:
        # If even the cut fails, the record stays torn at the end of this segment: readers end
        # a sealed segment at its first bad record, so the next append starts a new one.
        try:
            os.ftruncate(self._fd, self.offset)
        except OSError:
            self._broken = True


@dataclass(frozen=True)
class Segment:
    owner: str
    number: int
    path: Path

    @property
    def key(self) -> str:
        return segment_key(self.owner, self.number)


def segments(directory: Path) -> list[Segment]:
    """An owner's segments, oldest first."""
    found = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            name = entry.name
            if name.endswith(SEGMENT_SUFFIX) and name[: -len(SEGMENT_SUFFIX)].isdigit():
                found.append(
                    Segment(directory.name, int(name[: -len(SEGMENT_SUFFIX)]), Path(entry.path))
                )
    return sorted(found, key=lambda segment: segment.number)


def owner_directories(spool_dir: Path) -> Iterator[Path]:
    with contextlib.suppress(FileNotFoundError):
        for entry in sorted(os.scandir(spool_dir), key=lambda entry: entry.name):
            if entry.is_dir(follow_symlinks=False) and entry.name != REJECTED_DIR:
                yield Path(entry.path)


def owner_database(directory: Path) -> str | None:
    try:
        return str(json.loads((directory / OWNER_FILE).read_bytes())["database"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def claim_owner(directory: Path) -> int | None:
    """Take an owner's lock if its serving process is gone: the fd holding it, else None."""
    try:
        fd = os.open(directory / LOCK_FILE, os.O_RDWR)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_owner(directory: Path) -> None:
    """Delete a drained owner's directory (its lock is held by the caller)."""
    with contextlib.suppress(FileNotFoundError):
        for entry in list(os.scandir(directory)):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
    with contextlib.suppress(OSError):
        os.rmdir(directory)


@dataclass
class ReadResult:
    payloads: list[bytes]
    # Where reading stopped: after the last whole record read.
    offset: int
    # True when reading stopped at a record that is cut short or damaged (not at the end).
    stopped_at_bad_record: bool


def read_records(path: Path, offset: int, max_bytes: int) -> ReadResult:
    """Whole records from ``offset`` on, about ``max_bytes`` of them (at least one)."""
    try:
        with open(path, "rb") as file:
            if offset == 0:
                if file.read(len(MAGIC)) != MAGIC:
                    return ReadResult([], 0, True)
                offset = len(MAGIC)
            file.seek(offset)
            data = file.read(max_bytes)
            if len(data) >= _RECORD.size:
                length = _RECORD.unpack_from(data)[0]
                if _RECORD.size + length > len(data) and length <= MAX_RECORD_BYTES:
                    # One record larger than the read: read it whole.
                    file.seek(offset)
                    data = file.read(_RECORD.size + length)
    except FileNotFoundError:
        return ReadResult([], offset, False)
    payloads: list[bytes] = []
    position = 0
    view = memoryview(data)
    while len(data) - position >= _RECORD.size:
        length, crc = _RECORD.unpack_from(data, position)
        start = position + _RECORD.size
        end = start + length
        if length > MAX_RECORD_BYTES:
            return ReadResult(payloads, offset + position, True)
        if end > len(data):
            break
        payload = bytes(view[start:end])
        if zlib.crc32(payload) != crc:
            return ReadResult(payloads, offset + position, True)
        payloads.append(payload)
        position = end
    return ReadResult(payloads, offset + position, position < len(data))


def record_size(payload: bytes) -> int:
    """Bytes a record with this payload takes in a segment."""
    return _RECORD.size + len(payload)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _write_small_file(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
