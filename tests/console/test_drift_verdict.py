"""The Drift page's verdict in words, from reports the backend's own drift code computes: the
headline never says "No drift" while the model's answers moved."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pytestqt.qtbot import QtBot

from backend.monitoring.drift.build import summarize_current, summarize_reference
from backend.monitoring.drift.report import drift_report
from backend.schemas.drift import DriftReport
from console.widgets.drift_verdict import DriftVerdict


def _frame(seed: int, rows: int, confidence: tuple[float, float]) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, rows),
            "channel": rng.choice(["web", "app", "pos"], rows, p=[0.5, 0.3, 0.2]),
            "confidence": rng.beta(*confidence, rows),
        }
    )


def _report(current_confidence: tuple[float, float]) -> DriftReport:
    reference, _ = summarize_reference(_frame(1, 20_000, (8, 2)))
    current = summarize_current(_frame(2, 5_000, current_confidence), reference)
    return drift_report(reference, current)


def test_answers_that_moved_on_unchanged_inputs_are_a_warning_not_no_drift(qtbot: QtBot) -> None:
    verdict = DriftVerdict()
    qtbot.addWidget(verdict)
    verdict.show_report(_report((2, 2)), "last hour")
    headline = verdict.headline.text()
    assert "No drift" not in headline
    assert "answers changed, though its inputs did not" in headline
    assert "on its own, but the model's outputs did (confidence)" in verdict.summary.text()
    assert "drifted inputs below" not in verdict.outputs.text()
    # Said once, in the summary: the outputs line does not repeat it.
    assert "on its own" not in verdict.outputs.text()
    # The page shows no distribution of the outputs (its table and chart are the inputs'):
    # the advice names what the page does offer, the version choice.
    assert "distributions below" not in verdict.outputs.text()
    assert "choose one in Version" in verdict.outputs.text()
    # The summary is the backend's, printed by the drift command too: no page of the console.
    assert "Performance page" not in verdict.summary.text()
    assert "Nothing to do" not in verdict.summary.text()

    # Nothing moved: then it is "No drift".
    verdict.show_report(_report((8, 2)), "last hour")
    assert "No drift" in verdict.headline.text()
    assert "Nothing to do" in verdict.summary.text()
