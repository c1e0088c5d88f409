"""Request ids: unguessable, unique, and ordered by time so the log's index grows at its end."""

from __future__ import annotations

import os
import re
import time

import pytest

from backend.serving.request_ids import new_request_id

ID_SHAPE = re.compile(r"[0-9a-f]{34}")


def test_ids_are_hex_of_fixed_width_and_unique() -> None:
    ids = [new_request_id() for _ in range(5_000)]  # crosses several read-ahead blocks
    assert all(ID_SHAPE.fullmatch(i) for i in ids)
    assert len(set(ids)) == len(ids)
    # The random halves are unique too: ids made in the same microsecond still differ.
    assert len({i[14:] for i in ids}) == len(ids)


def test_ids_sort_in_the_order_they_were_made() -> None:
    earlier = [new_request_id() for _ in range(100)]
    time.sleep(0.002)
    later = [new_request_id() for _ in range(100)]
    assert max(earlier) < min(later)
    assert [i[:14] for i in earlier] == sorted(i[:14] for i in earlier)


def test_the_time_part_is_the_current_time_in_microseconds() -> None:
    before = time.time_ns() // 1000
    made = int(new_request_id()[:14], 16)
    after = time.time_ns() // 1000
    assert before <= made <= after


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX only")
def test_a_forked_child_does_not_repeat_its_parents_ids() -> None:
    new_request_id()  # the parent now holds a block of random bytes read ahead
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next ids and leave without running pytest's exit
        os.close(read_end)
        os.write(write_end, ",".join(new_request_id()[14:] for _ in range(50)).encode())
        os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child = set(pipe.read().decode().split(","))
    os.waitpid(pid, 0)
    parent = {new_request_id()[14:] for _ in range(50)}
    assert len(child) == 50
    assert not child & parent
