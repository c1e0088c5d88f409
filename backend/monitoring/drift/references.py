"""A version's reference summary: made at registration (the registry stores it), read back for
every window's report."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import DriftReferenceRow
from backend.errors import NotFound
from backend.monitoring.drift.build import summarize_reference
from backend.monitoring.drift.summaries import ReferenceSummary
from backend.predictions.summary_layout import CONFIDENCE, PREDICTION


def reference_summary_json(
    features: pd.DataFrame, outputs: dict[str, Any] | None
) -> dict[str, Any]:
    """The registry's summariser: the features' summary, and the model's answers on the
    reference's sample as two more features (its predicted class or value, and a classifier's
    top-class probability) for prediction drift. Columns it cannot summarise are left out (a
    column of nested values, say); the report then lists them as skipped."""
    summary, _skipped = summarize_reference(features)
    if outputs is not None:
        answers = pd.DataFrame({PREDICTION: outputs["labels"]})
        probabilities = outputs.get("probabilities")
        if probabilities is not None:
            answers[CONFIDENCE] = [None if p is None else max(p) for p in probabilities]
        output_summary, _ = summarize_reference(answers)
        summary.features.update(output_summary.features)
    data: dict[str, Any] = summary.to_json()
    return data


class ReferenceBook:
    """Reference summaries by (model, version), read once: they never change."""

    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions
        self._cache: dict[tuple[str, str], tuple[ReferenceSummary, str]] = {}

    def get(self, model: str, version: str) -> tuple[ReferenceSummary, str]:
        """(the summary, where it came from), or NotFound naming the version."""
        key = (model, version)
        found = self._cache.get(key)
        if found is None:
            with self.sessions() as session:
                row = session.get(DriftReferenceRow, key)
                if row is None:
                    raise NotFound(
                        f"version {version} of {model} has no reference summary (it was "
                        "registered before drift was measured); register it again to measure "
                        "its drift",
                        "version",
                    )
                found = (ReferenceSummary.from_json(json.loads(row.summary)), row.source)
            self._cache[key] = found
        return found
