"""Registering, describing and loading model versions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
from sklearn.base import is_classifier, is_regressor
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import ModelRow, ModelVersionRow
from backend.errors import InputError, NotFound, ServeDeckError
from backend.registry.artifacts import ArtifactStore, detect_format, untrusted_skops_types
from backend.registry.loaded import LoadedVersion, class_labels_of
from backend.registry.signature import CompiledSignature, infer_signature
from backend.schemas import (
    FeatureSpec,
    ModelInfo,
    ModelVersionInfo,
    RolloutState,
    ServingPolicy,
    ValidityAssets,
)

MAX_VERSION_DIGITS = 9
MAX_CLASS_NAME_LENGTH = 64


def parse_version(version: str) -> int:
    """A version number as a path carries it: ASCII digits only ("²" is a digit to Python),
    short enough for the database's integer column; "01" and "1" are the same version."""
    if not (version.isascii() and version.isdigit()) or len(version) > MAX_VERSION_DIGITS:
        raise NotFound(f"versions are numbered 1, 2, ...; got {version[:40]!r}", "version")
    return int(version)


class Registry:
    def __init__(self, sessions: sessionmaker[Session], store: ArtifactStore):
        self.sessions = sessions
        self.store = store

    # ------------------------------------------------------------------ registration

    def register_version(
        self,
        name: str,
        artifact: bytes,
        *,
        filename: str,
        validity: ValidityAssets,
        registered_by: str,
        signature: Sequence[FeatureSpec] | None = None,
        training_frame: pd.DataFrame | None = None,
        task: str | None = None,
        description: str = "",
        trust_pickle: bool = False,
        trusted_types: Sequence[str] = (),
        example_input: dict[str, Any] | None = None,
        class_names: Mapping[str, str] | None = None,
    ) -> ModelVersionInfo:
        _check_model_name(name)
        fmt = detect_format(filename, artifact)
        accepted_types: list[str] = []
        if fmt == "skops":
            untrusted = untrusted_skops_types(artifact)
            missing = sorted(set(untrusted) - set(trusted_types))
            if missing:
                raise InputError(
                    "the skops file contains types that are not trusted by default: "
                    f"{', '.join(missing)}; review them and pass each with --trust-type "
                    "(HTTP: trusted_types) to accept",
                    "artifact",
                )
            accepted_types = sorted(set(untrusted))
        elif not trust_pickle:
            raise InputError(
                f"{fmt} files can run arbitrary code when loaded; save the model with skops, "
                "or pass --trust-pickle (HTTP: trust_pickle=true) to accept the risk",
                "artifact",
            )

        digest = self.store.put(artifact)
        estimator = self.store.load(digest, fmt, accepted_types, registered_by)

        specs = _resolve_signature(estimator, signature, training_frame)
        compiled = CompiledSignature(specs)
        resolved_task = _resolve_task(estimator, task)
        class_labels = class_labels_of(estimator) if resolved_task == "classification" else None
        names = _class_names(class_labels, class_names)
        _check_validity_inputs(compiled, validity)
        example = example_input or validity.end_to_end[0].inputs
        example = compiled.validate_row(example, "example_input")

        loaded = LoadedVersion(name, "?", estimator, compiled, resolved_task, class_labels)
        try:
            loaded.predict([example])
        except Exception as exc:  # any estimator failure means the artifact is unusable
            raise InputError(
                f"the model cannot predict on its own example input: {exc}", "artifact"
            ) from None

        for _attempt in range(3):
            try:
                return self._insert_version(
                    name=name,
                    task=resolved_task,
                    description=description,
                    row_values={
                        "artifact_sha256": digest,
                        "artifact_format": fmt,
                        "artifact_size": len(artifact),
                        "trusted_by": registered_by if fmt != "skops" else None,
                        "skops_trusted_types": accepted_types,
                        "task": resolved_task,
                        "class_labels": class_labels,
                        "class_names": names,
                        "signature": [spec.model_dump() for spec in specs],
                        "example_input": example,
                        "validity": validity.model_dump(mode="json"),
                        "description": description,
                        "registered_by": registered_by,
                    },
                )
            except IntegrityError:
                continue  # another registration took the same number; number again
        raise ServeDeckError("could not allocate a version number; try again", status=503)

    def _insert_version(
        self, *, name: str, task: str, description: str, row_values: dict[str, Any]
    ) -> ModelVersionInfo:
        with self.sessions.begin() as session:
            model = session.scalar(select(ModelRow).where(ModelRow.name == name))
            if model is None:
                model = ModelRow(name=name, task=task, description=description)
                session.add(model)
                session.flush()
            elif model.task != task:
                raise InputError(
                    f"model {name!r} is a {model.task} model; this artifact is a {task} model",
                    "task",
                )
            number = (
                session.scalar(
                    select(func.max(ModelVersionRow.number)).where(
                        ModelVersionRow.model_id == model.id
                    )
                )
                or 0
            ) + 1
            row = ModelVersionRow(model_id=model.id, number=number, **row_values)
            session.add(row)
            session.flush()
            return _version_info(row)

    # ------------------------------------------------------------------ reading

    def list_models(self) -> list[ModelInfo]:
        with self.sessions() as session:
            models = session.scalars(select(ModelRow).order_by(ModelRow.name)).all()
            return [_model_info(model) for model in models]

    def get_model(self, name: str) -> ModelInfo:
        with self.sessions() as session:
            return _model_info(self._model_row(session, name))

    def get_version(self, name: str, version: str) -> ModelVersionInfo:
        with self.sessions() as session:
            model = self._model_row(session, name)
            return _version_info(self._version_row(session, model, version))

    def load(self, name: str, version: str) -> LoadedVersion:
        with self.sessions() as session:
            model = self._model_row(session, name)
            row = self._version_row(session, model, version)
            estimator = self.store.load(
                row.artifact_sha256, row.artifact_format, row.skops_trusted_types, row.trusted_by
            )
            specs = [FeatureSpec(**spec) for spec in row.signature]
            return LoadedVersion(
                name, version, estimator, CompiledSignature(specs), row.task, row.class_labels
            )

    def serving_states(self) -> dict[str, tuple[str | None, int, dict[str, Any] | None]]:
        """Model name -> (active version, generation, rollout): polled by every worker."""
        with self.sessions() as session:
            rows = session.execute(
                select(
                    ModelRow.name,
                    ModelRow.active_version,
                    ModelRow.state_generation,
                    ModelRow.rollout,
                )
            ).all()
            return {
                name: (active, generation, rollout) for name, active, generation, rollout in rows
            }

    @staticmethod
    def _model_row(session: Session, name: str) -> ModelRow:
        model = session.scalar(select(ModelRow).where(ModelRow.name == name))
        if model is None:
            raise NotFound(f"no model named {name!r}", "model")
        return model

    @staticmethod
    def _version_row(session: Session, model: ModelRow, version: str) -> ModelVersionRow:
        number = parse_version(version)
        row = session.scalar(
            select(ModelVersionRow).where(
                ModelVersionRow.model_id == model.id, ModelVersionRow.number == number
            )
        )
        if row is None:
            raise NotFound(f"model {model.name!r} has no version {version}", "version")
        return row


def _check_model_name(name: str) -> None:
    if not name or len(name) > 128 or not all(c.isalnum() or c in "-_." for c in name):
        raise InputError(
            "model names use letters, digits, '-', '_' and '.', at most 128 characters", "name"
        )


def _resolve_signature(
    estimator: Any,
    signature: Sequence[FeatureSpec] | None,
    training_frame: pd.DataFrame | None,
) -> list[FeatureSpec]:
    if signature:
        specs = list(signature)
    elif training_frame is not None:
        specs = infer_signature(training_frame)
    elif hasattr(estimator, "feature_names_in_"):
        specs = [FeatureSpec(name=str(n), type="float") for n in estimator.feature_names_in_]
    else:
        raise InputError(
            "no input signature: give one, or a training frame to infer it from", "signature"
        )
    names = [spec.name for spec in specs]
    if len(set(names)) != len(names):
        raise InputError("feature names must be unique", "signature")
    expected = getattr(estimator, "feature_names_in_", None)
    if expected is not None and list(map(str, expected)) != names:
        raise InputError(
            f"signature features {names} differ from the model's {list(map(str, expected))}",
            "signature",
        )
    return specs


def _resolve_task(estimator: Any, task: str | None) -> str:
    inferred = (
        "classification"
        if is_classifier(estimator)
        else "regression"
        if is_regressor(estimator)
        else None
    )
    if task and inferred and task != inferred:
        raise InputError(f"task {task!r} contradicts the estimator, a {inferred} model", "task")
    resolved = task or inferred
    if resolved not in ("classification", "regression"):
        raise InputError("cannot tell whether this is a classifier or a regressor", "task")
    return resolved


def class_key(label: Any) -> str:
    """A class label as text, the key class names are given by: "fraud" as it is, 1 as "1"."""
    return label if isinstance(label, str) else json.dumps(label)


def _class_names(
    class_labels: Sequence[Any] | None, given: Mapping[str, str] | None
) -> list[str] | None:
    """The name of every class, in the classes' order (a class without one keeps its label)."""
    if not given:
        return None
    if class_labels is None:
        raise InputError("only a classifier's classes can be named", "class_names")
    keys = [class_key(label) for label in class_labels]
    for key, name in given.items():
        if key not in keys:
            raise InputError(
                f"{key!r} is not one of the model's classes: {', '.join(keys)}",
                f"class_names.{key}"[:80],
            )
        if not name.strip() or len(name) > MAX_CLASS_NAME_LENGTH:
            raise InputError(
                f"a class name is 1 to {MAX_CLASS_NAME_LENGTH} characters", f"class_names.{key}"
            )
    names = [given.get(key, key).strip() for key in keys]
    if len(set(names)) != len(names):
        raise InputError("two classes cannot have the same name", "class_names")
    return names


def _check_validity_inputs(compiled: CompiledSignature, validity: ValidityAssets) -> None:
    for i, example in enumerate(validity.end_to_end):
        compiled.validate_row(example.inputs, f"validity.end_to_end[{i}].inputs")
    for i, labelled in enumerate(validity.confidence_set):
        compiled.validate_row(labelled.inputs, f"validity.confidence_set[{i}].inputs")
    low, high = validity.acceptable_range
    if low > high:
        raise InputError("the lower bound is above the upper bound", "validity.acceptable_range")


def _version_info(row: ModelVersionRow) -> ModelVersionInfo:
    return ModelVersionInfo(
        version=str(row.number),
        task=row.task,  # type: ignore[arg-type]
        class_labels=row.class_labels,
        class_names=row.class_names,
        signature=[FeatureSpec(**spec) for spec in row.signature],
        example_input=row.example_input,
        validity=ValidityAssets(**row.validity),
        artifact_sha256=row.artifact_sha256,
        artifact_format=row.artifact_format,  # type: ignore[arg-type]
        artifact_size=row.artifact_size,
        trusted_by=row.trusted_by,
        registered_by=row.registered_by,
        registered_at=row.created_at,
        description=row.description,
    )


def _model_info(model: ModelRow) -> ModelInfo:
    versions = [_version_info(row) for row in model.versions]
    return ModelInfo(
        name=model.name,
        task=model.task,  # type: ignore[arg-type]
        description=model.description,
        active_version=model.active_version,
        latest_version=versions[-1].version if versions else None,
        created_at=model.created_at,
        versions=versions,
        rollout=RolloutState(**model.rollout) if model.rollout else None,
        policy=ServingPolicy(**(model.policy or {})),
    )
