"""Linear models answered without scikit-learn's per-call input checks.

For one row, ``LogisticRegression.predict_proba`` spends ~95% of its time in the input checks of
``validate_data`` (scikit-learn 1.9 on the 2-core bench machine: ~100 µs of ~105; narwhals'
dataframe detection alone makes six ``inspect.getattr_static`` calls), and the arithmetic is a
few microseconds. Those checks are already done when a version answers: the signature checked
every value (finite numbers of the right type), and the design matrix is float64, in signature
order, as wide as the model was fitted. So for the estimators whose answer is a plain function
of ``coef_`` and ``intercept_``, the answer is computed here with the very calls scikit-learn
makes after its checks (the matrix product, ``scipy.special.expit``, scikit-learn's
``softmax``), and each version is checked at load to give scikit-learn's own answers on probe
rows before this path is used for it. Anything else (a pipeline, a subclass, a model fitted on
a DataFrame, whose column names scikit-learn checks) goes through scikit-learn as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import expit
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.utils.extmath import softmax

# A design matrix (rows x features, float64) -> probabilities (classifiers) or predictions.
DirectAnswer = Callable[[np.ndarray], np.ndarray]

# Exact types only: a subclass may change what predicting means.
_REGRESSORS = (LinearRegression, Ridge)
# The largest difference from scikit-learn's answer on the probe rows that is accepted. The
# same operations in the same order give the same bits, so none is expected: this is a margin,
# not a licence to differ.
_AGREEMENT = 1e-12
_PROBE_ROWS = 64


def direct_answer(estimator: Any, width: int, probabilities: bool) -> DirectAnswer | None:
    """The estimator's answer without scikit-learn's input checks, or None where it cannot be
    given exactly (see the module's docstring). ``probabilities``: what the caller asks of a
    classifier (``predict_proba``); a regressor's ``predict`` otherwise."""
    kind = type(estimator)
    if kind is not LogisticRegression and kind not in _REGRESSORS:
        return None
    coef = getattr(estimator, "coef_", None)
    intercept = getattr(estimator, "intercept_", None)
    if (
        type(coef) is not np.ndarray
        or coef.dtype != np.float64
        or getattr(estimator, "n_features_in_", None) != width
        or hasattr(estimator, "feature_names_in_")
    ):
        return None
    coef_t = coef.T if coef.ndim == 2 else coef
    answer: DirectAnswer
    if kind is LogisticRegression:
        if not probabilities:
            return None
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            return None
        if len(classes) <= 2:

            def answer(design: np.ndarray) -> np.ndarray:
                positive = expit((design @ coef_t + intercept).reshape(-1))
                return np.stack([1 - positive, positive], axis=1)

        else:

            def answer(design: np.ndarray) -> np.ndarray:
                result: np.ndarray = softmax(design @ coef_t + intercept, copy=False)
                return result

    else:
        # One output: a multi-output regressor is refused at registration (inspection).
        if probabilities or coef.ndim != 1:
            return None

        def answer(design: np.ndarray) -> np.ndarray:
            result: np.ndarray = design @ coef_t + intercept
            return result

    return answer if _agrees(estimator, answer, width, probabilities) else None


def _agrees(estimator: Any, answer: DirectAnswer, width: int, probabilities: bool) -> bool:
    """True when ``answer`` gives scikit-learn's own answers on probe rows (of a single row and
    of many, at several scales)."""
    generator = np.random.default_rng(0)
    probe = generator.normal(size=(_PROBE_ROWS, width)) * np.logspace(-2, 2, _PROBE_ROWS)[:, None]
    try:
        for rows in (probe[:1], probe):
            expected = estimator.predict_proba(rows) if probabilities else estimator.predict(rows)
            got = answer(np.ascontiguousarray(rows))
            if got.shape != expected.shape or not np.allclose(
                got, expected, rtol=0.0, atol=_AGREEMENT, equal_nan=True
            ):
                return False
    except Exception:  # any surprise keeps the version on scikit-learn's own path
        return False
    return True
