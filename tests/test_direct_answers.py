"""Linear models answer without scikit-learn's per-call checks, exactly as scikit-learn does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from backend.registry.direct_answers import direct_answer
from backend.registry.loaded import LoadedVersion
from backend.registry.signature import CompiledSignature
from backend.schemas import FeatureSpec

WIDTH = 6
NAMES = [f"f{i}" for i in range(WIDTH)]
SIGNATURE = CompiledSignature([FeatureSpec(name=name, type="float") for name in NAMES])
_rng = np.random.default_rng(7)
X = _rng.normal(size=(400, WIDTH)) * np.array([1, 10, 0.1, 100, 1, 3])
ROWS = [dict(zip(NAMES, row, strict=True)) for row in X[:40].tolist()]


def _loaded(estimator: Any, task: str) -> LoadedVersion:
    return LoadedVersion("m", "1", estimator, SIGNATURE, task, None)


def _through_sklearn(estimator: Any, task: str) -> LoadedVersion:
    loaded = _loaded(estimator, task)
    loaded.direct = None
    return loaded


@pytest.mark.parametrize(
    ("estimator", "task"),
    [
        (LogisticRegression(max_iter=500).fit(X, X[:, 0] > 0), "classification"),
        (
            LogisticRegression(max_iter=500).fit(X, np.digitize(X[:, 1], [-5.0, 5.0])),
            "classification",
        ),
        (
            LogisticRegression(max_iter=500).fit(X, np.where(X[:, 2] > 0, "yes", "no")),
            "classification",
        ),
        (LinearRegression().fit(X, X @ np.arange(WIDTH)), "regression"),
        (Ridge(alpha=2.0).fit(X, X @ np.arange(WIDTH) + 3.0), "regression"),
        (
            LogisticRegression(max_iter=500, fit_intercept=False).fit(X, X[:, 3] > 0),
            "classification",
        ),
        (LinearRegression(fit_intercept=False).fit(X, X @ np.arange(WIDTH)), "regression"),
    ],
    ids=[
        "binary",
        "three-classes",
        "text-classes",
        "linear-regression",
        "ridge",
        "no-intercept-classifier",
        "no-intercept-regression",
    ],
)
def test_a_linear_model_answers_directly_and_exactly_as_scikit_learn(estimator: Any, task: str):
    direct, checked = _loaded(estimator, task), _through_sklearn(estimator, task)
    assert direct.direct is not None
    for rows in (ROWS[:1], ROWS):
        got, expected = direct.predict(rows), checked.predict(rows)
        assert got.labels == expected.labels
        assert got.probabilities == expected.probabilities  # the same floats, bit for bit
        assert all(
            type(label) is type(other)
            for label, other in zip(got.labels, expected.labels, strict=True)
        )


class _ShiftedLogistic(LogisticRegression):
    """A subclass may change what predicting means: it keeps scikit-learn's path."""

    def predict_proba(self, X: Any) -> Any:
        return super().predict_proba(X * 2)


def test_other_models_keep_scikit_learn_s_own_path():
    labels = X[:, 0] > 0
    frame = pd.DataFrame(X, columns=NAMES)
    sparse = LogisticRegression(max_iter=500).fit(X, labels).sparsify()
    not_these = [
        (make_pipeline(StandardScaler(), LogisticRegression()).fit(X, labels), True),
        (_ShiftedLogistic(max_iter=500).fit(X, labels), True),
        # Fitted on a DataFrame: scikit-learn checks the column names.
        (LogisticRegression(max_iter=500).fit(frame, labels), True),
        (sparse, True),
        # A classifier asked for labels alone, a regressor asked for probabilities.
        (LogisticRegression(max_iter=500).fit(X, labels), False),
        (LinearRegression().fit(X, X[:, 0]), True),
        # Two outputs (refused at registration; see test_registration_probe).
        (Ridge().fit(X, np.column_stack([X[:, 0], X[:, 1]])), False),
    ]
    for estimator, probabilities in not_these:
        assert direct_answer(estimator, WIDTH, probabilities) is None, estimator
    # Fitted on another width than the signature's.
    narrow = LogisticRegression(max_iter=500).fit(X[:, :3], labels)
    assert direct_answer(narrow, WIDTH, True) is None


def test_a_model_whose_answers_differ_from_the_direct_computation_is_not_answered_directly():
    estimator = LogisticRegression(max_iter=500).fit(X, X[:, 0] > 0)
    original = estimator.predict_proba
    # An instance that answers otherwise than its coefficients say (patched on the instance,
    # so its type is still LogisticRegression): the check at load sees it.
    estimator.predict_proba = lambda rows: original(rows)[:, ::-1]  # type: ignore[method-assign]
    assert direct_answer(estimator, WIDTH, True) is None
    loaded = _loaded(estimator, "classification")
    assert loaded.direct is None
    # ...and it answers as the instance does, through scikit-learn.
    assert loaded.predict(ROWS[:3]).probabilities == original(X[:3])[:, ::-1].tolist()
