"""Drift statistics from binned counts alone, each the counterpart of a scipy computation on the
raw values (tested against it within 0.001).

Numerical features are compared over the reference's fine bins (bin j holds (edges[j-1],
edges[j]]); both CDFs are exact at every edge, so the KS statistic is exact there and off by at
most one fine bin's reference share (1/2000) between edges. Categorical features are compared
over one table of categories (``category_table``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from scipy.spatial import distance

from backend.monitoring.drift.summaries import CategoricalReference, CategoricalWindow
from backend.predictions.summary_layout import OTHER

# ks_2samp's own rule: exact p-values up to this many values in the larger sample.
KS_EXACT_MAX_N = 10_000
KS_TAIL = 1e-4
KS_LIMITING_ABOVE = 30_000
PSI_GROUPS = 10
# An empty PSI group counts as this share (Evidently's floor), so the logarithm stays finite.
PSI_FLOOR = 1e-4

try:  # scipy's exact two-sample KS distribution has no public entry point but ks_2samp itself
    from scipy.stats._stats_py import _attempt_exact_2kssamp
except ImportError:  # pragma: no cover - a scipy without it falls back to the asymptotic form
    _attempt_exact_2kssamp = None


def ks_statistic(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """The largest gap between the two CDFs, at the reference's edges."""
    n = reference_counts.sum()
    m = current_counts.sum()
    if n == 0 or m == 0:
        return 0.0
    gaps = np.cumsum(reference_counts) / n - np.cumsum(current_counts) / m
    return float(np.abs(gaps).max())


def ks_p_value(statistic: float, n: int, m: int, exact_max_n: int = KS_EXACT_MAX_N) -> float:
    """The two-sided p-value ``scipy.stats.ks_2samp`` gives for this statistic and these sizes
    (method "auto"): exact up to 10,000 values, else ``kstwo.sf(d, round(n m / (n + m)))``.

    ``kstwo.sf`` takes up to half a second in its far tail for large sizes (measured: 0.39 s
    at d = 0.0125, n = 500,000), so there, and for effective sizes above 30,000, the limiting
    Kolmogorov distribution with Stephens' small-sample correction answers instead: it is
    within 0.0008 of kstwo.sf above 30,000 and within 2e-6 wherever it is below 1e-4
    (measured against kstwo.sf over sizes 500 to 500,000).

    ``exact_max_n`` lowers the exact method's reach: it costs ~n·m (17 ms per feature at
    1,500 x 8,000), too much for a live window's report that must answer in tens of ms; the
    asymptotic answer there is what ks_2samp(method="asymp") gives."""
    if n == 0 or m == 0:
        return 1.0
    if max(n, m) <= exact_max_n and _attempt_exact_2kssamp is not None:
        success, _d, p = _attempt_exact_2kssamp(n, m, math.gcd(n, m), statistic, "two-sided")
        if success:
            return float(np.clip(p, 0.0, 1.0))
    larger, smaller = max(n, m), min(n, m)
    effective = round(larger * smaller / (larger + smaller))
    root = math.sqrt(effective)
    limiting = float(stats.kstwobign.sf(statistic * (root + 0.12 + 0.11 / root)))
    if limiting < KS_TAIL or effective > KS_LIMITING_ABOVE:
        return float(np.clip(limiting, 0.0, 1.0))
    return float(np.clip(stats.kstwo.sf(statistic, effective), 0.0, 1.0))


def _integrals_of_cdf(
    edges: np.ndarray, counts: np.ndarray, sums: np.ndarray, total: int
) -> tuple[np.ndarray, float, float]:
    """Per interior bin (edges[j-1], edges[j]] the integral of the sample's CDF over it, exact
    from the counts and per-bin sums: (C_{j-1} (b - a) + c_j b - s_j) / n. Also the integral of
    F below edges[0] and of 1 - F above edges[-1], exact the same way."""
    below = np.cumsum(counts)[:-1]  # values up to each edge
    widths = np.diff(edges)
    interior = (below[:-1] * widths + counts[1:-1] * edges[1:] - sums[1:-1]) / total
    lower_tail = (counts[0] * edges[0] - sums[0]) / total
    upper_tail = (sums[-1] - counts[-1] * edges[-1]) / total
    return interior, float(lower_tail), float(upper_tail)


def wasserstein(
    edges: np.ndarray,
    reference_counts: np.ndarray,
    reference_sums: np.ndarray,
    current_counts: np.ndarray,
    current_sums: np.ndarray,
) -> float:
    """Wasserstein-1 distance, the integral of |F_ref - F_cur|, as ``wasserstein_distance``.

    Within a bin the integral of each CDF is exact (from the bin's sum), so a bin where one CDF
    stays above the other is exact; the outer bins are exact too, one CDF being constant there.
    Only a bin in which the CDFs cross is under-counted, by less than its width times the gap.
    """
    n = int(reference_counts.sum())
    m = int(current_counts.sum())
    if n == 0 or m == 0:
        return 0.0
    ref_inner, ref_low, ref_high = _integrals_of_cdf(edges, reference_counts, reference_sums, n)
    cur_inner, cur_low, cur_high = _integrals_of_cdf(edges, current_counts, current_sums, m)
    return float(
        np.abs(ref_inner - cur_inner).sum() + abs(ref_low - cur_low) + abs(ref_high - cur_high)
    )


def psi(reference_counts: np.ndarray, current_counts: np.ndarray) -> float:
    """Population stability index over ten reference-decile groups of the fine bins.

    Group k ends at the first edge where the reference's cumulative count reaches k/10 of it
    (the decile by the inverted CDF; ties merge groups). Values beyond the reference's range
    fall in the outer groups. An empty group counts as a share of 1e-4 (Evidently's floor)."""
    n = int(reference_counts.sum())
    m = int(current_counts.sum())
    if n == 0 or m == 0:
        return 0.0
    cumulative = np.cumsum(reference_counts) * PSI_GROUPS
    targets = np.arange(1, PSI_GROUPS, dtype=np.int64) * n
    ends = np.unique(np.searchsorted(cumulative, targets, side="left"))
    group = np.searchsorted(ends, np.arange(reference_counts.size), side="left")
    groups = int(group.max()) + 1
    ref_share = np.bincount(group, weights=reference_counts, minlength=groups) / n
    cur_share = np.bincount(group, weights=current_counts, minlength=groups) / m
    ref_share = np.where(ref_share == 0, PSI_FLOOR, ref_share)
    cur_share = np.where(cur_share == 0, PSI_FLOOR, cur_share)
    return float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))


@dataclass
class CategoryTable:
    labels: list[str]
    reference: np.ndarray
    current: np.ndarray
    # Current values the reference never had (they count in the table, not only in "(other)").
    new_categories: int


def category_table(reference: CategoricalReference, current: CategoricalWindow) -> CategoryTable:
    """One column per category, reference against current.

    A current value the reference lacks gets its own column (reference count 0) when the
    reference kept all its categories; when it kept only its most frequent ones, such a value may
    be one of those it left out, so it is counted with them in the "(other)" column."""
    labels = list(reference.categories)
    ref = [reference.categories[label] for label in labels]
    cur = [current.values.get(label, 0) for label in labels]
    unseen = {t: c for t, c in current.values.items() if t not in reference.categories and c}
    if reference.other > 0:
        labels.append(OTHER)
        ref.append(reference.other)
        cur.append(sum(unseen.values()))
    else:
        for text, count in sorted(unseen.items()):
            labels.append(text)
            ref.append(0)
            cur.append(count)
    ref_array = np.asarray(ref, dtype=np.float64)
    cur_array = np.asarray(cur, dtype=np.float64)
    kept = (ref_array + cur_array) > 0
    return CategoryTable(
        labels=[label for label, keep in zip(labels, kept, strict=True) if keep],
        reference=ref_array[kept],
        current=cur_array[kept],
        new_categories=len(unseen),
    )


def chi_square(table: CategoryTable) -> tuple[float, float]:
    """Chi-square test of homogeneity (``scipy.stats.chi2_contingency``) of the 2 x k table.

    Homogeneity, not goodness of fit against the reference's shares: the reference is a sample
    too, and a category it never had (expected count 0) would make a goodness-of-fit statistic
    infinite. Without Yates' correction, so that two categories give the two-proportion z-test."""
    if len(table.labels) < 2 or table.reference.sum() == 0 or table.current.sum() == 0:
        return 0.0, 1.0
    result = stats.chi2_contingency(np.vstack([table.reference, table.current]), correction=False)
    return float(result.statistic), float(result.pvalue)


def jensen_shannon(table: CategoryTable) -> float:
    """Jensen-Shannon distance in base 2 (0 same, 1 disjoint), ``scipy.spatial.distance``."""
    if table.reference.sum() == 0 or table.current.sum() == 0:
        return 0.0
    value = distance.jensenshannon(table.reference, table.current, base=2)
    return float(value) if math.isfinite(value) else 0.0
