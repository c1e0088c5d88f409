"""The label-free estimate (CBPE): within its bound on calibrated data, flagged where not.

The demo's own data and model: card transactions from ``backend/demo/data.py`` replayed
through the fraud features, the demo's logistic-regression pipeline trained on the first
weeks, calibrated on the weeks after (a labelled holdout), and judged on 10 windows of 5,000
transactions that follow. Fixed seeds throughout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

from backend.demo.data import DAY_S, DEMO_SEED, TRAINING_START, generate_transactions
from backend.demo.workspace import _preprocessor
from backend.features.fraud import FRAUD_SIGNATURE, NO_PRIOR_TXN_S, build_training_frame
from backend.monitoring.estimate import (
    MIN_WINDOW_ROWS,
    POOR_CALIBRATION_ECE,
    Calibration,
    estimate_window,
    expected_calibration_error,
    fit_calibration,
)

WINDOW_ROWS = 5_000
WINDOWS = 10
TRAIN_ROWS = 30_000
HOLDOUT_ROWS = 10_000
# ~730 transactions a day: enough days for training, holdout and the ten windows.
DAYS = 135.0


@dataclass(frozen=True)
class DemoRun:
    classes: list[int]
    holdout_probabilities: np.ndarray
    holdout_labels: np.ndarray
    window_probabilities: list[np.ndarray]
    window_labels: list[np.ndarray]


@functools.cache
def demo_run() -> DemoRun:
    events = generate_transactions(
        days=DAYS + NO_PRIOR_TXN_S / DAY_S, seed=DEMO_SEED, start=TRAINING_START - NO_PRIOR_TXN_S
    )
    frame, labels = build_training_frame(events, keep_from=TRAINING_START)
    needed = TRAIN_ROWS + HOLDOUT_ROWS + WINDOWS * WINDOW_ROWS
    assert len(frame) >= needed, f"{len(frame)} transactions generated, {needed} needed"
    model = Pipeline(
        [
            ("prepare", _preprocessor(FRAUD_SIGNATURE)),
            ("classify", LogisticRegression(max_iter=1000)),
        ]
    )
    with threadpool_limits(limits=1, user_api="blas"):
        model.fit(frame.iloc[:TRAIN_ROWS], labels.iloc[:TRAIN_ROWS])
        probabilities = model.predict_proba(frame.iloc[TRAIN_ROWS:needed])
    truth = labels.iloc[TRAIN_ROWS:needed].to_numpy()
    windows = [
        slice(HOLDOUT_ROWS + i * WINDOW_ROWS, HOLDOUT_ROWS + (i + 1) * WINDOW_ROWS)
        for i in range(WINDOWS)
    ]
    return DemoRun(
        classes=[int(c) for c in model.classes_],
        holdout_probabilities=probabilities[:HOLDOUT_ROWS],
        holdout_labels=truth[:HOLDOUT_ROWS],
        window_probabilities=[probabilities[w] for w in windows],
        window_labels=[truth[w] for w in windows],
    )


def predicted(probabilities: np.ndarray, classes: list[int]) -> list[int]:
    return [classes[i] for i in probabilities.argmax(axis=1)]


def test_estimated_accuracy_is_within_001_of_realized_on_the_demo_data() -> None:
    run = demo_run()
    calibration = fit_calibration(run.holdout_probabilities, run.holdout_labels, run.classes)
    gaps, auc_gaps = [], []
    for probabilities, truth in zip(run.window_probabilities, run.window_labels, strict=True):
        answers = predicted(probabilities, run.classes)
        estimate = estimate_window(probabilities, answers, calibration)
        assert estimate.trusted, estimate.warnings
        realized = accuracy_score(truth, answers)
        gaps.append(abs(estimate.metrics["accuracy"] - realized))  # type: ignore[operator]
        realized_auc = roc_auc_score(truth, probabilities[:, 1])
        auc_gaps.append(abs(estimate.metrics["roc_auc"] - realized_auc))  # type: ignore[operator]
    print(
        f"calibration {calibration.method}: ECE {calibration.ece_before:.4f} -> "
        f"{calibration.ece_after}, by chance {calibration.ece_by_chance:.4f} "
        f"({calibration.note}); accuracy gap max {max(gaps):.4f} mean "
        f"{np.mean(gaps):.4f}; ROC AUC gap max {max(auc_gaps):.4f} mean {np.mean(auc_gaps):.4f}"
    )
    assert max(gaps) <= 0.01, gaps
    # ROC AUC over ~125 frauds a window moves by a few hundredths by chance alone.
    assert max(auc_gaps) <= 0.05, auc_gaps


def test_calibration_is_kept_only_where_it_lowers_the_error() -> None:
    run = demo_run()
    plain = fit_calibration(run.holdout_probabilities, run.holdout_labels, run.classes)
    # Squashed towards 0.5: badly calibrated, but in the same order, so isotonic repairs it.
    squashed = 0.5 + (run.holdout_probabilities - 0.5) * 0.2
    repaired = fit_calibration(squashed, run.holdout_labels, run.classes)
    assert repaired.method == "isotonic"
    assert repaired.ece_before is not None and repaired.ece_before > 0.3
    assert repaired.ece_after is not None and repaired.ece_after < POOR_CALIBRATION_ECE
    assert repaired.ece_by_chance is not None and repaired.ece_before > repaired.ece_by_chance
    # The model's own probabilities: calibrated only where beyond chance and where it helps.
    assert plain.ece_before is not None and plain.ece_by_chance is not None
    if plain.method == "isotonic":
        assert plain.ece_before > plain.ece_by_chance
        assert plain.ece_after is not None and plain.ece_after < plain.ece_before
    elif plain.ece_after is None:
        assert plain.ece_before <= plain.ece_by_chance and "as well calibrated" in plain.note
    else:
        assert plain.ece_after >= plain.ece_before and "did not lower" in plain.note
    # Repaired, the squashed model's estimate keeps to the bound as well.
    window = 0.5 + (run.window_probabilities[0] - 0.5) * 0.2
    answers = predicted(run.window_probabilities[0], run.classes)
    estimate = estimate_window(window, answers, repaired)
    realized = accuracy_score(run.window_labels[0], answers)
    assert abs(estimate.metrics["accuracy"] - realized) <= 0.01  # type: ignore[operator]
    assert estimate.trusted, estimate.warnings


def test_badly_calibrated_probabilities_that_cannot_be_repaired_are_flagged() -> None:
    run = demo_run()
    # Over-confident and squashed probabilities with too few labelled examples to correct
    # them: the estimate says it cannot be trusted, and names the limit.
    rng = np.random.default_rng(5)
    few = rng.choice(HOLDOUT_ROWS, size=60, replace=False)
    for distort in (
        lambda p: 0.5 + (p - 0.5) * 0.2,
        lambda p: np.column_stack([1 - p[:, 1] ** 0.2, p[:, 1] ** 0.2]),
    ):
        calibration = fit_calibration(
            distort(run.holdout_probabilities[few]), run.holdout_labels[few], run.classes
        )
        assert calibration.method == "none" and "too few" in calibration.note
        probabilities = distort(run.window_probabilities[0])
        estimate = estimate_window(
            probabilities, predicted(probabilities, run.classes), calibration
        )
        assert not estimate.trusted
        assert any(str(POOR_CALIBRATION_ECE) in w and "off by" in w for w in estimate.warnings)

    # Confidence that does not follow the outcome in order (a model wrong where it is most
    # sure): isotonic calibration cannot repair it, and the estimate says so.
    scores = rng.random(4_000)
    rate = np.where((scores < 0.3) | (scores >= 0.7), 0.9, 0.1)
    outcomes = (rng.random(4_000) < rate).astype(int)
    probabilities = np.column_stack([1 - scores, scores])
    calibration = fit_calibration(probabilities[:2_000], outcomes[:2_000], [0, 1])
    assert calibration.final_ece is not None and calibration.final_ece > POOR_CALIBRATION_ECE
    estimate = estimate_window(
        probabilities[2_000:], predicted(probabilities[2_000:], [0, 1]), calibration
    )
    assert not estimate.trusted
    assert any("off by" in w for w in estimate.warnings)


def test_an_enriched_reference_like_the_demos_confidence_set_is_flagged() -> None:
    run = demo_run()
    # As the demo's confidence set: 60 frauds among 400, far above the real rate.
    rng = np.random.default_rng(11)
    fraud = rng.choice(np.flatnonzero(run.holdout_labels == 1), size=60, replace=False)
    legit = rng.choice(np.flatnonzero(run.holdout_labels == 0), size=340, replace=False)
    chosen = np.concatenate([fraud, legit])
    calibration = fit_calibration(
        run.holdout_probabilities[chosen], run.holdout_labels[chosen], run.classes
    )
    assert calibration.method == "isotonic"  # the enriched set makes them look too low
    gaps, unadjusted = [], []
    for probabilities, truth in zip(run.window_probabilities, run.window_labels, strict=True):
        answers = predicted(probabilities, run.classes)
        estimate = estimate_window(probabilities, answers, calibration)
        assert not estimate.trusted
        assert any("does not look like this traffic" in w for w in estimate.warnings)
        assert any("adjusted to the class mix" in w for w in estimate.warnings)
        realized = accuracy_score(truth, answers)
        gaps.append(abs(estimate.metrics["accuracy"] - realized))  # type: ignore[operator]
        naive = calibration.apply(probabilities)[np.arange(len(answers)), probabilities.argmax(1)]
        unadjusted.append(abs(float(naive.mean()) - realized))
    print(f"enriched reference: accuracy gap {np.mean(unadjusted):.4f} -> {np.mean(gaps):.4f}")
    # Adjusted to each window's class mix, the bias shrinks (it stays flagged: the adjustment
    # is right for a reference sampled by class, not for traffic that drifted).
    assert np.mean(gaps) < np.mean(unadjusted) / 2


def test_a_small_window_is_flagged() -> None:
    run = demo_run()
    calibration = fit_calibration(run.holdout_probabilities, run.holdout_labels, run.classes)
    probabilities = run.window_probabilities[0][:120]
    estimate = estimate_window(probabilities, predicted(probabilities, run.classes), calibration)
    assert estimate.metrics["accuracy"] is not None
    assert not estimate.trusted
    assert any("Only 120 predictions" in w and str(MIN_WINDOW_ROWS) in w for w in estimate.warnings)


def calibrated_sample(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and outcomes drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    probabilities = rng.dirichlet(np.full(classes, 0.6), size=n)
    cumulative = probabilities.cumsum(axis=1)
    outcomes = (rng.random((n, 1)) > cumulative).sum(axis=1)
    return probabilities, np.minimum(outcomes, classes - 1)


def test_multiclass_is_estimated_one_vs_rest_as_the_realized_metrics_are() -> None:
    classes = ["bus", "car", "train"]
    reference, reference_truth = calibrated_sample(3_000, 3, seed=1)
    window, window_truth = calibrated_sample(5_000, 3, seed=2)
    calibration = fit_calibration(reference, [classes[i] for i in reference_truth], classes)
    answers = predicted(window, list(range(3)))
    named = [classes[i] for i in answers]
    truth = [classes[i] for i in window_truth]
    estimate = estimate_window(window, named, calibration)
    assert estimate.trusted, estimate.warnings
    realized = {
        "accuracy": accuracy_score(truth, named),
        "precision": precision_score(truth, named, average="macro"),
        "recall": recall_score(truth, named, average="macro"),
        "f1": f1_score(truth, named, average="macro"),
        "roc_auc": roc_auc_score(truth, window, multi_class="ovr", labels=classes),
    }
    for metric, value in realized.items():
        assert abs(estimate.metrics[metric] - value) <= 0.02, (metric, estimate.metrics, value)  # type: ignore[operator]


def test_binary_precision_recall_f1_and_auc_follow_the_realized_ones() -> None:
    probabilities, truth = calibrated_sample(20_000, 2, seed=3)
    calibration = fit_calibration(probabilities[:5_000], truth[:5_000], [0, 1])
    window, window_truth = probabilities[5_000:], truth[5_000:]
    answers = predicted(window, [0, 1])
    estimate = estimate_window(window, answers, calibration)
    realized = {
        "accuracy": accuracy_score(window_truth, answers),
        "precision": precision_score(window_truth, answers),
        "recall": recall_score(window_truth, answers),
        "f1": f1_score(window_truth, answers),
        "roc_auc": roc_auc_score(window_truth, window[:, 1]),
        "balanced_accuracy": balanced_accuracy_score(window_truth, answers),
    }
    for metric, value in realized.items():
        assert abs(estimate.metrics[metric] - value) <= 0.01, (metric, estimate.metrics, value)  # type: ignore[operator]


def test_the_calibration_error_is_scikit_learns_calibration_curve_weighted_by_bin() -> None:
    rng = np.random.default_rng(9)
    probabilities = rng.beta(0.5, 3.0, size=1_000)
    outcomes = (rng.random(1_000) < probabilities**0.7).astype(int)
    truth_rate, mean_probability = calibration_curve(
        outcomes, probabilities, n_bins=10, strategy="quantile"
    )
    # Equal-count bins: every bin weighs the same.
    expected = float(np.mean(np.abs(truth_rate - mean_probability)))
    assert expected_calibration_error(probabilities, outcomes) == pytest.approx(expected, abs=1e-12)


def test_without_a_usable_reference_nothing_is_trusted() -> None:
    probabilities, _ = calibrated_sample(500, 2, seed=4)
    unknown = fit_calibration(probabilities[:200], ["yes"] * 200, [0, 1])
    assert isinstance(unknown, Calibration) and not unknown.usable
    estimate = estimate_window(probabilities, predicted(probabilities, [0, 1]), unknown)
    assert not estimate.trusted and "cannot be trusted" in estimate.warnings[0]
