"""The drift report: every feature's test, score, threshold and verdict with a plain-words
explanation, then the dataset verdict, from a reference summary and a current one.

The decision rule (``DriftSettings`` holds every number, per feature too):
- every feature is tested at ``alpha / k`` (Bonferroni; k = the features and outputs tested in
  the report), so that a report of undrifted data flags any feature with a chance of at most
  ``alpha``;
- small samples (either side under ``large_sample`` values): drifted when the test's p-value
  (KS for numbers, chi-square for categories) is below that level;
- large samples, where every p-value test flags the tiniest difference: drifted when the
  difference is also big enough to matter: a KS statistic of at least ``ks_threshold`` or a
  Wasserstein distance of ``wasserstein_threshold`` reference standard deviations (numbers), a
  Jensen-Shannon distance of ``js_threshold`` (categories).
"""

from __future__ import annotations

import math
import sys

import numpy as np

from backend.monitoring.drift import statistics
from backend.monitoring.drift.summaries import (
    CategoricalReference,
    CategoricalWindow,
    CurrentSummary,
    FeatureReference,
    FeatureWindow,
    NumericalReference,
    NumericalWindow,
    ReferenceSummary,
)
from backend.predictions.summary_layout import CONFIDENCE, OTHER, PREDICTION
from backend.schemas.drift import (
    DecidedBy,
    DistributionBar,
    DriftReport,
    DriftSettings,
    DriftTest,
    DriftTimings,
    FeatureDrift,
    SkippedFeature,
)

OUTPUTS = (PREDICTION, CONFIDENCE)
DISPLAY_BARS = 30
WHAT_TO_DO = (
    "the model sees a world it was not trained on. Check the data source; retrain if this is real."
)


def _finite(value: float) -> float:
    """A score as JSON can carry it: values near the float limit can make a sum infinite, and
    an infinite sum a NaN; neither can be sent, and both mean "as far apart as can be"."""
    if math.isnan(value):
        return 0.0
    return max(min(value, sys.float_info.max), -sys.float_info.max)


class FeatureRule:
    """The settings that apply to one feature: its overrides over the report's defaults."""

    def __init__(
        self,
        settings: DriftSettings,
        name: str,
        tests: int,
        exact_ks_max_n: int = statistics.KS_EXACT_MAX_N,
    ):
        own = settings.features.get(name)
        self.exact_ks_max_n = exact_ks_max_n

        def pick(field: str) -> float:
            value = getattr(own, field, None) if own is not None else None
            return float(value if value is not None else getattr(settings, field))

        alpha = pick("alpha")
        self.alpha = alpha / tests if settings.correction == "bonferroni" else alpha
        self.ks_threshold = pick("ks_threshold")
        self.wasserstein_threshold = pick("wasserstein_threshold")
        self.js_threshold = pick("js_threshold")
        self.large_sample = int(pick("large_sample"))


def _share_text(share: float) -> str:
    return f"{share * 100:.1f}%" if share < 0.1 else f"{share * 100:.0f}%"


def _numerical(
    name: str, ref: NumericalReference, window: NumericalWindow, rule: FeatureRule, bars: bool
) -> FeatureDrift:
    counts, sums = window.dense(ref.edges.size + 1)
    n, m = ref.n, int(counts.sum())
    ks = statistics.ks_statistic(ref.counts, counts)
    p_value = statistics.ks_p_value(ks, n, m, rule.exact_ks_max_n)
    scale = ref.std if ref.std > 0 else (abs(ref.mean) or 1.0)  # a constant reference
    wasserstein = statistics.wasserstein(ref.edges, ref.counts, ref.sums, counts, sums) / scale
    scores = {
        "ks": ks,
        "ks_p_value": p_value,
        "wasserstein_normalized": wasserstein,
        "psi": statistics.psi(ref.counts, counts),
    }
    significant = p_value < rule.alpha
    test: DriftTest = "ks"
    decided_by: DecidedBy = "p_value"
    statistic, threshold = ks, rule.ks_threshold
    if m == 0 or n == 0:
        drifted, threshold = False, rule.alpha
    elif min(n, m) < rule.large_sample:
        drifted, threshold = significant, rule.alpha
    else:
        decided_by = "effect_size"
        by_ks = ks >= rule.ks_threshold
        by_wasserstein = wasserstein >= rule.wasserstein_threshold
        if by_wasserstein and not by_ks:
            test, statistic, threshold = "wasserstein", wasserstein, rule.wasserstein_threshold
        drifted = significant and (by_ks or by_wasserstein)
    current_mean = float(sums.sum() / m) if m else None
    return FeatureDrift(
        name=name,
        kind="numerical",
        test=test,
        statistic=_finite(statistic),
        p_value=_finite(p_value) if math.isfinite(p_value) else 1.0,
        alpha=rule.alpha,
        threshold=threshold,
        drifted=drifted,
        decided_by=decided_by,
        n_reference=n,
        n_current=m,
        missing_reference=ref.missing,
        missing_current=window.missing,
        scores={key: _finite(value) for key, value in scores.items()},
        explanation=_explain_numerical(name, ref, counts, current_mean, drifted, decided_by),
        histogram=_numerical_bars(ref, counts) if bars and m else None,
    )


def _quantile(edges: np.ndarray, counts: np.ndarray, level: float) -> float:
    """The value below which ``level`` of the values lie, read off the binned CDF."""
    cdf = np.cumsum(counts[:-1]) / max(counts.sum(), 1)
    return float(np.interp(level, cdf, edges))


def _explain_numerical(
    name: str,
    ref: NumericalReference,
    counts: np.ndarray,
    current_mean: float | None,
    drifted: bool,
    decided_by: str,
) -> str:
    if current_mean is None:
        return f"No values of {name} in this window (all missing or none sent): nothing to compare."
    if not drifted:
        if decided_by == "p_value":
            return (
                f"Values of {name} look like the training data, as far as "
                f"{int(counts.sum())} values can tell. Nothing to do."
            )
        return f"Values of {name} look like the training data. Nothing to do."
    below, above = int(counts[0]), int(counts[-1])
    m = int(counts.sum())
    outside = (below + above) / m
    ref_median = _quantile(ref.edges, ref.counts, 0.5)
    cur_median = _quantile(ref.edges, counts, 0.5)
    ref_spread = _quantile(ref.edges, ref.counts, 0.75) - _quantile(ref.edges, ref.counts, 0.25)
    cur_spread = _quantile(ref.edges, counts, 0.75) - _quantile(ref.edges, counts, 0.25)
    if outside >= 0.05:
        change = (
            f"{_share_text(outside)} of the values of {name} lie outside the range seen in "
            f"training ({ref.min:.4g} to {ref.max:.4g})"
        )
    elif ref_spread > 0 and abs(cur_spread / ref_spread - 1) > 2 * abs(
        (cur_median - ref_median) / ref_spread
    ):
        wider = "more spread out" if cur_spread > ref_spread else "more bunched together"
        change = f"Values of {name} are {wider} than in training"
    else:
        direction = "larger" if current_mean > ref.mean else "smaller"
        change = (
            f"Values of {name} are {direction} than in training (average {current_mean:.4g} "
            f"against {ref.mean:.4g})"
        )
    return f"{change}: {WHAT_TO_DO}"


def _numerical_bars(ref: NumericalReference, counts: np.ndarray) -> list[DistributionBar]:
    """About 30 bars of equal width over the reference's central 98%, the tails in the outer
    bars, each the share of reference and of current values in it (fine bins merged)."""
    low = _quantile(ref.edges, ref.counts, 0.01)
    high = _quantile(ref.edges, ref.counts, 0.99)
    cuts = np.linspace(low, high, DISPLAY_BARS + 1)[1:-1]
    # A bar ends at a fine edge: the fine bin holding each cut belongs to the bar before it.
    ends = np.unique(np.searchsorted(ref.edges, cuts, side="left"))
    group = np.searchsorted(ends, np.arange(counts.size), side="left")
    bars = int(group.max()) + 1
    ref_share = np.bincount(group, weights=ref.counts, minlength=bars) / max(ref.n, 1)
    cur_share = np.bincount(group, weights=counts, minlength=bars) / max(int(counts.sum()), 1)
    bounds = [None, *(float(ref.edges[min(e, ref.edges.size - 1)]) for e in ends), None]
    result = []
    for i in range(bars):
        lo, hi = bounds[i], bounds[i + 1]
        label = (
            f"{'-inf' if lo is None else f'{lo:.4g}'} to {'+inf' if hi is None else f'{hi:.4g}'}"
        )
        result.append(
            DistributionBar(
                label=label,
                low=lo,
                high=hi,
                reference=float(ref_share[i]),
                current=float(cur_share[i]),
            )
        )
    return result


def _categorical(
    name: str, ref: CategoricalReference, window: CategoricalWindow, rule: FeatureRule, bars: bool
) -> FeatureDrift:
    table = statistics.category_table(ref, window)
    chi2, p_value = statistics.chi_square(table)
    js = statistics.jensen_shannon(table)
    n, m = int(table.reference.sum()), int(table.current.sum())
    significant = p_value < rule.alpha
    test: DriftTest = "chi_square"
    decided_by: DecidedBy = "p_value"
    statistic, threshold = chi2, rule.alpha
    if n == 0 or m == 0:
        drifted = False
    elif min(n, m) < rule.large_sample:
        drifted = significant
    else:
        test, decided_by = "jensen_shannon", "effect_size"
        statistic, threshold = js, rule.js_threshold
        drifted = significant and js >= rule.js_threshold
    return FeatureDrift(
        name=name,
        kind="categorical",
        test=test,
        statistic=_finite(statistic),
        p_value=_finite(p_value) if math.isfinite(p_value) else 1.0,
        alpha=rule.alpha,
        threshold=threshold,
        drifted=drifted,
        decided_by=decided_by,
        n_reference=n,
        n_current=m,
        missing_reference=ref.missing,
        missing_current=window.missing,
        scores={
            "chi_square": _finite(chi2),
            "chi_square_p_value": _finite(p_value),
            "jensen_shannon": _finite(js),
            "new_categories": float(table.new_categories),
        },
        explanation=_explain_categorical(name, table, drifted, decided_by),
        histogram=_categorical_bars(table) if bars and m else None,
    )


def _explain_categorical(
    name: str, table: statistics.CategoryTable, drifted: bool, decided_by: str
) -> str:
    m = table.current.sum()
    if m == 0:
        return f"No values of {name} in this window (all missing or none sent): nothing to compare."
    if not drifted:
        if decided_by == "p_value":
            return (
                f"The mix of {name} values looks like the training data, as far as {int(m)} "
                "values can tell. Nothing to do."
            )
        return f"The mix of {name} values looks like the training data. Nothing to do."
    ref_share = table.reference / max(table.reference.sum(), 1)
    cur_share = table.current / m
    biggest = int(np.argmax(np.abs(cur_share - ref_share)))
    label = table.labels[biggest]
    shown = "values not seen in training" if label == OTHER else f"{label!r}"
    change = (
        f"{shown} make up {_share_text(cur_share[biggest])} of {name} now against "
        f"{_share_text(ref_share[biggest])} in training"
    )
    if table.new_categories:
        change += f", and {table.new_categories} value(s) never seen in training appear"
    return f"{change}: {WHAT_TO_DO}"


def _categorical_bars(table: statistics.CategoryTable) -> list[DistributionBar]:
    ref_share = table.reference / max(table.reference.sum(), 1)
    cur_share = table.current / max(table.current.sum(), 1)
    order = np.argsort(-np.maximum(ref_share, cur_share), kind="stable")
    shown, rest = order[: DISPLAY_BARS - 1], order[DISPLAY_BARS - 1 :]
    bars = [
        DistributionBar(
            label=table.labels[i], reference=float(ref_share[i]), current=float(cur_share[i])
        )
        for i in shown
    ]
    if rest.size:
        bars.append(
            DistributionBar(
                label=OTHER,
                reference=float(ref_share[rest].sum()),
                current=float(cur_share[rest].sum()),
            )
        )
    return bars


def feature_drift(
    name: str,
    reference: FeatureReference,
    window: FeatureWindow,
    rule: FeatureRule,
    histograms: bool = False,
) -> FeatureDrift:
    if isinstance(reference, NumericalReference) and isinstance(window, NumericalWindow):
        return _numerical(name, reference, window, rule, histograms)
    if isinstance(reference, CategoricalReference) and isinstance(window, CategoricalWindow):
        return _categorical(name, reference, window, rule, histograms)
    raise ValueError(f"feature {name!r} is {reference.kind} in the reference but {window.kind} now")


def drift_report(
    reference: ReferenceSummary,
    current: CurrentSummary,
    settings: DriftSettings | None = None,
    include_histograms: bool = False,
    skipped: dict[str, str] | None = None,
    timings: DriftTimings | None = None,
    exact_ks_max_n: int = statistics.KS_EXACT_MAX_N,
) -> DriftReport:
    """The report over every feature both summaries have (outputs listed apart);
    ``exact_ks_max_n``: see ``statistics.ks_p_value``."""
    settings = settings or DriftSettings()
    left_out = dict(skipped or {})
    names = []
    for name in reference.features:
        own = settings.features.get(name)
        if own is not None and own.ignore:
            left_out[name] = "ignored by the drift settings"
        elif name not in current.features:
            left_out[name] = "not in the current data"
        else:
            names.append(name)
    tests = max(len(names), 1)
    inputs: list[FeatureDrift] = []
    outputs: list[FeatureDrift] = []
    for name in names:
        entry = feature_drift(
            name,
            reference.features[name],
            current.features[name],
            FeatureRule(settings, name, tests, exact_ks_max_n),
            include_histograms,
        )
        (outputs if name in OUTPUTS else inputs).append(entry)
    drifted = sum(f.drifted for f in inputs)
    share = drifted / len(inputs) if inputs else 0.0
    dataset_drift = bool(inputs) and share >= settings.dataset_share
    correction = (
        f"Bonferroni: {tests} tests at once, each at {settings.alpha:g}/{tests} = "
        f"{settings.alpha / tests:.3g}"
        if settings.correction == "bonferroni"
        else f"none: each of {tests} tests at {settings.alpha:g}"
    )
    return DriftReport(
        features=inputs,
        predictions=outputs,
        skipped=[SkippedFeature(name=k, reason=v) for k, v in left_out.items()],
        drifted_features=drifted,
        tested_features=len(inputs),
        drifted_share=share,
        dataset_share_threshold=settings.dataset_share,
        dataset_drift=dataset_drift,
        correction=correction,
        rows_reference=reference.rows,
        rows_current=current.rows,
        summary=_summary(inputs, outputs, drifted, dataset_drift, settings.dataset_share),
        settings=settings,
        timings=timings or DriftTimings(),
    )


def _summary(
    inputs: list[FeatureDrift],
    outputs: list[FeatureDrift],
    drifted: int,
    dataset_drift: bool,
    share: float,
) -> str:
    if not inputs:
        return "No feature could be compared: the two data sets have no column in common."
    names = ", ".join(f.name for f in inputs if f.drifted)
    moved = [f.name for f in outputs if f.drifted]
    unchanged = (
        f"None of {len(inputs)} features changed"
        if len(inputs) > 1
        else "The one feature did not change"
    )
    if not drifted:
        if not moved:
            return f"{unchanged}. Nothing to do."
        # Not "nothing to do": the answers moved on inputs that, one by one, did not. Their
        # combination may have (each feature is tested alone), or the model answering is not
        # the one the reference was made with.
        return (
            f"{unchanged} on its own, but the model's outputs did "
            f"({', '.join(moved)}): it answers differently on data that looks the same. Inputs "
            "can change together without any one changing alone, or another version answered: "
            "check which version answered, and compare its answers with the labels as they "
            "come in."
        )
    if dataset_drift:
        text = (
            f"Dataset drift: {drifted} of {len(inputs)} features changed ({names}), at least "
            f"{share:.0%} of them. The model works on data unlike its training data; check the "
            "sources and plan a retraining."
        )
    else:
        text = (
            f"{drifted} of {len(inputs)} features changed ({names}); fewer than {share:.0%}, "
            "so no dataset drift. Look at those features' sources."
        )
    if moved:
        text += f" The model's outputs changed too ({', '.join(moved)})."
    return text
