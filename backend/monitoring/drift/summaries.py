"""Drift summaries: what is kept of a reference (once, at registration) and of a current window
(counted as predictions are logged, or read from a file), in the layout of
``backend.predictions.summary_layout``, with their JSON forms for the store and between
processes.

``n`` is the number of values counted (in a bin or a category); ``missing`` the number of
missing ones (None, NaN, infinite), which no bin holds. A window's JSON is sparse (bin index
or category text -> count) as the log writer writes it; the dense lists of the file path are
read as well. Windows add up by summing per key (``merge_windows``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

NUMERICAL = "numerical"
CATEGORICAL = "categorical"


@dataclass
class NumericalReference:
    edges: np.ndarray  # float64, strictly increasing
    counts: np.ndarray  # int64, len(edges) + 1
    sums: np.ndarray  # float64, len(edges) + 1
    n: int
    missing: int
    mean: float
    std: float  # population standard deviation (ddof=0), as numpy's and Evidently's
    min: float
    max: float

    kind = NUMERICAL

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": NUMERICAL,
            "edges": self.edges.tolist(),
            "counts": self.counts.tolist(),
            "sums": self.sums.tolist(),
            "n": self.n,
            "missing": self.missing,
            "mean": self.mean,
            "std": self.std,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NumericalReference:
        edges = np.asarray(data["edges"], dtype=np.float64)
        counts = np.asarray(data["counts"], dtype=np.int64)
        sums = np.asarray(data["sums"], dtype=np.float64)
        if edges.size == 0 and int(data["n"]) > 0:
            raise ValueError("a numerical reference with values needs at least one edge")
        if counts.size != edges.size + 1 or sums.size != edges.size + 1:
            raise ValueError("a numerical reference needs len(edges) + 1 counts and sums")
        if edges.size > 1 and not np.all(np.diff(edges) > 0):
            raise ValueError("a numerical reference's edges must be strictly increasing")
        return cls(
            edges=edges,
            counts=counts,
            sums=sums,
            n=int(data["n"]),
            missing=int(data["missing"]),
            mean=float(data["mean"]),
            std=float(data["std"]),
            min=float(data["min"]),
            max=float(data["max"]),
        )


@dataclass
class CategoricalReference:
    categories: dict[str, int]  # the most frequent values, as text
    other: int  # values beyond those kept
    n: int
    missing: int

    kind = CATEGORICAL

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": CATEGORICAL,
            "categories": dict(self.categories),
            "other": self.other,
            "n": self.n,
            "missing": self.missing,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CategoricalReference:
        return cls(
            categories={str(k): int(v) for k, v in data["categories"].items()},
            other=int(data.get("other", 0)),
            n=int(data["n"]),
            missing=int(data["missing"]),
        )


FeatureReference = NumericalReference | CategoricalReference


@dataclass
class ReferenceSummary:
    rows: int
    features: dict[str, FeatureReference] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "features": {name: f.to_json() for name, f in self.features.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ReferenceSummary:
        features: dict[str, FeatureReference] = {}
        for name, feature in data["features"].items():
            if feature["kind"] == NUMERICAL:
                features[name] = NumericalReference.from_json(feature)
            elif feature["kind"] == CATEGORICAL:
                features[name] = CategoricalReference.from_json(feature)
            else:
                raise ValueError(f"feature {name!r}: unknown kind {feature['kind']!r}")
        return cls(rows=int(data["rows"]), features=features)


@dataclass
class NumericalWindow:
    # Dense over the reference's bins; a sparse window read from JSON is as long as its highest
    # bin + 1, and is padded to the reference's len(edges) + 1 when scored.
    counts: np.ndarray  # int64
    sums: np.ndarray  # float64
    n: int
    missing: int

    kind = NUMERICAL

    def dense(self, bins: int) -> tuple[np.ndarray, np.ndarray]:
        """Counts and sums over exactly ``bins`` bins (the reference's len(edges) + 1)."""
        if self.counts.size > bins:
            raise ValueError(
                f"the window has {self.counts.size} bins but the reference only {bins}: "
                "it was counted against other edges"
            )
        counts = np.zeros(bins, dtype=np.int64)
        sums = np.zeros(bins, dtype=np.float64)
        counts[: self.counts.size] = self.counts
        sums[: self.sums.size] = self.sums
        return counts, sums

    def to_json(self) -> dict[str, Any]:
        """Sparse, as the log writer writes it: only the bins that hold values."""
        (filled,) = np.nonzero(self.counts)
        return {
            "kind": NUMERICAL,
            "counts": {str(i): int(self.counts[i]) for i in filled},
            "sums": {str(i): float(self.sums[i]) for i in filled},
            "n": self.n,
            "missing": self.missing,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> NumericalWindow:
        counts = _dense(data["counts"], np.int64)
        sums = _dense(data["sums"], np.float64)
        size = max(counts.size, sums.size)
        return cls(
            counts=np.pad(counts, (0, size - counts.size)),
            sums=np.pad(sums, (0, size - sums.size)),
            n=int(data["n"]),
            missing=int(data["missing"]),
        )


def _dense(values: dict[str, Any] | list[Any], dtype: type) -> np.ndarray:
    if isinstance(values, list):
        return np.asarray(values, dtype=dtype)
    if not values:
        return np.zeros(0, dtype=dtype)
    indices = np.fromiter((int(k) for k in values), dtype=np.int64, count=len(values))
    if indices.min() < 0:
        raise ValueError("a bin index cannot be negative")
    dense: np.ndarray = np.zeros(int(indices.max()) + 1, dtype=dtype)
    dense[indices] = np.fromiter(values.values(), dtype=dtype, count=len(values))
    return dense


@dataclass
class CategoricalWindow:
    values: dict[str, int]  # value as text -> count, any value
    n: int
    missing: int

    kind = CATEGORICAL

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": CATEGORICAL,
            "values": dict(self.values),
            "n": self.n,
            "missing": self.missing,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CategoricalWindow:
        return cls(
            values={str(k): int(v) for k, v in data["values"].items()},
            n=int(data["n"]),
            missing=int(data["missing"]),
        )


FeatureWindow = NumericalWindow | CategoricalWindow


@dataclass
class CurrentSummary:
    rows: int
    features: dict[str, FeatureWindow] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "features": {name: f.to_json() for name, f in self.features.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CurrentSummary:
        features: dict[str, FeatureWindow] = {}
        for name, feature in data["features"].items():
            if feature["kind"] == NUMERICAL:
                features[name] = NumericalWindow.from_json(feature)
            elif feature["kind"] == CATEGORICAL:
                features[name] = CategoricalWindow.from_json(feature)
            else:
                raise ValueError(f"feature {name!r}: unknown kind {feature['kind']!r}")
        return cls(rows=int(data["rows"]), features=features)


def _merge_feature(a: FeatureWindow, b: FeatureWindow, name: str) -> FeatureWindow:
    if isinstance(a, NumericalWindow) and isinstance(b, NumericalWindow):
        size = max(a.counts.size, b.counts.size)
        counts_a, sums_a = a.dense(size)
        counts_b, sums_b = b.dense(size)
        return NumericalWindow(
            counts_a + counts_b, sums_a + sums_b, a.n + b.n, a.missing + b.missing
        )
    if isinstance(a, CategoricalWindow) and isinstance(b, CategoricalWindow):
        values = dict(a.values)
        for text, count in b.values.items():
            values[text] = values.get(text, 0) + count
        return CategoricalWindow(values, a.n + b.n, a.missing + b.missing)
    raise ValueError(f"feature {name!r} is {a.kind} in one window and {b.kind} in another")


def merge_windows(*windows: CurrentSummary) -> CurrentSummary:
    """The summary of the windows together (say, the buckets of the last hour)."""
    merged = CurrentSummary(rows=0)
    for window in windows:
        merged.rows += window.rows
        for name, feature in window.features.items():
            known = merged.features.get(name)
            merged.features[name] = (
                feature if known is None else _merge_feature(known, feature, name)
            )
    return merged
