"""What the feedback-loop indicators read: per time window and side (served, held out), the
labelled-outcome counts kept at label time (``predictions.loop_counts``) and the predictions
per model answer from the drift window counts (``predictions.window_reads``)."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from backend.predictions.loop_counts import MISSING, Key, read_loop_counts
from backend.predictions.summary_layout import PREDICTION
from backend.predictions.window_counts import MINUTE_S
from backend.predictions.window_reads import read_series, read_window

# The routes whose answers the callers got from the model (a canary is the model too).
SERVED_ROUTES = ("active", "canary")
HELD_OUT_ROUTE = "held_out"


@dataclass
class Side:
    """One side's numbers over a window."""

    counts: Counter[Key] = field(default_factory=Counter)
    # Predictions per model answer (as text), from the drift window counts.
    answers: Counter[str] = field(default_factory=Counter)

    @property
    def predictions(self) -> int:
        return int(sum(self.answers.values()))

    @property
    def labelled(self) -> int:
        return round(self.counts.get(("n",), 0.0))

    def add(self, other: Side) -> None:
        self.counts.update(other.counts)
        self.answers.update(other.answers)

    def confusion(self, answer: str, label: str) -> int:
        return round(self.counts.get(("cm", answer, label), 0.0))

    def labels_of(self, label: str) -> int:
        """Labels of one class."""
        return round(sum(v for k, v in self.counts.items() if k[0] == "cm" and k[2] == label))

    def labelled_answers(self, answer: str) -> int:
        """Labels of the predictions that answered one class."""
        return round(sum(v for k, v in self.counts.items() if k[0] == "cm" and k[1] == answer))

    def count(self, *key: Any) -> float:
        return float(self.counts.get(tuple(key), 0.0))


@dataclass
class Window:
    start: float
    end: float
    served: Side = field(default_factory=Side)
    held_out: Side = field(default_factory=Side)


def window_bounds(end: float, window_s: int, windows: int) -> list[tuple[float, float]]:
    """``windows`` consecutive windows of ``window_s`` (rounded up to whole minutes, as the
    window counts are kept) aligned to multiples of it, the last one holding ``end``."""
    width = math.ceil(window_s / MINUTE_S) * MINUTE_S
    last_start = math.floor(end / width) * width
    return [
        (float(last_start - i * width), float(last_start - (i - 1) * width))
        for i in range(windows - 1, -1, -1)
    ]


def read_windows(
    session: Session,
    model: str,
    version: str,
    bounds: list[tuple[float, float]],
    slice_feature: str | None,
) -> list[Window]:
    """Both sides' numbers in every window (oldest first); per-slice counts of
    ``slice_feature`` only (None: none)."""
    found = [Window(start, end) for start, end in bounds]
    first, last = bounds[0][0], bounds[-1][1]
    width = bounds[0][1] - bounds[0][0]
    routes = (*SERVED_ROUTES, HELD_OUT_ROUTE)
    minutes = read_loop_counts(session, model, version, routes, first, last, slice_feature)
    for minute, route, counts in minutes:
        index = int((minute - first) // width)
        if 0 <= index < len(found):
            window = found[index]
            side = window.held_out if route == HELD_OUT_ROUTE else window.served
            side.counts.update(counts)
    connection = session.connection()
    for route in routes:
        # One window (the alert rule's, ending now): read as it is; several aligned windows
        # (a report): read together.
        reads = (
            [read_window(connection, model, first, last, version, route)]
            if len(bounds) == 1
            else read_series(connection, model, len(bounds), width, version, route, end=last)
        )
        for window, read in zip(found, reads, strict=True):
            side = window.held_out if route == HELD_OUT_ROUTE else window.served
            answers = read.summary.get("features", {}).get(PREDICTION)
            if answers and answers.get("kind") == "categorical":
                side.answers.update({str(k): int(v) for k, v in answers["values"].items()})
                if answers.get("missing"):
                    side.answers[MISSING] += int(answers["missing"])
    return found


def total(windows: list[Window]) -> Window:
    whole = Window(windows[0].start, windows[-1].end)
    for window in windows:
        whole.served.add(window.served)
        whole.held_out.add(window.held_out)
    return whole
