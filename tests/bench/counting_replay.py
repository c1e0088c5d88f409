"""What drift counting costs the log writer, without a server: the same lr20 requests (one spool
record each) decoded and committed to a fresh SQLite store in rounds of N rows, as the writer
does, with counting on (folding every FOLD_EVERY rounds) and off; CPU µs per row of each.

    python -m tests.bench.counting_replay [rows per commit, 1000] [rows, 20000]

Wall-clock numbers on a shared machine move with its load; for an A/B that does not, count
instructions of one variant at a time and subtract (COUNTING=on, then off, same arguments):

    COUNTING=on PYTHONMALLOC=malloc valgrind --tool=callgrind python -m tests.bench.counting_replay

1,000 rows per commit is what the serving bench's 16 connections make at 0.2 s rounds, 200
what one connection makes. Both variants import numpy first: only the counting is compared.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy  # noqa: F401  (imported in both variants, see above)
import orjson

from backend.predictions.rows import decode_rows, encode_rows, log_row
from backend.predictions.store import open_store
from backend.predictions.window_counts import Retention, WindowCounter

ROUND_S = 0.2
FOLD_EVERY = int(os.environ.get("FOLD_EVERY", "25"))  # rounds: 5 s at 0.2 s rounds


def _registered(work: Path) -> tuple[Path, list[dict[str, float]]]:
    """A data dir with lr20 registered (its reference summarised by the registration), made in a
    child process so that this one holds what a writer holds; and lr20's request bodies."""
    script = (
        "import sys, orjson; from pathlib import Path;"
        "from tests.bench.models import build_lr20, register_models;"
        "work = Path(sys.argv[1]); (work / 'models').mkdir();"
        "model = build_lr20(work / 'models', 2_000);"
        "register_models(work / 'data', [model]);"
        "(work / 'bodies.json').write_bytes(orjson.dumps("
        "[orjson.loads(b)['instances'][0] for b in model.bodies]))"
    )
    subprocess.run([sys.executable, "-c", script, str(work)], check=True)
    return work / "data" / "servedeck.db", orjson.loads((work / "bodies.json").read_bytes())


def _payloads(bodies: list[dict[str, float]], rows: int, per_commit: int, start: float) -> list:
    chooser = random.Random(1)
    rate = per_commit / ROUND_S
    payloads = []
    for i in range(rows):
        p = chooser.random()
        row = log_row(
            request_id=f"r{i}",
            row_index=0,
            created_at=start + i / rate,
            model="lr20",
            version="1",
            route="active",
            entity_id=None,
            features=bodies[i % len(bodies)],
            outputs={"predict": int(p > 0.5), "predict_proba": [1 - p, p]},
            latency_ms=1.0,
            token_name="bench",
        )
        payloads.append(encode_rows([row]))
    return payloads


def replay(template: Path, payloads: list, per_commit: int, counting: bool, end: float) -> float:
    """CPU seconds of committing every payload (and folding, with counting) on a fresh copy of
    the registered store."""
    copy = Path(tempfile.mkdtemp(prefix="counting-replay-")) / "s.db"
    with sqlite3.connect(template) as source, sqlite3.connect(copy) as target:
        source.backup(target)
    store = open_store("sqlite", str(copy))
    store.keep_fold_cache()
    counter = WindowCounter(store.references)
    segment = "bench/000001"
    offset = store.committed_offset(segment)
    started = time.process_time()
    for number, first in enumerate(range(0, len(payloads), per_commit)):
        rows = [row for p in payloads[first : first + per_commit] for row in decode_rows(p)]
        store.commit(segment, offset, offset + 1, rows, counter.count(rows) if counting else [])
        offset += 1
        if counting and number % FOLD_EVERY == FOLD_EVERY - 1:
            store.fold_windows(int(rows[-1][2] // 60 * 60 + 60), Retention(), time.time())
    while counting and store.fold_windows(int(end), Retention(), time.time()) > 0:
        pass
    return time.process_time() - started


def main() -> None:
    per_commit = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000
    rows = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
    work = Path(tempfile.mkdtemp(prefix="counting-replay-"))
    template, bodies = _registered(work)
    start = (time.time() - 3_600) // 60 * 60
    payloads = _payloads(bodies, rows, per_commit, start)
    only = os.environ.get("COUNTING")
    if only:
        spent = replay(template, payloads, per_commit, only == "on", start + 7_200)
        print(f"counting {only}: {spent:.3f} s")
        return
    best = {True: float("inf"), False: float("inf")}
    for _ in range(3):
        for counting in (False, True):
            spent = replay(template, payloads, per_commit, counting, start + 7_200)
            best[counting] = min(best[counting], spent)
    per_row = 1e6 / rows
    print(
        f"{per_commit} rows per commit: off {best[False] * per_row:.1f} µs/row, "
        f"on {best[True] * per_row:.1f} µs/row, counting {(best[True] - best[False]) * per_row:.1f}"
        " µs/row (CPU, best of 3)"
    )


if __name__ == "__main__":
    main()
