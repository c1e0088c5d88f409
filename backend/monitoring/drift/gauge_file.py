"""What Prometheus's drift gauges show, handed from the process that judges the drift rules
(``backend.watcher``) to the serving workers that answer scrapes: a small JSON file in the
data directory, replaced whole after each round (a reader never sees half of it), read at
most once per change of the file."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson

from backend.schemas import WindowDrift

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelDriftGauges:
    """One model's newest judged window, as the gauges show it."""

    drifted_share: float
    # (feature or output, test, statistic, threshold, drifted)
    entries: tuple[tuple[str, str, float, float, bool], ...]

    @classmethod
    def of(cls, window: WindowDrift) -> ModelDriftGauges | None:
        report = window.report
        if report is None:
            return None
        entries = tuple(
            (e.name, str(e.test), float(e.statistic), float(e.threshold), bool(e.drifted))
            for e in [*report.features, *report.predictions]
        )
        return cls(float(report.drifted_share), entries)


def gauges_of(latest: Mapping[str, WindowDrift]) -> dict[str, ModelDriftGauges]:
    found = {model: ModelDriftGauges.of(window) for model, window in latest.items()}
    return {model: gauges for model, gauges in found.items() if gauges is not None}


class DriftGaugeFile:
    def __init__(self, path: Path):
        self.path = path
        self._seen: tuple[int, int] | None = None  # (mtime_ns, size) of what was read
        self._gauges: dict[str, ModelDriftGauges] = {}

    def write(self, latest: Mapping[str, WindowDrift]) -> None:
        document = {
            model: {"drifted_share": g.drifted_share, "entries": g.entries}
            for model, g in gauges_of(latest).items()
        }
        temp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temp.write_bytes(orjson.dumps(document))
        os.replace(temp, self.path)

    def clear(self) -> None:
        """Remove the gauges and any half-written copy a killed watcher left (a new server's
        gauges are its own watcher's, once it has judged a round)."""
        self.path.unlink(missing_ok=True)
        for leftover in self.path.parent.glob(f".{self.path.name}.*.tmp"):
            leftover.unlink(missing_ok=True)

    def read(self) -> dict[str, ModelDriftGauges]:
        """The gauges last written (none while nothing was judged yet)."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return {}
        seen = (stat.st_mtime_ns, stat.st_size)
        if seen != self._seen:
            try:
                document = orjson.loads(self.path.read_bytes())
                self._gauges = {
                    model: ModelDriftGauges(
                        float(found["drifted_share"]),
                        tuple(
                            (str(n), str(t), float(s), float(h), bool(d))
                            for n, t, s, h, d in found["entries"]
                        ),
                    )
                    for model, found in document.items()
                }
            except (OSError, ValueError, KeyError, TypeError):
                # Never a failed scrape: the gauges stay as last read, and the log says why.
                log.exception("the drift gauges in %s cannot be read", self.path)
            self._seen = seen
        return self._gauges
