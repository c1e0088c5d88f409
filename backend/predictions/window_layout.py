"""The stored counts of a drift window (delta rows and bucket rows): parsed, summed and written.

One layout for both tables, as JSON text::

    {"rows": R, "numerical": block, "features": {name: categorical feature}}
    block:       {"names": [...], "sizes": [...], "n": [...], "missing": [...],
                  "bins": B, "counts": C, "sums": S}
    categorical: {"kind": "categorical", "values": {text: count}, "n": n, "missing": m}

Bins are those of ``summary_layout``. The numerical features' counts are parallel arrays, one
after the other in the order of ``names`` (``sizes`` says how many bins each used, ascending
within each), so that a writer folding deltas and a reader summing a day of buckets add them
with numpy rather than key by key in Python (a fold of the first layout, ``{bin text: count}``
maps, cost ~20-60 µs per logged row). The arrays are stored packed: base64 of their
little-endian bytes (int32 bins, int64 counts, float64 sums), since writing and reading every
sum as decimal text cost more than the binning itself; and packed once for all features, since
three arrays per feature (the layout before) cost ~60 numpy and base64 calls per commit for
20 features, more than the counting of a few hundred rows. Earlier layouts (arrays per
feature, packed or as JSON lists, under ``features`` with ``"kind": "numerical"``; and maps) are
still read (``parse``).
"""

from __future__ import annotations

import base64
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from backend.predictions.summary_layout import cap_values

# Packed arrays' types. Bins are below FINE_BINS + 2; counts are int64 (int32 would wrap
# silently past 2**31 in one bin of a long-lived bucket); sums keep every bit of the float64
# the binning added.
_BIN_TYPE = np.dtype("<i4")
_COUNT_TYPE = np.dtype("<i8")
_SUM_TYPE = np.dtype("<f8")

# name -> (bins, counts, sums, n, missing); bins int64 ascending, counts and sums float64.
NumericalCounts = tuple[np.ndarray, np.ndarray, np.ndarray, int, int]
# name -> (values, n, missing)
CategoricalCounts = tuple[dict[str, int], int, int]


@dataclass
class ParsedWindow:
    """One bucket or delta (or a sum of them), numerical features as numpy arrays."""

    rows: int = 0
    numerical: dict[str, NumericalCounts] = field(default_factory=dict)
    categorical: dict[str, CategoricalCounts] = field(default_factory=dict)
    size: int = 0  # bins and values held, for a cache's bound


def _keys(mapping: dict[str, Any]) -> np.ndarray:
    if not mapping:
        return np.zeros(0, dtype=np.int64)
    # One C parse of the joined keys: ~2x faster than numpy converting a list of texts.
    return np.fromstring(",".join(mapping), sep=",", dtype=np.int64)


def _packed(array: np.ndarray, dtype: np.dtype[Any]) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode("ascii")


def _unpacked(text: str, dtype: np.dtype[Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=dtype)


def _numerical(feature: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if "bins" in feature:
        bins = feature["bins"]
        if isinstance(bins, str):  # packed: little-endian int32 bins and counts, float64 sums
            return (
                _unpacked(bins, _BIN_TYPE).astype(np.int64),
                _unpacked(feature["counts"], _COUNT_TYPE).astype(np.float64),
                _unpacked(feature["sums"], _SUM_TYPE).astype(np.float64),
            )
        return (
            np.asarray(bins, dtype=np.int64),
            np.asarray(feature["counts"], dtype=np.float64),
            np.asarray(feature["sums"], dtype=np.float64),
        )
    counts: dict[str, Any] = feature.get("counts") or {}
    sums: dict[str, Any] = feature.get("sums") or {}
    # The earlier layout: {bin text: count} and {bin text: sum}.
    bins = _keys(counts)
    totals = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
    sum_bins = _keys(sums)
    if np.array_equal(sum_bins, bins):  # the writer kept both in one bin order
        summed = np.fromiter(sums.values(), dtype=np.float64, count=len(sums))
    else:
        by_bin = dict(zip(sum_bins.tolist(), sums.values(), strict=True))
        summed = np.array([by_bin.get(b, 0.0) for b in bins.tolist()], dtype=np.float64)
    return bins, totals, summed


def _parse_block(block: dict[str, Any], parsed: ParsedWindow) -> None:
    """The numerical features packed together (see the module's docstring)."""
    bins = _unpacked(block["bins"], _BIN_TYPE).astype(np.int64)
    counts = _unpacked(block["counts"], _COUNT_TYPE).astype(np.float64)
    sums = _unpacked(block["sums"], _SUM_TYPE)
    names, sizes = block["names"], block["sizes"]
    if not len(bins) == len(counts) == len(sums) == sum(sizes) or len(names) != len(sizes):
        raise ValueError("a window's packed numerical counts do not match their sizes")
    start = 0
    for name, size, n, missing in zip(names, sizes, block["n"], block["missing"], strict=True):
        end = start + size
        parsed.numerical[name] = (bins[start:end], counts[start:end], sums[start:end], n, missing)
        start = end
    parsed.size += len(bins)


def parse(text: str | bytes) -> ParsedWindow:
    window = orjson.loads(text)
    parsed = ParsedWindow(int(window.get("rows", 0)))
    if "numerical" in window:
        _parse_block(window["numerical"], parsed)
    for name, feature in window.get("features", {}).items():
        n, missing = int(feature.get("n", 0)), int(feature.get("missing", 0))
        if feature.get("kind") == "numerical":
            bins, counts, sums = _numerical(feature)
            parsed.numerical[name] = (bins, counts, sums, n, missing)
            parsed.size += len(bins)
        else:
            parsed.categorical[name] = (feature["values"], n, missing)
            parsed.size += len(feature["values"])
    return parsed


def summed_bins(
    bins: list[np.ndarray], counts: list[np.ndarray], sums: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The bins used across parts, ascending, with their summed counts and sums."""
    every = np.concatenate(bins) if bins else np.zeros(0, dtype=np.int64)
    if not len(every):
        return every, np.zeros(0, dtype=np.int64), np.zeros(0)
    counted = np.bincount(every, weights=np.concatenate(counts))
    total = np.bincount(every, weights=np.concatenate(sums))
    used = np.flatnonzero(np.bincount(every))
    return used, counted[used].round().astype(np.int64), total[used]


# Above this many (feature, bin) slots, features are summed one by one: one bincount over all
# of them needs an array this long (bins are below FINE_BINS + 2 as the writer makes them, but
# a stored row is not trusted to be).
_MAX_SLOTS = 1 << 22


def _summed_features(
    numerical: dict[str, list[Any]],
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Each feature's bins used across parts, ascending, with their summed counts (whole
    numbers) and sums: every feature at once, its bins shifted past the features before it
    (one bincount per array, not three per feature: a fold merges ~20 features each time)."""
    names = list(numerical)
    chunks = [bins for entry in numerical.values() for bins in entry[0]]
    every = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    width = int(every.max()) + 1 if every.size else 0
    if not every.size or int(every.min()) < 0 or width * len(names) > _MAX_SLOTS:
        by_feature = {}
        for name, (bins, counts, sums, _, _) in numerical.items():
            used, counted, added = summed_bins(bins, counts, sums)
            by_feature[name] = (used, counted.astype(np.float64), added)
        return by_feature
    shifts = [index * width for index, entry in enumerate(numerical.values()) for _ in entry[0]]
    keys = every + np.repeat(np.asarray(shifts, dtype=np.int64), [len(c) for c in chunks])
    slots = width * len(names)
    present = np.bincount(keys, minlength=slots)
    counted = np.bincount(
        keys, weights=np.concatenate([c for e in numerical.values() for c in e[1]]), minlength=slots
    )
    added = np.bincount(
        keys, weights=np.concatenate([s for e in numerical.values() for s in e[2]]), minlength=slots
    )
    used = np.flatnonzero(present)
    bounds = np.searchsorted(used, np.arange(len(names) + 1) * width).tolist()
    used_counts = counted[used].round()
    used_sums = added[used]
    local = used % width
    return {
        name: (
            local[bounds[index] : bounds[index + 1]],
            used_counts[bounds[index] : bounds[index + 1]],
            used_sums[bounds[index] : bounds[index + 1]],
        )
        for index, name in enumerate(names)
    }


def merge(parts: Iterable[ParsedWindow]) -> ParsedWindow:
    """The sum of windows, in order. A feature whose kind changed between parts (its version's
    reference was replaced) keeps only the counts of its latest kind."""
    rows = 0
    numerical: dict[str, list[Any]] = {}  # name -> [bins, counts, sums, n, missing]
    categorical: dict[str, list[Any]] = {}  # name -> [Counter, n, missing]
    for part in parts:
        rows += part.rows
        for name, (bins, counts, sums, n, missing) in part.numerical.items():
            categorical.pop(name, None)
            into = numerical.setdefault(name, [[], [], [], 0, 0])
            into[0].append(bins)
            into[1].append(counts)
            into[2].append(sums)
            into[3] += n
            into[4] += missing
        for name, (values, n, missing) in part.categorical.items():
            numerical.pop(name, None)
            into = categorical.setdefault(name, [Counter(), 0, 0])
            into[0].update(values)
            into[1] += n
            into[2] += missing
    total = ParsedWindow(rows)
    summed = _summed_features(numerical)
    for name, (_, _, _, n, missing) in numerical.items():
        used, counted, added = summed[name]
        total.numerical[name] = (used, counted, added, n, missing)
        total.size += len(used)
    for name, (values, n, missing) in categorical.items():
        kept = cap_values(values)
        total.categorical[name] = (kept, n, missing)
        total.size += len(kept)
    return total


def encode(window: ParsedWindow) -> str:
    numerical = window.numerical.values()
    block = {
        "names": list(window.numerical),
        "sizes": [len(bins) for bins, *_ in numerical],
        "n": [n for *_, n, _ in numerical],
        "missing": [missing for *_, missing in numerical],
        "bins": _packed_all([bins for bins, *_ in numerical], _BIN_TYPE),
        "counts": _packed_all([counts for _, counts, *_ in numerical], _COUNT_TYPE, whole=True),
        "sums": _packed_all([sums for _, _, sums, *_ in numerical], _SUM_TYPE),
    }
    features: dict[str, Any] = {}
    for name, (values, n, missing) in window.categorical.items():
        features[name] = {"kind": "categorical", "values": values, "n": n, "missing": missing}
    return orjson.dumps({"rows": window.rows, "numerical": block, "features": features}).decode()


def _packed_all(arrays: list[np.ndarray], dtype: np.dtype[Any], whole: bool = False) -> str:
    """``whole``: counts, held as float64 (numpy adds them so), rounded before the cast."""
    if not arrays:
        return ""
    joined = np.concatenate(arrays)
    return _packed(joined.round() if whole else joined, dtype)
