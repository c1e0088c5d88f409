"""Fixed-size ring buffers of time series for the charts (numpy, free of Qt).

Appends never allocate; a view returns the kept points oldest first, so the charts redraw
from a QTimer without the buffers ever growing.
"""

from __future__ import annotations

import numpy as np


class RingSeries:
    def __init__(self, capacity: int, columns: dict[str, int]):
        """``columns``: name -> width (1 for a scalar per point, n for a histogram)."""
        self.capacity = capacity
        self.times = np.zeros(capacity, dtype=np.float64)
        self.columns = {
            name: np.full((capacity, width) if width > 1 else capacity, np.nan, dtype=np.float64)
            for name, width in columns.items()
        }
        self._head = 0  # next slot to write
        self.size = 0

    @property
    def last_time(self) -> float | None:
        return None if self.size == 0 else float(self.times[(self._head - 1) % self.capacity])

    def clear(self) -> None:
        self._head = 0
        self.size = 0

    def extend(self, times: np.ndarray, values: dict[str, np.ndarray]) -> None:
        count = len(times)
        if count == 0:
            return
        if count > self.capacity:
            times = times[-self.capacity :]
            values = {name: column[-self.capacity :] for name, column in values.items()}
            count = self.capacity
        slots = (self._head + np.arange(count)) % self.capacity
        self.times[slots] = times
        for name, column in self.columns.items():
            column[slots] = values[name]
        self._head = int((self._head + count) % self.capacity)
        self.size = min(self.capacity, self.size + count)

    def view(self, since: float | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Points (oldest first) with time >= since."""
        start = (self._head - self.size) % self.capacity
        order = (start + np.arange(self.size)) % self.capacity
        times = self.times[order]
        first = 0 if since is None else int(np.searchsorted(times, since, side="left"))
        order = order[first:]
        return times[first:], {name: column[order] for name, column in self.columns.items()}
