"""A version's reference data: what it was trained on (or, without that, its confidence set).

Drift compares live traffic with it, and the label-free performance estimate calibrates the
model's confidence on it. It is summarised once, at registration; only a sample of it is kept
with the model's answers on it (for prediction drift and the estimate), never the whole of it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from backend.errors import InputError
from backend.schemas import FeatureSpec, ValidityAssets

# Rows of the reference the model predicts at registration (in the probe process): enough for
# the output distribution and the calibration to be stable, small enough to score in seconds.
PREDICTED_ROWS = 20_000
SAMPLE_SEED = 20_261_202


# (the reference's features, the model's answers on its sample: {"labels": [...],
# "probabilities": [[...]] | None}, or None) -> the summary's JSON.
ReferenceSummariser = Callable[[pd.DataFrame, dict[str, Any] | None], dict[str, Any]]


@dataclass
class ReferenceData:
    """The features (signature columns), optionally the true labels, and where it came from."""

    frame: pd.DataFrame
    labels: pd.Series | None
    source: str  # "training data" or "confidence set"

    def sample(self) -> tuple[pd.DataFrame, pd.Series | None]:
        """The rows the model is asked to answer at registration (a fixed-seed sample)."""
        if len(self.frame) <= PREDICTED_ROWS:
            return self.frame, self.labels
        picked = self.frame.sample(n=PREDICTED_ROWS, random_state=SAMPLE_SEED).index
        labels = None if self.labels is None else self.labels.loc[picked]
        return self.frame.loc[picked], labels


def training_reference(
    frame: pd.DataFrame, signature: Sequence[FeatureSpec], target: str | None
) -> ReferenceData:
    """The reference from a training (or held-out) table: the signature's columns, and the
    true labels from ``target`` when given; an InputError names what does not fit."""
    if len(frame) == 0:
        raise InputError("the reference data has no rows", "reference")
    names = [spec.name for spec in signature]
    missing = [name for name in names if name not in frame.columns]
    if missing:
        raise InputError(
            f"the reference data lacks the model's feature(s) {', '.join(missing[:5])}"
            f"{' and more' if len(missing) > 5 else ''}",
            "reference",
        )
    labels: pd.Series | None = None
    if target is not None:
        if target not in frame.columns:
            raise InputError(f"the reference data has no column {target!r}", "reference_target")
        if target in names:
            raise InputError(f"{target!r} is one of the model's features", "reference_target")
        labels = frame[target]
    return ReferenceData(frame[names], labels, "training data")


def confidence_set_reference(
    validity: ValidityAssets, signature: Sequence[FeatureSpec] | None
) -> ReferenceData:
    """Without training data, the confidence set stands in: small, but labelled. Without a
    signature yet (the probe reads it from the model), its own inputs name the columns."""
    if signature:
        names = [spec.name for spec in signature]
    else:
        names = list(dict.fromkeys(k for e in validity.confidence_set for k in e.inputs))
    frame = pd.DataFrame.from_records(
        [example.inputs for example in validity.confidence_set], columns=names
    )
    labels = pd.Series([example.label for example in validity.confidence_set])
    return ReferenceData(frame, labels, "confidence set")


# Parquet files begin (and end) with these four bytes.
_PARQUET_MAGIC = b"PAR1"


def read_table_file(data: bytes, field: str) -> pd.DataFrame:
    """A Parquet or CSV file's table, or an InputError naming ``field`` and why it is not one."""
    if not data:
        raise InputError("the file is empty", field)
    try:
        if data[:4] == _PARQUET_MAGIC:
            return pd.read_parquet(io.BytesIO(data))
        return pd.read_csv(io.BytesIO(data))
    except Exception as exc:  # every reader failure means the same: not a table we can read
        raise InputError(
            f"not a readable Parquet or CSV table: {type(exc).__name__}: {str(exc)[:200]}", field
        ) from None


def rows_for_probe(frame: pd.DataFrame) -> bytes:
    """The sample as the probe reads it: a JSON list of feature objects (missing values as
    null, which the probe's signature check refuses row by row)."""
    text: str = frame.to_json(orient="records", date_format="iso")
    return text.encode()


def plain_labels(labels: pd.Series | None) -> list[Any] | None:
    if labels is None:
        return None
    return [None if pd.isna(v) else (v.item() if hasattr(v, "item") else v) for v in labels]
