"""Building second versions of the toy model for deployment tests."""

from __future__ import annotations

from typing import Any

import skops.io as sio
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from backend.auth.tokens import Principal
from backend.schemas import FeatureSpec, ModelVersionInfo, ValidityAssets
from backend.workspace import Workspace
from tests.helpers import TOY_SIGNATURE, toy_classifier, toy_frame, toy_validity

ENGINEER = Principal(name="eng", role="engineer")


def retrained_toy(
    regularisation: float = 0.5, drop: tuple[str, ...] = (), contrary: bool = False
) -> Pipeline:
    """The toy pipeline fitted again (a distinct artifact), optionally without some features,
    or ``contrary``: trained on inverted labels, so it disagrees with version 1."""
    frame, labels = toy_frame()
    if contrary:
        labels = 1 - labels
    model = clone(toy_classifier())
    model.set_params(clf__C=regularisation)
    if drop:
        prep = model.named_steps["prep"]
        prep.transformers = [
            (name, step, [c for c in columns if c not in drop])
            for name, step, columns in prep.transformers
        ]
    return model.fit(frame.drop(columns=list(drop)), labels)


def register_toy(
    workspace: Workspace,
    model: Any = None,
    *,
    validity: ValidityAssets | None = None,
    signature: list[FeatureSpec] | None = None,
    description: str = "",
) -> ModelVersionInfo:
    model = model if model is not None else retrained_toy()
    return workspace.registry.register_version(
        "toy",
        sio.dumps(model),
        filename="toy.skops",
        validity=validity or toy_validity(model),
        registered_by="tests",
        signature=signature or TOY_SIGNATURE,
        description=description,
    )


def without(signature: list[FeatureSpec], *names: str) -> list[FeatureSpec]:
    return [spec for spec in signature if spec.name not in names]


def validity_with(model: Any, **changes: Any) -> ValidityAssets:
    """The model's own validity assets with some parts replaced (validated like a client's)."""
    return ValidityAssets.model_validate({**toy_validity(model).model_dump(), **changes})
