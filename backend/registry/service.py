"""Registering, describing and loading model versions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import AuditEventRow, DriftReferenceRow, ModelRow, ModelVersionRow
from backend.errors import InputError, NotFound, ServeDeckError
from backend.registry.artifacts import ArtifactStore, detect_format, untrusted_skops_types
from backend.registry.constraints import typed_constraints
from backend.registry.lineage import LineageDeclaration, LineageOutcome
from backend.registry.loaded import LoadedVersion
from backend.registry.names import MODEL_NAME_RULE, is_model_name
from backend.registry.reference import (
    ReferenceData,
    ReferenceSummariser,
    confidence_set_reference,
    plain_labels,
    rows_for_probe,
    training_reference,
)
from backend.registry.sandbox import ModelProbe, shared_probe
from backend.registry.signature import CompiledSignature, infer_signature
from backend.schemas import (
    FeatureSource,
    FeatureSpec,
    ModelInfo,
    ModelVersionInfo,
    RolloutState,
    ServingPolicy,
    ValidityAssets,
)

MAX_VERSION_DIGITS = 9
MAX_CLASS_NAME_LENGTH = 64
# Larger files are refused before anything reads them (HTTP bodies are limited lower still).
MAX_ARTIFACT_BYTES = 2 * 2**30


@dataclass(frozen=True)
class TrustRecord:
    """Who trusted a pickle to run code in the server, and why: an audit event."""

    actor: str
    role: str
    reason: str
    fmt: str
    sha256: str

    def audit_event(self, model: str, version: str) -> AuditEventRow:
        return AuditEventRow(
            actor=self.actor,
            role=self.role,
            model=model,
            action="trust_pickle",
            to_version=version,
            reason=self.reason,
            details={"artifact_format": self.fmt, "artifact_sha256": self.sha256},
        )


def parse_version(version: str) -> int:
    """A version number as a path carries it: ASCII digits only ("²" is a digit to Python),
    short enough for the database's integer column; "01" and "1" are the same version."""
    if not (version.isascii() and version.isdigit()) or len(version) > MAX_VERSION_DIGITS:
        raise NotFound(f"versions are numbered 1, 2, ...; got {version[:40]!r}", "version")
    return int(version)


class Registry:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        store: ArtifactStore,
        probe: ModelProbe = shared_probe,
        summarise_reference: ReferenceSummariser | None = None,
    ):
        self.sessions = sessions
        self.store = store
        self.probe = probe
        # Handed in by the workspace (the summaries are monitoring's; storing them is ours).
        self.summarise_reference = summarise_reference

    # ------------------------------------------------------------------ registration

    def register_version(
        self,
        name: str,
        artifact: bytes,
        *,
        filename: str,
        validity: ValidityAssets,
        registered_by: str,
        registered_role: str = "admin",
        signature: Sequence[FeatureSpec] | None = None,
        training_frame: pd.DataFrame | None = None,
        training_target: str | None = None,
        task: str | None = None,
        description: str = "",
        trust_pickle: bool = False,
        trust_reason: str = "",
        trusted_types: Sequence[str] = (),
        example_input: dict[str, Any] | None = None,
        class_names: Mapping[str, str] | None = None,
        lineage: LineageDeclaration | None = None,
    ) -> ModelVersionInfo:
        """Check, store and number a model file.

        The file is loaded only in the model probe's process (probe.py): a pickle's code, a
        crash or a memory bomb there never reaches this process. The caller decides who may
        trust a pickle; here it must come with a reason, recorded in the audit trail.

        ``training_frame`` (with its label column ``training_target``, when it has one) is the
        version's reference: drift compares live traffic with it and the performance estimate
        calibrates on it; without it the confidence set stands in (reference.py).

        ``lineage``: the inputs that other models' outputs produce; a feedback loop they close
        is refused (409 naming it) unless forced with a reason, recorded in the audit trail.
        """
        _check_model_name(name)
        lineage = lineage or LineageDeclaration()
        if len(artifact) > MAX_ARTIFACT_BYTES:
            raise InputError(
                f"the model file has {len(artifact)} bytes; the limit is {MAX_ARTIFACT_BYTES}",
                "artifact",
                status=413,
            )
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
                "or pass --trust-pickle (HTTP: trust_pickle=true) with a reason to accept the "
                "risk",
                "artifact",
            )
        elif not trust_reason.strip():
            raise InputError(
                "trusting a pickle needs a reason (why this file is safe to run), kept in the "
                "audit trail",
                "trust_reason",
            )

        if signature is None and training_frame is not None:
            features = training_frame
            if training_target is not None and training_target in training_frame.columns:
                features = training_frame.drop(columns=[training_target])
            signature = infer_signature(features)
        if signature is not None:
            lineage.check_features([spec.model_dump() for spec in signature])
        with self.sessions() as session:
            lineage.check(session, name)  # a refused loop is said before the probe runs
        reference = self._reference(training_frame, training_target, signature, validity)
        with (
            self.store.staged(artifact) as staged,
            self.store.staged(rows_for_probe(reference.sample()[0])) as reference_rows,
        ):
            facts = self.probe.inspect(
                staged,
                fmt,
                accepted_types,
                signature=[spec.model_dump(mode="json") for spec in signature]
                if signature
                else None,
                task=task,
                validity=validity.model_dump(mode="json"),
                example_input=example_input,
                reference_rows_path=str(reference_rows),
            )
        lineage.check_features(facts["signature"])
        reference_row = self._reference_row(
            reference, facts.pop("reference_outputs", None), facts["class_labels"]
        )
        digest = self.store.put(artifact)
        trust = (
            None
            if fmt == "skops"
            else TrustRecord(registered_by, registered_role, trust_reason.strip(), fmt, digest)
        )
        for _attempt in range(3):
            try:
                return self._insert_version(
                    name=name,
                    task=facts["task"],
                    description=description,
                    trust=trust,
                    reference=reference_row,
                    lineage=lineage,
                    registered_role=registered_role,
                    row_values={
                        "artifact_sha256": digest,
                        "artifact_format": fmt,
                        "artifact_size": len(artifact),
                        "trusted_by": registered_by if fmt != "skops" else None,
                        "skops_trusted_types": accepted_types,
                        "task": facts["task"],
                        "class_labels": facts["class_labels"],
                        "class_names": _class_names(facts["class_labels"], class_names),
                        "signature": facts["signature"],
                        "example_input": facts["example_input"],
                        "validity": validity.model_dump(mode="json"),
                        "description": description,
                        "registered_by": registered_by,
                    },
                )
            except IntegrityError:
                continue  # another registration took the same number; number again
        raise ServeDeckError("could not allocate a version number; try again", status=503)

    def _reference_row(
        self,
        reference: ReferenceData,
        outputs: dict[str, Any] | None,
        class_labels: list[Any] | None,
    ) -> DriftReferenceRow | None:
        """The reference's summary (features, and the model's outputs on the sample) and the
        sample's true labels with the model's probabilities, as stored; None without a
        summariser (a registry made for a test of registration alone)."""
        if self.summarise_reference is None:
            return None
        labelled: str | None = None
        if outputs is not None:
            truth = plain_labels(reference.sample()[1])
            if truth is not None:
                labelled = json.dumps(
                    {
                        "labels": truth,
                        "predictions": outputs["labels"],
                        "probabilities": outputs.get("probabilities"),
                        "class_labels": class_labels,
                    },
                    default=str,
                )
        summary = self.summarise_reference(reference.frame, outputs)
        return DriftReferenceRow(
            summary=json.dumps(summary),
            rows=len(reference.frame),
            source=reference.source,
            labelled_outputs=labelled,
        )

    @staticmethod
    def _reference(
        training_frame: pd.DataFrame | None,
        training_target: str | None,
        signature: Sequence[FeatureSpec] | None,
        validity: ValidityAssets,
    ) -> ReferenceData:
        if training_frame is not None and signature:
            return training_reference(training_frame, signature, training_target)
        return confidence_set_reference(validity, signature)

    def _insert_version(
        self,
        *,
        name: str,
        task: str,
        description: str,
        trust: TrustRecord | None,
        reference: DriftReferenceRow | None,
        lineage: LineageDeclaration,
        registered_role: str,
        row_values: dict[str, Any],
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
            # Checked again in the insert's transaction: a registration since the first check
            # may have closed a loop with this one.
            outcome: LineageOutcome = lineage.check(session, name)
            row = ModelVersionRow(
                model_id=model.id, number=number, feature_sources=lineage.rows(), **row_values
            )
            session.add(row)
            forced = outcome.audit_event(
                name, str(number), row_values["registered_by"], registered_role, lineage.reason
            )
            if forced is not None:
                session.add(forced)
            if trust is not None:
                # In the registration's transaction: no trusted pickle without its record.
                session.add(trust.audit_event(name, str(number)))
            if reference is not None:
                # In the same transaction: the log writer counts a version's traffic on its
                # reference's bins from its first prediction.
                session.add(
                    DriftReferenceRow(
                        model=name,
                        version=str(number),
                        summary=reference.summary,
                        rows=reference.rows,
                        source=reference.source,
                        labelled_outputs=reference.labelled_outputs,
                    )
                )
            session.flush()
            return _version_info(row).model_copy(update={"registration_warnings": outcome.warnings})

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

    def labelled_reference(self, name: str, version: str) -> dict[str, Any] | None:
        """The reference sample's true labels with the version's predictions and probabilities
        on it, as registration stored them, and its ``source``; None without labels."""
        with self.sessions() as session:
            row = session.get(DriftReferenceRow, (name, version))
            if row is None or row.labelled_outputs is None:
                return None
            stored: dict[str, Any] = json.loads(row.labelled_outputs)
            stored["source"] = row.source
            return stored

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

    def token_constraints(
        self, models: Sequence[str] | None, constraints: Mapping[str, Sequence[Any]]
    ) -> dict[str, list[Any]]:
        """A client token's constraints typed by its models' signatures (those of the
        serving version, else the newest), refused if one could never apply."""
        if not constraints:
            return {}
        signatures: dict[str, list[FeatureSpec]] = {}
        with self.sessions() as session:
            for name in models or ():
                model = session.scalar(select(ModelRow).where(ModelRow.name == name))
                if model is None or not model.versions:
                    raise InputError(
                        f"no model named {name!r}: constraints are checked against its features",
                        "models",
                    )
                number = int(model.active_version or model.versions[-1].number)
                row = next(v for v in model.versions if v.number == number)
                signatures[name] = [FeatureSpec(**spec) for spec in row.signature]
        return typed_constraints(signatures, constraints)

    def serving_states(
        self,
    ) -> dict[str, tuple[str | None, int, dict[str, Any] | None, dict[str, Any] | None]]:
        """Model name -> (active version, generation, rollout, held-out settings): polled by
        every worker."""
        with self.sessions() as session:
            rows = session.execute(
                select(
                    ModelRow.name,
                    ModelRow.active_version,
                    ModelRow.state_generation,
                    ModelRow.rollout,
                    ModelRow.held_out,
                )
            ).all()
            return {
                name: (active, generation, rollout, held_out)
                for name, active, generation, rollout, held_out in rows
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
    if not is_model_name(name):
        raise InputError(MODEL_NAME_RULE, "name")


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
        feature_sources=[
            FeatureSource(
                feature=source.feature,
                model=source.source_model,
                output=source.source_output,  # type: ignore[arg-type]
            )
            for source in row.feature_sources
        ],
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
