"""Performance estimated before labels arrive: confidence-based estimation (NannyML's CBPE).

For a classifier whose probabilities are calibrated, the chance that an answer is right is
known without its label: p when it predicted the class whose probability is p, 1 - p for the
other classes. Summed over a window, these give the window's expected confusion matrix, and
from it accuracy, precision, recall, F1 and balanced accuracy; ROC AUC follows from the
expected labels along the model's own ranking. Multiclass is one-vs-rest, macro-averaged, as
NannyML and the realized metrics (``registry.metrics``) do.

It assumes calibrated probabilities (isotonic regression fitted on labelled reference data,
kept only where it lowers the expected calibration error measured out of fold) and no concept
drift (inputs still relate to labels as in the reference). Every result says when either is
in doubt, and when the window is too small to be steady.

Core functions take arrays (reference probabilities and labels, window probabilities and
predictions): where the reference comes from is decided by the caller.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

# Equal-count bins for the calibration error.
ECE_BINS = 10
# Above this expected calibration error (after any calibration), probabilities are off by
# more than the accuracy bound the estimate aims at being useful within: say so.
POOR_CALIBRATION_ECE = 0.05
# A window needs a few hundred predictions for the sums to be steady (NannyML's advice).
MIN_WINDOW_ROWS = 300
# Fewer labelled reference rows than this, or fewer than CALIBRATION_FOLDS of a class, and
# neither a calibration nor its out-of-fold error can be fitted reliably.
MIN_REFERENCE_ROWS = 100
CALIBRATION_FOLDS = 5
# Outcomes drawn from the reference's own probabilities, this many times: the calibration
# error a perfectly calibrated model would show on as many examples, by chance alone.
CHANCE_DRAWS = 50
CHANCE_QUANTILE = 95
# A class predicted this many times more (or less) often in a window than in the reference,
# and by at least MIN_SHARE_GAP, means the reference does not look like this traffic.
SHARE_RATIO_LIMIT = 2.0
MIN_SHARE_GAP = 0.02

ESTIMATED_METRICS = ("accuracy", "balanced_accuracy", "precision", "recall", "f1", "roc_auc")
NOT_ESTIMABLE = {
    "log_loss": "log loss judges the probabilities themselves, which the estimate must assume "
    "are right: it cannot be estimated without labels",
}
REGRESSION_NOT_ESTIMABLE = (
    "MAE, RMSE and R2 need the true values: a regressor gives no confidence to estimate them "
    "from, so nothing is estimated before labels arrive"
)

CalibrationMethod = Literal["isotonic", "none"]


def expected_calibration_error(
    probabilities: np.ndarray, outcomes: np.ndarray, bins: int = ECE_BINS
) -> float:
    """Mean |mean probability - observed rate| over equal-count bins, weighted by bin size.

    Hand-written: scikit-learn's ``calibration_curve`` gives the bins' rates but not their
    sizes, nor the error. Equal-count bins, because a fraud model's scores crowd near 0 and
    equal-width bins would put nearly everything into one.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    outcomes = np.asarray(outcomes, dtype=np.float64)
    if probabilities.size == 0:
        return 0.0
    order = np.argsort(probabilities, kind="stable")
    total = 0.0
    for chunk in np.array_split(order, min(bins, probabilities.size)):
        if chunk.size:
            total += chunk.size * abs(probabilities[chunk].mean() - outcomes[chunk].mean())
    return float(total / probabilities.size)


def calibration_error(
    probabilities: np.ndarray, truth_index: np.ndarray, predicted_index: np.ndarray
) -> float:
    """How far a classifier's probabilities are from the truth, as the estimate uses them:
    the larger of two expected calibration errors.

    - The chance it gives its own answer (the probability of the class it predicted) against
      how often that answer is right: the estimated accuracy is the mean of that chance.
    - Each class's probability against how often the class is the truth (the positive
      class's for two classes, the mean one-vs-rest for more): precision, recall and ROC AUC
      rest on it.

    Either alone can look fine while the other is off: an isotonic fit that pools the scores
    on both sides of the decision threshold is calibrated class by class, yet overstates the
    chance of the answers made in that pool.
    """
    rows = np.arange(len(predicted_index))
    confidence = expected_calibration_error(
        probabilities[rows, predicted_index], truth_index == predicted_index
    )
    columns = [1] if probabilities.shape[1] == 2 else range(probabilities.shape[1])
    classwise = float(
        np.mean(
            [expected_calibration_error(probabilities[:, c], truth_index == c) for c in columns]
        )
    )
    return max(confidence, classwise)


@dataclass
class Calibration:
    """What the reference says about the model's probabilities, and the fix kept for them."""

    classes: list[Any]
    method: CalibrationMethod
    # On the reference: the raw probabilities' error, and the calibrated ones' out of fold.
    ece_before: float | None
    ece_after: float | None
    reference_rows: int
    # The error a perfectly calibrated model would show here by chance (95th percentile).
    ece_by_chance: float | None = None
    # Per class, in ``classes`` order: its share of the reference's labels and predictions.
    label_shares: list[float] = field(default_factory=list)
    predicted_shares: list[float] = field(default_factory=list)
    # Why no calibration was fitted, or why the reference cannot be used at all.
    note: str = ""
    usable: bool = True
    calibrators: list[IsotonicRegression | None] = field(default_factory=list, repr=False)

    @property
    def final_ece(self) -> float | None:
        return self.ece_after if self.method == "isotonic" else self.ece_before

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        return (
            _apply(self.calibrators, probabilities) if self.method == "isotonic" else probabilities
        )


def unusable_calibration(classes: Sequence[Any], note: str) -> Calibration:
    """No labelled reference to learn from: estimates will say they cannot be trusted."""
    return Calibration(list(classes), "none", None, None, 0, note=note, usable=False)


def _fit_calibrators(
    probabilities: np.ndarray, truth_index: np.ndarray
) -> list[IsotonicRegression | None]:
    k = probabilities.shape[1]
    # Two classes: only the positive column is calibrated; the other is its complement.
    columns = [1] if k == 2 else list(range(k))
    calibrators: list[IsotonicRegression | None] = [None] * k
    for c in columns:
        calibrators[c] = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
            probabilities[:, c], (truth_index == c).astype(np.float64)
        )
    return calibrators


def _apply(
    calibrators: Sequence[IsotonicRegression | None], probabilities: np.ndarray
) -> np.ndarray:
    k = probabilities.shape[1]
    if k == 2:
        positive = np.asarray(calibrators[1].predict(probabilities[:, 1]))  # type: ignore[union-attr]
        return np.column_stack([1.0 - positive, positive])
    calibrated = np.column_stack(
        [
            np.asarray(c.predict(probabilities[:, i]))
            for i, c in enumerate(calibrators)
            if c is not None
        ]
    )
    # One-vs-rest calibrations no longer sum to one: normalised per row as NannyML does; a
    # row every calibrator put at 0 keeps its raw probabilities.
    sums = calibrated.sum(axis=1, keepdims=True)
    return np.where(sums > 0, calibrated / np.where(sums > 0, sums, 1.0), probabilities)


def fit_calibration(
    probabilities: np.ndarray, labels: Sequence[Any], classes: Sequence[Any]
) -> Calibration:
    """Measure the reference probabilities' calibration error out of fold, raw and after an
    isotonic calibration, and keep the calibration (fitted on all of it) only if it helps."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    classes = list(classes)
    index = {label: i for i, label in enumerate(classes)}
    truth = np.array([_class_index(index, label) for label in labels], dtype=np.int64)
    if (truth < 0).any():
        note = f"{int((truth < 0).sum())} reference labels are not among the model's classes"
        return unusable_calibration(classes, note)
    n, k = probabilities.shape
    predicted = probabilities.argmax(axis=1)
    calibration = Calibration(
        classes,
        "none",
        calibration_error(probabilities, truth, predicted),
        None,
        n,
        label_shares=[float(np.mean(truth == c)) for c in range(k)],
        predicted_shares=[float(np.mean(predicted == c)) for c in range(k)],
    )
    calibration.ece_by_chance = chance_calibration_error(probabilities, predicted)
    counts = np.bincount(truth, minlength=k)
    if n < MIN_REFERENCE_ROWS or counts.min() < CALIBRATION_FOLDS:
        calibration.note = (
            f"too few labelled reference examples to fit a calibration ({n} rows, the rarest "
            f"class {int(counts.min())} times; {MIN_REFERENCE_ROWS} rows and "
            f"{CALIBRATION_FOLDS} of each class needed)"
        )
        return calibration
    if calibration.ece_before <= calibration.ece_by_chance:  # type: ignore[operator]
        # Out-of-fold isotonic fits chase the reference's own sampling noise too: a model
        # already as calibrated as chance allows would only be bent towards that noise.
        calibration.note = (
            f"the raw probabilities are as well calibrated as {n} examples can show (chance "
            f"alone gives errors up to {calibration.ece_by_chance:.3f}): used as they are"
        )
        return calibration
    out_of_fold = np.empty_like(probabilities)
    folds = StratifiedKFold(n_splits=CALIBRATION_FOLDS, shuffle=True, random_state=0)
    for train, test in folds.split(probabilities, truth):
        fitted = _fit_calibrators(probabilities[train], truth[train])
        out_of_fold[test] = _apply(fitted, probabilities[test])
    calibration.ece_after = calibration_error(out_of_fold, truth, predicted)
    if calibration.ece_after < (calibration.ece_before or 0.0):
        calibration.method = "isotonic"
        calibration.calibrators = _fit_calibrators(probabilities, truth)
    else:
        calibration.note = (
            "isotonic calibration did not lower the calibration error out of fold "
            f"({calibration.ece_after:.3f} against {calibration.ece_before:.3f} raw): "
            "the raw probabilities are used"
        )
    return calibration


def _class_index(index: dict[Any, int], label: Any) -> int:
    try:
        return index.get(label, -1)
    except TypeError:  # a label that cannot be a class (a list, an object)
        return -1


def chance_calibration_error(probabilities: np.ndarray, predicted: np.ndarray) -> float:
    """The calibration error that sampling alone produces on this many examples: outcomes
    drawn from the probabilities themselves (so perfectly calibrated), scored as the real
    ones are, 95th percentile over the draws (consistency resampling, Broecker and Smith)."""
    rng = np.random.default_rng(0)
    cumulative = probabilities.cumsum(axis=1)
    last = probabilities.shape[1] - 1
    errors = []
    for _ in range(CHANCE_DRAWS):
        drawn = np.minimum((rng.random((len(probabilities), 1)) > cumulative).sum(axis=1), last)
        errors.append(calibration_error(probabilities, drawn, predicted))
    return float(np.percentile(errors, CHANCE_QUANTILE))


@dataclass
class Estimate:
    rows: int
    # Per metric: the estimate, or None with the reason in ``reasons``.
    metrics: dict[str, float | None]
    reasons: dict[str, str]
    warnings: list[str]

    @property
    def trusted(self) -> bool:
        return not self.warnings


def estimate_window(
    probabilities: np.ndarray, predictions: Sequence[Any], calibration: Calibration
) -> Estimate:
    """The expected metrics of one window from its logged probabilities and predictions."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    n = len(predictions)
    metrics: dict[str, float | None] = dict.fromkeys(ESTIMATED_METRICS)
    reasons: dict[str, str] = {}
    if n == 0:
        return Estimate(0, metrics, dict.fromkeys(ESTIMATED_METRICS, "no predictions"), [])
    k = len(calibration.classes)
    index = {label: i for i, label in enumerate(calibration.classes)}
    predicted = np.array([_class_index(index, label) for label in predictions], dtype=np.int64)
    # A prediction outside the classes (never logged by the server itself): the model's own
    # choice, the most probable class.
    predicted = np.where(predicted >= 0, predicted, probabilities.argmax(axis=1))
    calibrated = calibration.apply(probabilities)
    mismatch = _share_mismatch(n, predicted, calibration)
    if mismatch and calibration.label_shares and min(calibration.label_shares) > 0:
        calibrated, prior = adjust_to_window_prior(
            calibrated, np.asarray(calibration.label_shares, dtype=np.float64)
        )
        mix = ", ".join(
            f"{label!r} {share:.1%}"
            for label, share in zip(calibration.classes, prior, strict=True)
        )
        mismatch += (
            f" The estimate is adjusted to the class mix this window seems to have ({mix}), "
            "which is right for a reference sampled by class and not when the traffic itself "
            "drifted."
        )
    metrics["accuracy"] = float(calibrated[np.arange(n), predicted].mean())
    precision, recall, f1, auc = [], [], [], []
    columns = [1] if k == 2 else list(range(k))
    for c in columns:
        p = calibrated[:, c]
        chosen = predicted == c
        tp, fp = float(p[chosen].sum()), float((1 - p[chosen]).sum())
        fn = float(p[~chosen].sum())
        precision.append(tp / (tp + fp) if tp + fp > 0 else None)
        recall.append(tp / (tp + fn) if tp + fn > 0 else None)
        f1.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn > 0 else None)
        auc.append(_expected_auc(probabilities[:, c], p))
    name = calibration.classes[1] if k == 2 else None
    for metric, values, missing in (
        ("precision", precision, "no answer in this window predicts {cls}"),
        ("recall", recall, "no example of {cls} is expected in this window"),
        ("f1", f1, "neither predicted nor expected: {cls}"),
        ("roc_auc", auc, "every answer in this window has the same score"),
    ):
        if all(v is not None for v in values):
            metrics[metric] = float(np.mean([v for v in values if v is not None]))
        else:
            reasons[metric] = missing.format(
                cls=f"class {name!r}" if name is not None else "a class"
            )
    if k == 2:
        negative = 1.0 - calibrated[:, 1]
        chosen = predicted == 0
        tn, fp_all = float(negative[chosen].sum()), float(negative[~chosen].sum())
        specificity = tn / (tn + fp_all) if tn + fp_all > 0 else None
        if recall[0] is not None and specificity is not None:
            metrics["balanced_accuracy"] = (recall[0] + specificity) / 2
        else:
            reasons["balanced_accuracy"] = "a class is neither predicted nor expected"
    elif all(v is not None for v in recall):
        metrics["balanced_accuracy"] = float(np.mean([v for v in recall if v is not None]))
    else:
        reasons["balanced_accuracy"] = "a class is neither predicted nor expected"
    return Estimate(n, metrics, reasons, _warnings(n, calibration, mismatch))


def _expected_auc(scores: np.ndarray, calibrated: np.ndarray) -> float | None:
    """ROC AUC with each answer counted as positive with weight p and negative with 1 - p:
    the expected ROC curve along the model's own ranking, through scikit-learn's weighted
    ROC AUC (each answer paired with itself too, which is a tie and biases by O(1/n))."""
    if np.ptp(scores) == 0 or calibrated.sum() <= 0 or (1 - calibrated).sum() <= 0:
        return None
    n = scores.size
    truth = np.concatenate([np.ones(n), np.zeros(n)])
    return float(
        roc_auc_score(
            truth,
            np.concatenate([scores, scores]),
            sample_weight=np.concatenate([calibrated, 1.0 - calibrated]),
        )
    )


def _warnings(n: int, calibration: Calibration, mismatch: str) -> list[str]:
    warnings: list[str] = []
    if not calibration.usable:
        warnings.append(f"The estimate cannot be trusted: {calibration.note}.")
        return warnings
    if n < MIN_WINDOW_ROWS:
        warnings.append(
            f"Only {n} predictions in this window: the estimate needs a few hundred "
            f"({MIN_WINDOW_ROWS}) to be steady; read it as a rough guess."
        )
    final = calibration.final_ece
    chance = calibration.ece_by_chance
    if final is not None and final > POOR_CALIBRATION_ECE:
        if calibration.method == "none" and chance is not None and final <= chance:
            warnings.append(
                f"The {calibration.reference_rows} labelled reference examples are too few to "
                f"check the model's probabilities to within {POOR_CALIBRATION_ECE} (chance alone "
                f"gives calibration errors up to {chance:.3f} on so few): the estimate may be off "
                "by that much. More labelled reference data would settle it."
            )
        else:
            how = (
                "even after calibration"
                if calibration.method == "isotonic"
                else f"and could not be corrected ({calibration.note})"
                if calibration.note
                else "and could not be corrected"
            )
            warnings.append(
                f"The model's probabilities are off by {final:.3f} on average on the labelled "
                f"reference (expected calibration error, above the {POOR_CALIBRATION_ECE} "
                f"limit) {how}: the estimate can be wrong by about as much. Wait for labels "
                "before acting."
            )
    if mismatch:
        warnings.append(mismatch)
    return warnings


def _share_mismatch(n: int, predicted: np.ndarray, calibration: Calibration) -> str:
    """A class the model predicts far more or less often here than on the reference: the
    reference does not look like this traffic (an enriched sample such as a stratified
    confidence set, or traffic that drifted), so a calibration fitted on it is biased."""
    if not calibration.predicted_shares:
        return ""
    shares = np.bincount(predicted, minlength=len(calibration.classes)) / n
    for c, (here, there) in enumerate(zip(shares, calibration.predicted_shares, strict=True)):
        low, high = sorted((float(here), float(there)))
        if high - low >= MIN_SHARE_GAP and (low == 0 or high / low >= SHARE_RATIO_LIMIT):
            label = calibration.classes[c]
            truth = calibration.label_shares[c]
            return (
                f"The model predicts class {label!r} for {here:.1%} of this window but for "
                f"{there:.1%} of the labelled reference (which holds {truth:.1%} of it): the "
                "reference does not look like this traffic (an enriched sample, or the "
                "traffic drifted), so its calibration is biased and the estimate may be off: "
                "check the Drift page and wait for labels before acting."
            )
    return ""


def adjust_to_window_prior(
    calibrated: np.ndarray, reference_prior: np.ndarray, iterations: int = 100
) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities calibrated under the reference's class mix, moved to the window's mix as
    estimated from the window itself (Saerens, Latinne and Decaestecker 2002: expectation-
    maximisation of the prior under label shift). Returns (probabilities, estimated mix).

    Hand-written: neither scikit-learn nor scipy has it; it is a few lines of arithmetic.
    """
    prior = reference_prior.copy()
    adjusted = calibrated
    for _ in range(iterations):
        weighted = calibrated * (prior / reference_prior)
        totals = weighted.sum(axis=1, keepdims=True)
        adjusted = np.divide(weighted, totals, out=calibrated.copy(), where=totals > 0)
        updated = adjusted.mean(axis=0)
        if np.abs(updated - prior).max() < 1e-7:
            break
        prior = updated
    return adjusted, prior
