"""Wire types of drift: the settings a model's drift is judged by, and the drift report.

A report says per feature which test was used, its score and threshold, whether the feature
drifted and why (decided by a p-value on small samples, by an effect size on large ones), in
plain words for someone who is not a statistician; then the verdict over the whole dataset.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backend.schemas.common import RequestBody, UtcDateTime

FeatureKind = Literal["numerical", "categorical"]
# The score in ``statistic``: the KS statistic or the Wasserstein distance (in reference standard
# deviations) for numbers, chi-square or the Jensen-Shannon distance for categories.
DriftTest = Literal["ks", "wasserstein", "chi_square", "jensen_shannon"]
# "p_value": a small sample, where an effect size is too noisy to trust, is judged by the
# test's p-value alone at the corrected level. "effect_size": a large sample, where any tiny
# difference is significant, must also differ by at least a stated amount.
DecidedBy = Literal["p_value", "effect_size"]
Correction = Literal["bonferroni", "none"]


class FeatureDriftSettings(RequestBody):
    """Per-feature overrides: any field left out takes the report's default."""

    alpha: float | None = Field(default=None, gt=0, lt=1)
    ks_threshold: float | None = Field(default=None, gt=0, le=1)
    wasserstein_threshold: float | None = Field(default=None, gt=0, le=1000)
    js_threshold: float | None = Field(default=None, gt=0, le=1)
    large_sample: int | None = Field(default=None, ge=1, le=10**12)
    # Leave this feature out of the report.
    ignore: bool = False


class DriftSettings(RequestBody):
    """How drift is judged. JSON-able: stored per model; every threshold can be set per feature.

    A feature is tested at ``alpha`` divided by the number of features tested in the report
    (Bonferroni), so that ``alpha`` bounds the chance that a report of undrifted data flags any
    feature at all. When both samples have at least ``large_sample`` values the decision is by
    effect size: a numerical feature drifts when its KS statistic reaches ``ks_threshold`` or its
    Wasserstein distance (in reference standard deviations) reaches ``wasserstein_threshold``; a
    categorical one when its Jensen-Shannon distance reaches ``js_threshold``; in both cases the
    difference must also be significant at the corrected level, so a large but noisy difference
    between few values does not count. Below ``large_sample`` the corrected p-value decides.
    """

    alpha: float = Field(default=0.01, gt=0, lt=1)
    correction: Correction = "bonferroni"
    # A KS statistic of 0.01: somewhere along the values, one percent of the data moved from
    # one side of a value to the other. It catches a 3% scale shift of a lognormal amount, which
    # a Wasserstein distance of 0.1 (Evidently's default) misses.
    ks_threshold: float = Field(default=0.01, gt=0, le=1)
    wasserstein_threshold: float = Field(default=0.1, gt=0, le=1000)
    # Evidently's 0.1 only just catches mild category shifts (0.102, 0.115 measured): half that.
    js_threshold: float = Field(default=0.05, gt=0, le=1)
    large_sample: int = Field(default=1000, ge=1, le=10**12)
    # Dataset drift: at least this share of the input features drifted (Evidently's 0.5).
    dataset_share: float = Field(default=0.5, gt=0, le=1)
    features: dict[str, FeatureDriftSettings] = Field(default_factory=dict)


class DistributionBar(BaseModel):
    """One display bin: its range (numbers) or its category, and both shares of values."""

    label: str
    low: float | None = None
    high: float | None = None
    reference: float
    current: float


class FeatureDrift(BaseModel):
    name: str
    kind: FeatureKind
    test: DriftTest
    # The score compared with the threshold: the KS statistic (or the Wasserstein distance when
    # that decided) for numbers, the Jensen-Shannon distance for categories; on small samples the
    # test's own statistic.
    statistic: float
    p_value: float | None
    # The corrected significance level every decision of this feature used.
    alpha: float
    # decided_by "effect_size": the statistic must reach it (and the p-value be below alpha);
    # decided_by "p_value": it is alpha, which the p-value must be below.
    threshold: float
    drifted: bool
    decided_by: DecidedBy
    n_reference: int
    n_current: int
    missing_reference: int
    missing_current: int
    # Every score computed, for people who want the details: ks, ks_p_value,
    # wasserstein_normalized, psi (numbers); chi_square, chi_square_p_value, jensen_shannon,
    # new_categories (categories).
    scores: dict[str, float] = Field(default_factory=dict)
    # One or two sentences for someone who is not a statistician: what it means, what to do.
    explanation: str
    histogram: list[DistributionBar] | None = None


class SkippedFeature(BaseModel):
    name: str
    reason: str


class DriftTimings(BaseModel):
    """Seconds spent, for people who wonder why a report is slow."""

    read_s: float = 0.0
    summarize_s: float = 0.0
    score_s: float = 0.0
    total_s: float = 0.0


class DriftReport(BaseModel):
    features: list[FeatureDrift]
    # The model's outputs (predicted class, a classifier's confidence), judged the same way but
    # not counted in the dataset verdict.
    predictions: list[FeatureDrift] = Field(default_factory=list)
    skipped: list[SkippedFeature] = Field(default_factory=list)
    drifted_features: int
    tested_features: int
    drifted_share: float
    dataset_share_threshold: float
    dataset_drift: bool
    # How many tests were run at once, and how the level was corrected for it.
    correction: str
    rows_reference: int
    rows_current: int
    summary: str
    settings: DriftSettings
    timings: DriftTimings = Field(default_factory=DriftTimings)


# ------------------------------------------------------------------ windows of live traffic


class WindowDrift(BaseModel):
    """Drift of one window of a model's live traffic against its version's reference."""

    model: str
    # None: every version (numbers summed over the versions that share the basis' bins).
    version: str | None
    # None: every route that answers traffic (active, canary); "shadow" names the shadow.
    route: str | None
    start: UtcDateTime
    end: UtcDateTime
    window_s: int
    rows: int
    # The version whose reference the window is compared with, and where that came from.
    reference_version: str | None
    reference_source: str | None
    # None when there is nothing to compare yet; ``note`` says why in plain words.
    report: DriftReport | None
    note: str = ""


class FeaturePoint(BaseModel):
    statistic: float
    threshold: float
    drifted: bool


class SeriesWindow(BaseModel):
    start: UtcDateTime
    end: UtcDateTime
    rows: int
    # None: too few rows to judge (fewer than the series' minimum).
    dataset_drift: bool | None
    drifted_share: float | None
    features: dict[str, FeaturePoint] = Field(default_factory=dict)
    predictions: dict[str, FeaturePoint] = Field(default_factory=dict)


class DriftSeries(BaseModel):
    """Consecutive windows, oldest first: each feature's score over time (sparklines)."""

    model: str
    version: str | None
    route: str | None
    window_s: int
    min_rows: int
    windows: list[SeriesWindow]
