"""Request ids for predictions: time first, then random.

Time first, so that the prediction log's request-id index grows at its right edge. With purely
random ids every insert lands on a random page of an index as large as the log: on a log of
1.6M rows the writer spent 15 ms of CPU per 500 rows against 1.7 ms with time-ordered ids, and
the writer's bursts showed in the serving p99. The 80 random bits keep ids unguessable, so that
nobody can label or look up a prediction that is not theirs.
"""

from __future__ import annotations

import os
import threading
import time

RANDOM_BYTES = 10
# os.urandom is a system call; ids are made on every request, so random bytes are read ahead
# in blocks (they are the same CSPRNG output, only fetched 400 ids at a time).
_BLOCK = RANDOM_BYTES * 400


class _RandomBlocks:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._offset = 0

    def take(self) -> bytes:
        with self._lock:
            if self._offset + RANDOM_BYTES > len(self._block):
                self._block = os.urandom(_BLOCK)
                self._offset = 0
            start = self._offset
            self._offset = start + RANDOM_BYTES
            return self._block[start : self._offset]

    def forget(self) -> None:
        # A forked child must not hand out the ids its parent still holds.
        self._block = b""
        self._offset = 0
        self._lock = threading.Lock()


_random = _RandomBlocks()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_random.forget)


def new_request_id() -> str:
    """34 hex digits: microseconds since the epoch (14), then 80 random bits (20)."""
    return f"{time.time_ns() // 1000:014x}{_random.take().hex()}"


def log_request_id(sent: str | None) -> str:
    """The id a request is logged (and labelled) under: the client's own, or a new one.

    An empty id is echoed back as sent (OIP: the response ``id`` is the request's), but the
    log gets a new one: labels find a prediction by its id, and every client sending "" would
    share one, so a label could land on someone else's prediction. The response says which
    id the log holds (OIP ``parameters.request_id``, the record form's ``request_id``).
    """
    return sent if sent else new_request_id()
