"""Drift statistics from summaries, against scipy's exact computation on the same raw values;
the summaries' JSON (the log writer's sparse windows included); the decision rule."""

from __future__ import annotations

import bisect
import json
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from backend.monitoring.drift import statistics
from backend.monitoring.drift.build import summarize_current, summarize_reference
from backend.monitoring.drift.report import drift_report
from backend.monitoring.drift.summaries import (
    CategoricalReference,
    CurrentSummary,
    NumericalReference,
    NumericalWindow,
    ReferenceSummary,
    merge_windows,
)
from backend.predictions.summary_layout import category_text, numeric_value
from backend.schemas import DriftSettings, FeatureDriftSettings

TOLERANCE = 0.001


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# name -> (reference, current, whether binning keeps the KS statistic exact: every distinct
# value of both samples is an edge or lies where no reference value is)
NUMERICAL_CASES: dict[str, tuple[np.ndarray, np.ndarray, bool]] = {
    "normal, undrifted": (_rng(1).normal(0, 1, 50_000), _rng(2).normal(0, 1, 5_000), False),
    "normal, mean +0.1": (_rng(3).normal(0, 1, 50_000), _rng(4).normal(0.1, 1, 5_000), False),
    "lognormal, undrifted": (
        _rng(5).lognormal(3, 1, 200_000),
        _rng(6).lognormal(3, 1, 20_000),
        False,
    ),
    "lognormal, scale x1.03": (
        _rng(7).lognormal(3, 1, 200_000),
        _rng(8).lognormal(3, 1, 200_000) * 1.03,
        False,
    ),
    "discrete ints": (
        _rng(9).poisson(20, 50_000).astype(float),
        _rng(10).poisson(20, 5_000).astype(float),
        True,
    ),
    "discrete ints, drifted": (
        _rng(11).poisson(20, 50_000).astype(float),
        _rng(12).poisson(21, 5_000).astype(float),
        True,
    ),
    "heavy ties": (
        np.where(_rng(13).random(50_000) < 0.7, 0.0, np.round(_rng(14).uniform(0, 1, 50_000), 1)),
        np.where(_rng(15).random(8_000) < 0.7, 0.0, np.round(_rng(16).uniform(0, 1, 8_000), 1)),
        True,
    ),
    "current outside the reference range": (
        _rng(17).normal(0, 1, 50_000),
        _rng(18).normal(3, 2, 5_000),
        False,
    ),
    "small samples (exact p-value)": (
        _rng(19).normal(0, 1, 800),
        _rng(20).normal(0.1, 1, 300),
        True,
    ),
}


def _summaries(reference: Any, current: Any) -> tuple[ReferenceSummary, CurrentSummary]:
    ref, _skipped = summarize_reference(pd.DataFrame({"x": reference}))
    return ref, summarize_current(pd.DataFrame({"x": current}), ref)


def _numerical(reference: np.ndarray, current: np.ndarray) -> dict[str, float]:
    ref, cur = _summaries(reference, current)
    feature = ref.features["x"]
    window = cur.features["x"]
    assert isinstance(feature, NumericalReference) and isinstance(window, NumericalWindow)
    counts, sums = window.dense(feature.edges.size + 1)
    ks = statistics.ks_statistic(feature.counts, counts)
    return {
        "ks": ks,
        "p": statistics.ks_p_value(ks, feature.n, window.n),
        "wasserstein": statistics.wasserstein(
            feature.edges, feature.counts, feature.sums, counts, sums
        )
        / feature.std,
        "psi": statistics.psi(feature.counts, counts),
    }


def _exact_psi(reference: np.ndarray, current: np.ndarray) -> float:
    """PSI on the raw values: ten groups cut at the reference's deciles (inverted CDF, ties
    merged), a value in the group of the first cut at or above it, empty groups at 1e-4."""
    cuts = np.unique(np.quantile(reference, np.arange(1, 10) / 10, method="inverted_cdf"))
    groups = cuts.size + 1
    ref = np.bincount(np.searchsorted(cuts, reference, side="left"), minlength=groups)
    cur = np.bincount(np.searchsorted(cuts, current, side="left"), minlength=groups)
    ref_share = np.where(ref == 0, 1e-4, ref / reference.size)
    cur_share = np.where(cur == 0, 1e-4, cur / current.size)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


@pytest.mark.parametrize("case", list(NUMERICAL_CASES))
def test_numerical_statistics_match_scipy_on_the_raw_values(case: str) -> None:
    reference, current, ks_exact = NUMERICAL_CASES[case]
    ours = _numerical(reference, current)
    exact = stats.ks_2samp(reference, current)
    assert ours["ks"] == pytest.approx(exact.statistic, abs=TOLERANCE)
    wasserstein = stats.wasserstein_distance(reference, current) / np.std(reference)
    assert ours["wasserstein"] == pytest.approx(wasserstein, abs=TOLERANCE)
    # Below 2,000 reference values a decile lies between two of them, where fine edges do not
    # sit on the values: a current value in that gap may fall on either side of the cut, which
    # is as much a decile as the other (0.003 here, on 300 values). From 2,000 on, fine edges.
    psi_tolerance = TOLERANCE if reference.size >= 2_000 else 0.005
    assert ours["psi"] == pytest.approx(_exact_psi(reference, current), abs=psi_tolerance)
    # The p-value is scipy's own function of the statistic and the sizes: where binning keeps
    # the statistic exact, or where the p-value is small enough to decide, it matches.
    if ks_exact or exact.pvalue < 0.01:
        assert ours["p"] == pytest.approx(exact.pvalue, abs=TOLERANCE)
    else:
        # On continuous data the binned statistic is short of the exact one by at most one fine
        # bin (1/2000 of the reference); a mid-range p-value moves with it, by up to a few
        # hundredths at these sizes (0.013 measured here). Fed the exact statistic, it matches.
        assert ours["p"] == pytest.approx(exact.pvalue, abs=0.03)
        n, m = reference.size, current.size
        assert statistics.ks_p_value(exact.statistic, n, m) == pytest.approx(
            exact.pvalue, abs=TOLERANCE
        )


@pytest.mark.parametrize(
    ("n", "m", "statistic"),
    [(500, 300, 0.09), (5_000, 5_000, 0.02), (1_000_000, 10_000, 0.012), (1_000_000, 10_000, 0.03),
     (200_000, 40_000, 0.006), (1_000_000, 1_000_000, 0.0013), (1_000_000, 1_000_000, 0.0125)],
)  # fmt: skip
def test_ks_p_value_is_what_ks_2samp_computes(n: int, m: int, statistic: float) -> None:
    # ks_2samp's asymptotic branch, written out: kstwo at the rounded effective size.
    effective = round(max(n, m) * min(n, m) / (n + m))
    if max(n, m) > 10_000:
        expected = float(stats.kstwo.sf(statistic, effective))
    else:
        # Exact: two samples whose ECDFs differ by exactly the statistic at one point.
        expected = float(stats.ks_2samp(np.arange(n), np.arange(m) + statistic * n).pvalue)
        statistic = stats.ks_2samp(np.arange(n), np.arange(m) + statistic * n).statistic
    assert statistics.ks_p_value(statistic, n, m) == pytest.approx(expected, abs=TOLERANCE)


def _categorical(reference: list[Any], current: list[Any]) -> tuple[dict[str, float], list[str]]:
    ref, cur = _summaries(reference, current)
    feature, window = ref.features["x"], cur.features["x"]
    table = statistics.category_table(feature, window)  # type: ignore[arg-type]
    chi2, p = statistics.chi_square(table)
    return {"chi2": chi2, "p": p, "js": statistics.jensen_shannon(table)}, table.labels


def _exact_categorical(reference: list[Any], current: list[Any]) -> dict[str, float]:
    ref = pd.Series(reference).dropna().value_counts()
    cur = pd.Series(current).dropna().value_counts()
    labels = sorted(set(ref.index) | set(cur.index), key=str)
    ref_counts = np.array([ref.get(k, 0) for k in labels], dtype=float)
    cur_counts = np.array([cur.get(k, 0) for k in labels], dtype=float)
    result = stats.chi2_contingency(np.vstack([ref_counts, cur_counts]), correction=False)
    return {
        "chi2": float(result.statistic),
        "p": float(result.pvalue),
        "js": float(distance.jensenshannon(ref_counts, cur_counts, base=2)),
    }


CATEGORICAL_CASES: dict[str, tuple[list[Any], list[Any]]] = {
    "undrifted": (
        list(_rng(30).choice(["a", "b", "c", "d"], 20_000, p=[0.4, 0.3, 0.2, 0.1])),
        list(_rng(31).choice(["a", "b", "c", "d"], 3_000, p=[0.4, 0.3, 0.2, 0.1])),
    ),
    "mild shift": (
        list(_rng(32).choice(["a", "b", "c", "d"], 20_000, p=[0.4, 0.3, 0.2, 0.1])),
        list(_rng(33).choice(["a", "b", "c", "d"], 3_000, p=[0.33, 0.33, 0.22, 0.12])),
    ),
    "a category unseen in the reference": (
        list(_rng(34).choice(["a", "b", "c"], 20_000)),
        list(_rng(35).choice(["a", "b", "c", "new"], 3_000)),
    ),
    "booleans with missing values": (
        [True, False, None] * 3_000 + [True] * 500,
        [True, False, None] * 800 + [False] * 300,
    ),
    "classifier outputs (numbers with few values)": (
        list(_rng(36).choice([0, 1, 2], 10_000, p=[0.7, 0.2, 0.1])),
        list(_rng(37).choice([0, 1, 2], 2_000, p=[0.6, 0.25, 0.15])),
    ),
}


@pytest.mark.parametrize("case", list(CATEGORICAL_CASES))
def test_categorical_statistics_match_scipy_on_the_raw_values(case: str) -> None:
    reference, current = CATEGORICAL_CASES[case]
    ours, _labels = _categorical(reference, current)
    exact = _exact_categorical(reference, current)
    for key in ("chi2", "p", "js"):
        assert ours[key] == pytest.approx(exact[key], abs=TOLERANCE), key


def test_a_reference_that_kept_its_top_categories_pools_unseen_values_in_other() -> None:
    reference = [f"v{i}" for i in range(1_200) for _ in range(3)] + ["top"] * 5_000
    # Ties are ranked by their text: v0..v8xx are kept, v9xx (and the last v8xx) left out.
    current = ["top"] * 100 + ["v5"] * 3 + ["v999"] * 2 + ["brand-new"] * 4
    ref, cur = _summaries(reference, current)
    feature = ref.features["x"]
    assert isinstance(feature, CategoricalReference)
    assert len(feature.categories) == 1_000 and feature.other == 3 * 201
    table = statistics.category_table(feature, cur.features["x"])  # type: ignore[arg-type]
    other = table.labels.index("(other)")
    # v999 is one of the values the reference left out: counted with them, as is the new value
    # (which the reference cannot tell apart from them).
    assert "v999" not in feature.categories and "v5" in feature.categories
    assert table.current[other] == 2 + 4 and table.new_categories == 2
    assert table.current[table.labels.index("v5")] == 3


def test_reference_json_round_trip_and_layout() -> None:
    rng = _rng(40)
    frame = pd.DataFrame(
        {
            "amount": np.append(rng.lognormal(3, 1, 9_990), [np.nan] * 10),
            "country": rng.choice(["DE", "FR", None], 10_000),
            "flag": rng.random(10_000) < 0.3,
            "level": rng.integers(0, 4, 10_000),  # at most 5 values: a category
        }
    )
    ref, skipped = summarize_reference(frame)
    assert not skipped
    data = json.loads(json.dumps(ref.to_json()))
    amount = data["features"]["amount"]
    assert amount["kind"] == "numerical" and amount["missing"] == 10 and amount["n"] == 9_990
    assert len(amount["counts"]) == len(amount["sums"]) == len(amount["edges"]) + 1
    assert len(amount["edges"]) == 2001 and amount["edges"] == sorted(set(amount["edges"]))
    assert amount["edges"][0] == amount["min"] and amount["edges"][-1] == amount["max"]
    assert amount["std"] == pytest.approx(float(np.nanstd(frame["amount"])))
    assert data["features"]["level"]["kind"] == "categorical"
    assert set(data["features"]["level"]["categories"]) == {"0", "1", "2", "3"}
    assert set(data["features"]["flag"]["categories"]) == {"true", "false"}
    assert data["features"]["country"]["missing"] == int(frame["country"].isna().sum())
    again = ReferenceSummary.from_json(data)
    assert json.loads(json.dumps(again.to_json())) == data


def test_a_window_counted_in_pure_python_as_the_log_writer_does_reads_back_the_same() -> None:
    rng = _rng(41)
    reference = pd.DataFrame({"x": rng.normal(0, 1, 20_000), "c": rng.choice(["a", "b"], 20_000)})
    current = pd.DataFrame({"x": rng.normal(0.2, 1.5, 3_000), "c": rng.choice(["a", "b"], 3_000)})
    current.loc[::100, "x"] = np.nan
    ref, _ = summarize_reference(reference)
    edges = ref.to_json()["features"]["x"]["edges"]
    # The log writer's way: the shared layout's functions and bisect, standard library only.
    counts: dict[str, int] = {}
    sums: dict[str, float] = {}
    missing = 0
    for raw in current["x"].tolist():
        value = numeric_value(raw)
        if value is None:
            missing += 1
            continue
        key = str(bisect.bisect_left(edges, value))
        counts[key] = counts.get(key, 0) + 1
        sums[key] = sums.get(key, 0.0) + value
    values: dict[str, int] = {}
    for raw in current["c"].tolist():
        text = category_text(raw)
        assert text is not None
        values[text] = values.get(text, 0) + 1
    sparse = {
        "rows": len(current),
        "features": {
            "x": {"kind": "numerical", "counts": counts, "sums": sums, "n": sum(counts.values()),
                  "missing": missing},
            "c": {"kind": "categorical", "values": values, "n": len(current), "missing": 0},
        },
    }  # fmt: skip
    from_writer = CurrentSummary.from_json(json.loads(json.dumps(sparse)))
    from_numpy = summarize_current(current, ref)
    ours = from_numpy.features["x"]
    theirs = from_writer.features["x"]
    assert isinstance(ours, NumericalWindow) and isinstance(theirs, NumericalWindow)
    bins = len(edges) + 1
    assert np.array_equal(ours.dense(bins)[0], theirs.dense(bins)[0])
    assert np.allclose(ours.dense(bins)[1], theirs.dense(bins)[1])
    assert (ours.n, ours.missing) == (theirs.n, theirs.missing) == (2_970, 30)
    assert from_numpy.features["c"] == from_writer.features["c"]
    report_numpy = drift_report(ref, from_numpy)
    report_writer = drift_report(ref, from_writer)
    assert [f.statistic for f in report_numpy.features] == pytest.approx(
        [f.statistic for f in report_writer.features]
    )
    # And the sparse JSON it writes itself reads back to the same window.
    assert CurrentSummary.from_json(from_numpy.to_json()).to_json() == from_numpy.to_json()


def test_windows_add_up_to_the_summary_of_their_rows() -> None:
    rng = _rng(42)
    reference = pd.DataFrame({"x": rng.gamma(2, 3, 30_000), "c": rng.choice(list("abc"), 30_000)})
    current = pd.DataFrame({"x": rng.gamma(2, 3.3, 9_000), "c": rng.choice(list("abcd"), 9_000)})
    ref, _ = summarize_reference(reference)
    parts = [summarize_current(current.iloc[i : i + 3_000], ref) for i in (0, 3_000, 6_000)]
    merged = merge_windows(*parts)
    whole = summarize_current(current, ref)
    assert merged.rows == whole.rows == 9_000
    merged_report, whole_report = drift_report(ref, merged), drift_report(ref, whole)
    for a, b in zip(merged_report.features, whole_report.features, strict=True):
        assert (a.name, a.drifted, a.n_current) == (b.name, b.drifted, b.n_current)
        assert a.scores == pytest.approx(b.scores, abs=1e-9)


def _frame(seed: int, rows: int, shift: float = 0.0, scale: float = 1.0) -> pd.DataFrame:
    rng = _rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, rows) * scale,
            "balance": rng.normal(2_000, 500, rows) + shift * 500,
            "channel": rng.choice(["web", "app", "pos"], rows, p=[0.5, 0.3, 0.2]),
        }
    )


def test_large_samples_are_decided_by_effect_size_and_find_a_3_percent_lognormal_shift() -> None:
    ref, _ = summarize_reference(_frame(50, 300_000))
    drifted = drift_report(ref, summarize_current(_frame(51, 300_000, scale=1.03), ref))
    amount = next(f for f in drifted.features if f.name == "amount")
    assert amount.drifted and amount.decided_by == "effect_size" and amount.test == "ks"
    # Evidently's default (Wasserstein 0.1 standard deviations) would not have seen it.
    assert amount.scores["wasserstein_normalized"] < 0.1
    assert "larger than in training" in amount.explanation
    assert [f.name for f in drifted.features if f.drifted] == ["amount"]
    assert not drifted.dataset_drift and drifted.drifted_share == pytest.approx(1 / 3)
    assert drifted.correction.startswith("Bonferroni: 3 tests")
    same = drift_report(ref, summarize_current(_frame(52, 300_000), ref))
    assert not any(f.drifted for f in same.features)
    assert same.summary.startswith("None of 3 features changed")


def test_small_samples_are_decided_by_p_value_at_the_corrected_level() -> None:
    ref, _ = summarize_reference(_frame(53, 50_000))
    report = drift_report(ref, summarize_current(_frame(54, 400, shift=1.0), ref))
    balance = next(f for f in report.features if f.name == "balance")
    assert balance.decided_by == "p_value" and balance.drifted
    assert balance.alpha == pytest.approx(0.01 / 3) and balance.threshold == balance.alpha
    assert balance.p_value is not None and balance.p_value < balance.alpha
    channel = next(f for f in report.features if f.name == "channel")
    assert channel.test == "chi_square" and not channel.drifted


def test_dataset_drift_share_and_per_feature_settings() -> None:
    ref, _ = summarize_reference(_frame(55, 100_000))
    current = _frame(56, 100_000, shift=0.5, scale=1.2)
    report = drift_report(ref, summarize_current(current, ref))
    assert report.drifted_features == 2 and report.dataset_drift  # 2 of 3 >= 0.5
    settings = DriftSettings(
        dataset_share=0.9,
        features={
            "amount": FeatureDriftSettings(ks_threshold=0.5, wasserstein_threshold=5),
            "channel": FeatureDriftSettings(ignore=True),
        },
    )
    relaxed = drift_report(ref, summarize_current(current, ref), settings, include_histograms=True)
    assert [f.name for f in relaxed.features] == ["amount", "balance"]
    assert [s.name for s in relaxed.skipped] == ["channel"]
    amount = relaxed.features[0]
    assert not amount.drifted and amount.threshold == 0.5
    assert relaxed.drifted_features == 1 and not relaxed.dataset_drift
    bars = relaxed.features[1].histogram
    assert bars is not None and 10 <= len(bars) <= 32
    assert sum(b.reference for b in bars) == pytest.approx(1.0)
    assert sum(b.current for b in bars) == pytest.approx(1.0)
    # Settings are JSON-able, to be stored per model.
    assert DriftSettings.model_validate_json(settings.model_dump_json()) == settings


def test_undrifted_windows_of_10000_rows_are_rarely_flagged() -> None:
    ref, _ = summarize_reference(_frame(57, 200_000))
    flagged = 0
    for seed in range(20):
        report = drift_report(ref, summarize_current(_frame(100 + seed, 10_000), ref))
        flagged += sum(f.drifted for f in report.features)
        assert all(math.isfinite(f.statistic) for f in report.features)
    assert flagged <= 1  # of 60 (feature, window) pairs; the bench counts 1,500


def test_model_outputs_are_reported_apart_and_not_counted_in_the_dataset_verdict() -> None:
    rng = _rng(60)
    reference = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 20_000),
            "prediction": rng.choice([0, 1], 20_000, p=[0.9, 0.1]),
            "confidence": rng.beta(8, 2, 20_000),
        }
    )
    current = pd.DataFrame(
        {
            "x": rng.normal(0, 1, 20_000),
            "prediction": rng.choice([0, 1], 20_000, p=[0.7, 0.3]),
            "confidence": rng.beta(4, 2, 20_000),
        }
    )
    ref, _ = summarize_reference(reference)
    report = drift_report(ref, summarize_current(current, ref))
    assert [f.name for f in report.features] == ["x"]
    assert {f.name: f.kind for f in report.predictions} == {
        "prediction": "categorical",
        "confidence": "numerical",
    }
    assert all(f.drifted for f in report.predictions)
    assert report.tested_features == 1 and not report.dataset_drift
    # Not "nothing to do": the answers moved on inputs that did not.
    assert "Nothing to do" not in report.summary
    assert "but the model's outputs did (prediction, confidence)" in report.summary
    # Unchanged outputs too: then there is nothing to do.
    same = drift_report(ref, summarize_current(reference.sample(5_000, random_state=1), ref))
    assert same.summary == "The one feature did not change. Nothing to do."
