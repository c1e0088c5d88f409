"""The spool: append-only segment files through which answered predictions reach the log.

The request path copies each answered request's rows into its process's current segment, which
is mapped into memory, before the answer leaves. From then on the rows are in the kernel's page
cache: they survive a kill -9 of the serving process, of the writer process, or of both. The
writer reads the segments, inserts their rows and records how far it got (the segment's
committed offset) in the same transaction, so that whoever drains a segment next starts exactly
where the last commit ended: nothing acknowledged is lost and nothing is written twice. A
machine crash loses what the kernel had not yet written back, unless the fsync policy is
``always``.

Why a mapping and not ``write(2)``: a system call releases the GIL, and when the model runs on
its thread (every model slower than the batcher's inline budget) the event loop then waits for
the GIL back for up to the interpreter's switch interval. Measured here, a ~900-byte write took
1.7 µs alone and 338 µs on average (p99 3.4 ms) beside a thread running a scikit-learn
pipeline, where a copy into the mapping took 1.3 µs. A segment's whole size is reserved on disk
when it starts (``posix_fallocate``), so a full disk refuses a new segment (the request gets a
503) instead of faulting on a page of the mapping; on filesystems where a reservation does not
guarantee the blocks (copy-on-write, network), records are written with ``write(2)`` instead.

Layout: ``<data dir>/spool/<owner>/`` per serving process, holding ``owner.lock`` (locked with
flock by the serving process for its whole life: whoever can take the lock knows the owner is
gone), ``owner.json`` (which database the rows belong to) and the segments ``000001.seg``,
``000002.seg``... Only the newest segment of an owner is appended to; an older one is sealed.

A segment starts with ``MAGIC``; then records of a 4-byte little-endian length, a 4-byte CRC-32
of the payload, and the payload (an orjson array of log rows, never empty); then zeros up to
the reserved size (a closed segment is cut back to its records). The payload is copied before
its header, so a header of zeros is where the records end so far. A record cut short by a
crash, or still being copied, fails its CRC check: a reader waits for it while the segment may
still grow and drops it once the segment is final, since its request was never answered.

Standard library only: the writer process imports it when it starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import mmap
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
# A segment's reserved size: a new one starts when a record no longer fits, so drained data
# leaves the disk in steps (PostgreSQL's WAL segments are 16 MB too).
SEGMENT_BYTES = 16 * 1024 * 1024
# A reader's first read from an offset: most rounds find a few records before the zeros.
FIRST_READ_BYTES = 256 * 1024
# One record holds one request's rows; anything larger than this is a corrupt length field.
MAX_RECORD_BYTES = 1 << 30
# Records the store refused (see ``drain``), kept with the reason; not an owner's directory.
REJECTED_DIR = "rejected"
LOCK_FILE = "owner.lock"
OWNER_FILE = "owner.json"
SEGMENT_SUFFIX = ".seg"
# A segment being started: readers skip it until it is renamed into place, whole.
BUILDING_SUFFIX = ".new"
# Filesystems whose posix_fallocate reserves real blocks (overlay: those of its upper layer,
# ext4 or xfs in practice). Copy-on-write (btrfs, zfs) and network filesystems may still need
# space on a later write, which through a mapping is a SIGBUS instead of an error.
MAPPABLE_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "tmpfs", "overlay"})


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
    """The serving process's side: appends records to its own segments. Event loop only.

    Segments are mapped into memory where the data directory's filesystem reserves what
    ``posix_fallocate`` asks for (``mappable``); elsewhere (a copy-on-write or network
    filesystem, where a full disk could fault on a page of the mapping and kill the process)
    records are appended with ``write(2)``, which a full disk fails with an error instead.
    """

    def __init__(
        self,
        spool_dir: Path,
        database: str,
        *,
        fsync: bool = False,
        segment_bytes: int = SEGMENT_BYTES,
        mapped: bool | None = None,
    ):
        self.owner = _new_owner()
        self.directory = spool_dir / self.owner
        self.directory.mkdir(parents=True, mode=0o700)
        self.fsync = fsync
        self.segment_bytes = segment_bytes
        self.mapped = mappable(self.directory) if mapped is None else mapped
        self._lock_fd = os.open(self.directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        owner_info = {"database": database, "pid": os.getpid(), "host": socket.gethostname()}
        _write_small_file(self.directory / OWNER_FILE, json.dumps(owner_info).encode())
        self.segment = 0
        self.offset = 0
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._closed = False
        # The next segment number to try (a failed attempt's number is never reused).
        self._next_number = 1
        # The current segment may hold a cut-short record, or its file may not hold what was
        # written (a failed sync): append in a new one.
        self._broken = False
        self._open_next_segment(0)

    def append(self, payload: bytes) -> tuple[int, int]:
        """Append one record; returns (segment, offset after it) once the kernel holds it."""
        if self._closed:
            raise SpoolWriteError("the prediction spool is closed")
        if not payload:
            raise ValueError("a spool record's payload is never empty")
        size = _RECORD.size + len(payload)
        if self._broken or self._fd < 0 or not self._has_room(size):
            self._open_next_segment(size)
        header = _RECORD.pack(len(payload), zlib.crc32(payload))
        if self._map is not None:
            start = self.offset
            # The payload first: a reader that sees a header sees its whole record (or a CRC
            # mismatch if it read in the middle of the copy), never a header before its data.
            self._map[start + _RECORD.size : start + size] = payload
            self._map[start : start + _RECORD.size] = header
        else:
            try:
                _write_all(self._fd, header + payload)
            except OSError as exc:
                # Cut short (disk full): no part of it may stay in front of the next record.
                self._cut_back()
                raise SpoolWriteError(f"cannot write the prediction spool: {exc}") from exc
        # Whole in the page cache from here on: a writer may read and store it at any moment.
        self.offset += size
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
        self._closed = True
        self._release_segment()
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            with contextlib.suppress(OSError):
                os.close(fd)

    def _has_room(self, size: int) -> bool:
        if self._map is not None:
            return self.offset + size <= len(self._map)
        return self.offset < self.segment_bytes

    def _open_next_segment(self, record_bytes: int) -> None:
        """Start the next segment. It is made under a name readers skip and renamed into place
        once whole: a reader seals a segment once a newer one exists, so a newer one must
        never show before this process has stopped appending to the older."""
        number = self._next_number
        self._next_number += 1
        path = self.directory / segment_name(number)
        building = path.with_name(path.name + BUILDING_SUFFIX)
        capacity = max(self.segment_bytes, len(MAGIC) + record_bytes)
        try:
            # O_EXCL: a file left by a failed attempt is never appended to (numbers move on).
            # O_APPEND when written with write(2): a record cut back is written over.
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | (0 if self.mapped else os.O_APPEND)
            fd = os.open(building, flags, 0o600)
        except OSError as exc:
            raise SpoolWriteError(f"cannot start a prediction spool segment: {exc}") from exc
        mapped = None
        try:
            if self.mapped:
                # Reserved on disk now: a page of the mapping never needs a block it lacks.
                os.posix_fallocate(fd, 0, capacity)
            os.pwrite(fd, MAGIC, 0)
            if self.fsync:
                os.fsync(fd)
            if self.mapped:
                mapped = mmap.mmap(fd, capacity)
            os.rename(building, path)
            if self.fsync:
                _fsync_directory(self.directory)
        except (OSError, ValueError) as exc:
            if mapped is not None:
                mapped.close()
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(building)
            raise SpoolWriteError(f"cannot start a prediction spool segment: {exc}") from exc
        self._release_segment()
        self._fd, self._map, self.segment, self.offset = fd, mapped, number, len(MAGIC)
        self._broken = False

    def _release_segment(self) -> None:
        """Unmap and close the current segment, cut back to its records: a sealed segment
        holds no zeros, and a closed spool keeps no reserved space. If the cut fails the zeros
        stay, which readers skip."""
        if self._map is not None:
            mapped, self._map = self._map, None
            mapped.close()
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):
                os.ftruncate(fd, self.offset)
            with contextlib.suppress(OSError):
                os.close(fd)

    def _cut_back(self) -> None:
        # If even the cut fails, the record stays torn at the end of this segment: readers end
        # a sealed segment at its first bad record, so the next append starts a new one.
        try:
            os.ftruncate(self._fd, self.offset)
        except OSError:
            self._broken = True


def mappable(directory: Path) -> bool:
    """Whether ``directory``'s filesystem keeps the blocks ``posix_fallocate`` reserves, so
    that writing through a mapping can never run out of space (read from the mount table)."""
    return _filesystem_type(directory) in MAPPABLE_FILESYSTEMS


def _filesystem_type(directory: Path) -> str | None:
    try:
        target = str(directory.resolve())
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    best, kind = "", None
    for line in lines:
        # "<id> <parent> <dev> <root> <mount point> <options> [optional...] - <type> ..."
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ").replace("\\011", "\t").replace("\\134", "\\")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            dash = fields.index("-")
            best, kind = point, fields[dash + 1] if dash + 1 < len(fields) else None
    return kind


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
    """Whole records from ``offset`` on, about ``max_bytes`` of them (at least one).

    Reading stops cleanly at a header of zeros (where the records end so far) or at the end of
    the file, and as ``stopped_at_bad_record`` at a record that fails its checks or is cut
    short by the end of the file.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return ReadResult([], offset, False)
    try:
        if offset == 0:
            if os.pread(fd, len(MAGIC), 0) != MAGIC:
                return ReadResult([], 0, True)
            offset = len(MAGIC)
        # Never read past the end as it is now (a damaged length field must not allocate a
        # gigabyte); what is appended meanwhile is read next time.
        size = os.fstat(fd).st_size
        payloads: list[bytes] = []
        position = offset
        want = max(_RECORD.size, min(max_bytes, FIRST_READ_BYTES))
        while True:
            data = os.pread(fd, max(0, min(want, size - position)), position)
            at_end_of_file = position + len(data) >= size
            used, stop = _parse_records(data, payloads)
            position += used
            if stop is not None:
                return ReadResult(payloads, position, stop)
            if at_end_of_file:
                # What is left is a record cut short by the end of the file, unless it is
                # zeros (reserved space shorter than a header).
                return ReadResult(payloads, position, any(data[used:]))
            read_so_far = position - offset
            if payloads and read_so_far >= max_bytes:
                return ReadResult(payloads, position, False)
            # A record larger than what is left of the read: read at least all of it.
            pending = _pending_record_bytes(data, used)
            want = max(min(max_bytes - read_so_far, 2 * want), pending, FIRST_READ_BYTES)
    finally:
        os.close(fd)


def _parse_records(data: bytes, payloads: list[bytes]) -> tuple[int, bool | None]:
    """Append the whole records at the start of ``data``; returns (bytes used, stop), where
    stop is False at a header of zeros, True at a bad record, None when ``data`` ran out."""
    position = 0
    view = memoryview(data)
    while len(data) - position >= _RECORD.size:
        length, crc = _RECORD.unpack_from(data, position)
        if length == 0:
            # Payloads are never empty: zeros are the space reserved for records to come.
            return position, crc != 0
        if length > MAX_RECORD_BYTES:
            return position, True
        start = position + _RECORD.size
        end = start + length
        if end > len(data):
            break
        payload = bytes(view[start:end])
        if zlib.crc32(payload) != crc:
            return position, True
        payloads.append(payload)
        position = end
    return position, None


def _pending_record_bytes(data: bytes, used: int) -> int:
    """The size of the record that starts at ``used`` and did not fit in ``data`` (0 if its
    header did not fit either)."""
    if len(data) - used < _RECORD.size:
        return 0
    length = _RECORD.unpack_from(data, used)[0]
    return _RECORD.size + min(length, MAX_RECORD_BYTES)


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
