"""What registration learns from a loaded model: its signature, task, classes, and whether it
predicts on its own example. Runs inside the probe process (see probe.py), never the server."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import is_classifier, is_regressor

from backend.errors import InputError
from backend.registry.loaded import LoadedVersion, class_labels_of
from backend.registry.signature import CompiledSignature
from backend.schemas import FeatureSpec, ValidityAssets


def inspect_model(
    estimator: Any,
    signature: Sequence[FeatureSpec] | None,
    task: str | None,
    validity: ValidityAssets,
    example_input: dict[str, Any] | None,
    reference_rows_path: str | None = None,
) -> dict[str, Any]:
    """The registration facts of ``estimator`` as JSON-able values, or an InputError saying
    why the file cannot be served.

    With ``reference_rows_path`` (a JSON list of feature objects: a sample of the version's
    reference data), also the model's answers on those rows: the reference of its outputs
    for prediction drift and of its confidence for the label-free performance estimate."""
    resolved_task = _resolve_task(estimator, task)
    _require_methods(estimator, resolved_task)
    specs = _resolve_signature(estimator, signature)
    compiled = CompiledSignature(specs)
    class_labels = class_labels_of(estimator) if resolved_task == "classification" else None
    _check_validity_inputs(compiled, validity)
    example = example_input or validity.end_to_end[0].inputs
    example = compiled.validate_row(example, "example_input")
    loaded = LoadedVersion("?", "?", estimator, compiled, resolved_task, class_labels)
    try:
        prediction = loaded.predict([example])
    except Exception as exc:  # any estimator failure means the artifact is unusable
        raise InputError(
            f"the model cannot predict on its own example input: {type(exc).__name__}: {exc}",
            "artifact",
        ) from None
    if len(prediction.labels) != 1:
        raise InputError(
            f"the model answered {len(prediction.labels)} predictions for one example row",
            "artifact",
        )
    if np.ndim(prediction.labels[0]) != 0:
        # A multi-output model answers an array per row: the protocols, the log, the metrics
        # and drift all take one prediction per row.
        raise InputError(
            f"the model answers an array of shape {list(np.shape(prediction.labels[0]))} for "
            "one row; ServeDeck serves models that answer one value per row",
            "artifact",
        )
    facts: dict[str, Any] = {
        "signature": [spec.model_dump(mode="json") for spec in specs],
        "task": resolved_task,
        "class_labels": class_labels,
        "example_input": example,
    }
    if reference_rows_path is not None:
        facts["reference_outputs"] = _reference_outputs(loaded, compiled, reference_rows_path)
    return facts


# Rows predicted at once: large enough for vectorised models, small enough for the probe's
# memory limit with any model.
_REFERENCE_CHUNK = 2_000


def _reference_outputs(
    loaded: LoadedVersion, compiled: CompiledSignature, path: str
) -> dict[str, Any]:
    """The model's answers on the reference sample, in its order; rows the signature refuses
    (a missing value, say) are answered None and counted, and none valid is an InputError."""
    with open(path, "rb") as handle:
        rows = json.load(handle)
    valid: list[dict[str, Any]] = []
    positions: list[int] = []
    first_problem: InputError | None = None
    for i, row in enumerate(rows):
        try:
            valid.append(compiled.validate_row(row, f"reference[{i}]"))
            positions.append(i)
        except InputError as exc:
            first_problem = first_problem or exc
    if not valid:
        assert first_problem is not None or not rows
        reason = first_problem.reason if first_problem else "it has no rows"
        field = first_problem.field if first_problem else "reference"
        raise InputError(f"no row of the reference data fits the signature: {reason}", field)
    labels: list[Any] = [None] * len(rows)
    probabilities: list[list[float] | None] | None = (
        [None] * len(rows) if loaded.has_proba else None
    )
    for start in range(0, len(valid), _REFERENCE_CHUNK):
        chunk = valid[start : start + _REFERENCE_CHUNK]
        try:
            answered = loaded.predict(chunk)
        except Exception as exc:  # any estimator failure: the reference cannot be scored
            raise InputError(
                f"the model cannot predict on the reference data: {type(exc).__name__}: {exc}",
                "reference",
            ) from None
        for offset, label in enumerate(answered.labels):
            labels[positions[start + offset]] = label
        if probabilities is not None and answered.probabilities is not None:
            for offset, row_probabilities in enumerate(answered.probabilities):
                probabilities[positions[start + offset]] = row_probabilities
    return {
        "labels": labels,
        "probabilities": probabilities,
        "refused_rows": len(rows) - len(valid),
    }


def _require_methods(estimator: Any, task: str) -> None:
    """Serving calls predict (and predict_proba for a classifier's probabilities)."""
    kind = type(estimator).__name__
    if not callable(getattr(estimator, "predict", None)):
        raise InputError(f"the file holds no model: a {kind} has no predict method", "artifact")
    proba = getattr(estimator, "predict_proba", None)
    if task == "classification" and proba is not None and not callable(proba):
        raise InputError(f"the {kind}'s predict_proba is not a method", "artifact")


def _resolve_signature(
    estimator: Any, signature: Sequence[FeatureSpec] | None
) -> list[FeatureSpec]:
    expected = getattr(estimator, "feature_names_in_", None)
    if signature:
        specs = list(signature)
    elif expected is not None:
        specs = [FeatureSpec(name=str(n), type="float") for n in expected]
    else:
        raise InputError(
            "no input signature: give one, or a training frame to infer it from", "signature"
        )
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise InputError("feature names must be unique", "signature")
    if expected is not None and list(map(str, expected)) != names:
        raise InputError(
            f"signature features {names} differ from the model's {list(map(str, expected))}",
            "signature",
        )
    return specs


def _resolve_task(estimator: Any, task: str | None) -> str:
    try:
        inferred = (
            "classification"
            if is_classifier(estimator)
            else "regression"
            if is_regressor(estimator)
            else None
        )
    except Exception:  # not an estimator sklearn can describe: only the task given counts
        inferred = None
    if task and inferred and task != inferred:
        raise InputError(f"task {task!r} contradicts the estimator, a {inferred} model", "task")
    resolved = task or inferred
    if resolved not in ("classification", "regression"):
        if not callable(getattr(estimator, "predict", None)):
            raise InputError(
                f"the file holds no model: a {type(estimator).__name__} has no predict method",
                "artifact",
            )
        raise InputError("cannot tell whether this is a classifier or a regressor", "task")
    return resolved


def _check_validity_inputs(compiled: CompiledSignature, validity: ValidityAssets) -> None:
    for i, example in enumerate(validity.end_to_end):
        compiled.validate_row(example.inputs, f"validity.end_to_end[{i}].inputs")
    for i, labelled in enumerate(validity.confidence_set):
        compiled.validate_row(labelled.inputs, f"validity.confidence_set[{i}].inputs")
    low, high = validity.acceptable_range
    if low > high:
        raise InputError("the lower bound is above the upper bound", "validity.acceptable_range")
