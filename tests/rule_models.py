"""A real model that is slow or fails on some inputs, for the alert rules' tests.

Pickled by reference (the server and the registration probe import this module): the toy
classifier behind a step that sleeps when ``count`` is at least SLOW_COUNT and raises when
``amount`` is at least FAILING_AMOUNT, both values the toy signature accepts.
"""

from __future__ import annotations

import functools
import pickle
import time
from typing import Any

from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder

from tests.helpers import toy_frame

SLOW_COUNT = 5_000
SLOW_S = 0.4
FAILING_AMOUNT = 9_000.0


def moody(frame: Any) -> Any:
    if (frame["amount"] >= FAILING_AMOUNT).any():
        raise RuntimeError("the moody model fails on large amounts")
    if (frame["count"] >= SLOW_COUNT).any():
        time.sleep(SLOW_S)
    return frame


@functools.cache
def moody_pickle() -> bytes:
    frame, labels = toy_frame()
    prep = ColumnTransformer(
        [
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
            ("num", "passthrough", ["amount", "count", "online"]),
        ]
    )
    model = Pipeline(
        [
            ("moody", FunctionTransformer(moody, validate=False)),
            ("prep", prep),
            ("clf", LogisticRegression(max_iter=2000)),
        ]
    ).fit(frame, labels)
    return pickle.dumps(model)
