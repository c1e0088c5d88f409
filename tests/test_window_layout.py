"""The stored layout of drift-window counts: what is written reads back the same, and counts
stored in the layout before (three packed arrays per numerical feature) are still read."""

from __future__ import annotations

import base64

import numpy as np
import orjson

from backend.predictions.window_layout import ParsedWindow, encode, merge, parse


def _window(rng: np.random.Generator, rows: int) -> ParsedWindow:
    window = ParsedWindow(rows)
    for index in range(5):
        bins = np.unique(rng.integers(0, 2002, 300)).astype(np.int64)
        counts = rng.integers(1, 50, bins.size).astype(np.float64)
        sums = rng.normal(0, 100, bins.size)
        window.numerical[f"x{index}"] = (bins, counts, sums, int(counts.sum()), index)
    window.numerical["empty"] = (np.zeros(0, np.int64), np.zeros(0), np.zeros(0), 0, rows)
    window.categorical["c"] = ({"a": 3, "b": 4}, 7, 1)
    return window


def _assert_equal(got: ParsedWindow, want: ParsedWindow) -> None:
    assert got.rows == want.rows
    assert got.categorical == want.categorical
    assert list(got.numerical) == list(want.numerical)
    for name, (bins, counts, sums, n, missing) in want.numerical.items():
        got_bins, got_counts, got_sums, got_n, got_missing = got.numerical[name]
        np.testing.assert_array_equal(got_bins, bins, err_msg=name)
        np.testing.assert_array_equal(got_counts, counts, err_msg=name)
        np.testing.assert_array_equal(got_sums, sums, err_msg=name)  # every bit kept
        assert (got_n, got_missing) == (n, missing), name


def _per_feature_layout(window: ParsedWindow) -> str:
    """The layout written before every numerical feature shared one packed block."""

    def packed(array: np.ndarray, dtype: str) -> str:
        return base64.b64encode(np.ascontiguousarray(array, dtype=dtype).tobytes()).decode()

    features: dict[str, object] = {}
    for name, (bins, counts, sums, n, missing) in window.numerical.items():
        features[name] = {
            "kind": "numerical",
            "bins": packed(bins, "<i4"),
            "counts": packed(counts.round(), "<i8"),
            "sums": packed(sums, "<f8"),
            "n": n,
            "missing": missing,
        }
    for name, (values, n, missing) in window.categorical.items():
        features[name] = {"kind": "categorical", "values": values, "n": n, "missing": missing}
    return orjson.dumps({"rows": window.rows, "features": features}).decode()


def test_a_window_reads_back_as_written() -> None:
    window = _window(np.random.default_rng(1), 4_000)
    _assert_equal(parse(encode(window)), window)
    _assert_equal(parse(encode(ParsedWindow())), ParsedWindow())


def test_counts_in_the_per_feature_layout_read_and_sum_with_new_ones() -> None:
    rng = np.random.default_rng(2)
    old, new = _window(rng, 1_000), _window(rng, 2_000)
    _assert_equal(parse(_per_feature_layout(old)), old)
    _assert_equal(merge([parse(_per_feature_layout(old)), parse(encode(new))]), merge([old, new]))
