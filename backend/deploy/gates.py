"""The gates a version passes before it may serve, in order, each reported pass or fail.

1. artifact_hash: the stored file still has the sha256 recorded at registration.
2. load: it loads (skops with its reviewed types, or pickle with recorded trust).
3. signature: today's callers can still call it (no feature removed, retyped or newly
   required), unless forced with a reason.
4. end_to_end: every example of the end-to-end set scores exactly as expected (regression:
   within the tolerance declared with the assets).
5. metric: the metric on the confidence set lies inside the acceptable range.
6. held_out_policy: the model's held-out policy fits the version (its answers are the
   version's classes, its rules name the version's features, a fallback is not the version
   itself), so that held-out traffic is never answered with what the model could not answer.

A gate that cannot run because an earlier one failed is "skipped"; the signature gate's
failure does not stop the scoring gates, so one report shows everything that is wrong.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from backend.deploy.held_out import held_out_fitting
from backend.errors import ArtifactIntegrityError, InputError, NotFound
from backend.registry import LoadedVersion, Registry
from backend.registry.metrics import MetricUnavailable, score_metric
from backend.schemas import (
    EndToEndMismatch,
    FeatureSpec,
    GateName,
    GatePurpose,
    GateReport,
    GateResult,
    HeldOutSettings,
    ModelVersionInfo,
)

GATE_ORDER: tuple[GateName, ...] = (
    "artifact_hash",
    "load",
    "signature",
    "end_to_end",
    "metric",
    "held_out_policy",
)
# Mismatching end-to-end rows kept in a report: enough to see the pattern, bounded in size.
MAX_MISMATCHES_REPORTED = 50


@dataclass
class GateRun:
    report: GateReport
    loaded: LoadedVersion | None


def signature_changes(
    callers: Sequence[FeatureSpec], candidate: Sequence[FeatureSpec]
) -> tuple[list[str], list[str]]:
    """(breaking, compatible) differences between what callers send and what the candidate takes.

    Breaking: a feature removed (the candidate refuses unknown features), retyped, or newly
    required without a default (callers do not send it). Compatible but worth knowing: a new
    optional feature, changed categories or ranges.
    """
    old = {spec.name: spec for spec in callers}
    new = {spec.name: spec for spec in candidate}
    breaking: list[str] = []
    compatible: list[str] = []
    for name, spec in old.items():
        if name not in new:
            breaking.append(f"feature {name!r} was removed: callers that send it are refused")
            continue
        replacement = new[name]
        if replacement.type != spec.type:
            breaking.append(f"feature {name!r} changed type from {spec.type} to {replacement.type}")
            continue  # its old range or categories say nothing about the new type
        if replacement.required and not spec.required:
            breaking.append(f"feature {name!r} became required: callers may leave it out")
        if spec.categories != replacement.categories:
            compatible.append(f"feature {name!r} has different categories")
        if (spec.min, spec.max) != (replacement.min, replacement.max):
            compatible.append(
                f"feature {name!r} range changed from [{spec.min}, {spec.max}] "
                f"to [{replacement.min}, {replacement.max}]"
            )
    for name, spec in new.items():
        if name in old:
            continue
        if spec.required:
            breaking.append(f"feature {name!r} is new and required: callers do not send it")
        else:
            compatible.append(f"feature {name!r} is new and optional")
    return breaking, compatible


def run_gates(
    registry: Registry,
    info: ModelVersionInfo,
    model: str,
    *,
    purpose: GatePurpose,
    checked_by: str,
    callers_signature: Sequence[FeatureSpec] | None,
    force_reason: str | None = None,
    held_out: HeldOutSettings | None = None,
) -> GateRun:
    """Check one registered version; never raises for a bad version, the report says why."""
    results: dict[GateName, GateResult] = {}
    report = GateReport(
        model=model,
        version=info.version,
        purpose=purpose,
        passed=False,
        checked_by=checked_by,
        checked_at=datetime.now(UTC),
        gates=[],
        metric=info.validity.metric,
        acceptable_range=info.validity.acceptable_range,
    )

    def record(gate: GateName, passed: bool, detail: str) -> None:
        results[gate] = GateResult(
            gate=gate, outcome="passed" if passed else "failed", detail=detail
        )

    loaded: LoadedVersion | None = None
    try:
        loaded = registry.load(model, info.version)
    except ArtifactIntegrityError as exc:
        if exc.field == "artifact_sha256":  # missing or modified file
            record("artifact_hash", False, exc.reason)
        else:  # the file is intact but may not be loaded (no recorded trust)
            record("artifact_hash", True, f"sha256 {info.artifact_sha256[:12]}… matches")
            record("load", False, exc.reason)
    except Exception as exc:  # any loader failure means the artifact cannot serve
        record("artifact_hash", True, f"sha256 {info.artifact_sha256[:12]}… matches")
        record("load", False, f"cannot load the {info.artifact_format} file: {exc}")
    else:
        record("artifact_hash", True, f"sha256 {info.artifact_sha256[:12]}… matches")
        record("load", True, f"loaded {type(loaded.estimator).__name__}")

    _signature_gate(report, results, info, callers_signature, force_reason)
    _held_out_gate(results, registry, model, info, held_out)
    if loaded is not None:
        _end_to_end_gate(report, results, loaded, info)
        _metric_gate(report, results, loaded, info)

    report.gates = [
        results.get(gate)
        or GateResult(gate=gate, outcome="skipped", detail="an earlier gate failed")
        for gate in GATE_ORDER
    ]
    report.passed = all(result.outcome in ("passed", "forced") for result in report.gates)
    return GateRun(report, loaded if report.passed else None)


def _held_out_gate(
    results: dict[GateName, GateResult],
    registry: Registry,
    model: str,
    info: ModelVersionInfo,
    held_out: HeldOutSettings | None,
) -> None:
    if held_out is None or held_out.share_percent == 0:
        detail = "no traffic is held out"
        results["held_out_policy"] = GateResult(
            gate="held_out_policy", outcome="passed", detail=detail
        )
        return
    try:
        held_out_fitting(registry, model, info, held_out)
    except (InputError, NotFound) as exc:
        detail = (
            f"the held-out {held_out.policy.kind} policy does not fit version {info.version} "
            f"({exc.field}: {exc.reason}): change the policy or turn held-out off first "
            f"(PUT or DELETE /api/v1/models/{model}/held-out)"
        )
        outcome: Literal["passed", "failed"] = "failed"
    else:
        detail = f"the held-out {held_out.policy.kind} policy fits version {info.version}"
        outcome = "passed"
    results["held_out_policy"] = GateResult(gate="held_out_policy", outcome=outcome, detail=detail)


def _signature_gate(
    report: GateReport,
    results: dict[GateName, GateResult],
    info: ModelVersionInfo,
    callers_signature: Sequence[FeatureSpec] | None,
    force_reason: str | None,
) -> None:
    if callers_signature is None:
        results["signature"] = GateResult(
            gate="signature", outcome="passed", detail="no version serves yet: no callers to break"
        )
        return
    breaking, compatible = signature_changes(callers_signature, info.signature)
    report.signature_changes = breaking + compatible
    if not breaking:
        detail = "compatible with today's callers"
        if compatible:
            detail += f" ({len(compatible)} compatible change{'s' if len(compatible) > 1 else ''})"
        results["signature"] = GateResult(gate="signature", outcome="passed", detail=detail)
    elif force_reason:
        report.forced_reason = force_reason
        results["signature"] = GateResult(
            gate="signature",
            outcome="forced",
            detail=f"{len(breaking)} breaking change(s) accepted: {force_reason}",
        )
    else:
        results["signature"] = GateResult(
            gate="signature",
            outcome="failed",
            detail="; ".join(breaking) + " (force with a reason to accept)",
        )


def _end_to_end_gate(
    report: GateReport,
    results: dict[GateName, GateResult],
    loaded: LoadedVersion,
    info: ModelVersionInfo,
) -> None:
    examples = info.validity.end_to_end
    try:
        rows = [loaded.signature.validate_row(e.inputs, "end_to_end") for e in examples]
        actual = loaded.predict(rows).labels
    except Exception as exc:
        results["end_to_end"] = GateResult(
            gate="end_to_end", outcome="failed", detail=f"the model failed to score them: {exc}"
        )
        return
    tolerance = info.validity.tolerance
    mismatches = [
        EndToEndMismatch(index=i, inputs=e.inputs, expected=e.expected, actual=value)
        for i, (e, value) in enumerate(zip(examples, actual, strict=True))
        if not _matches(e.expected, value, info.task, tolerance)
    ]
    report.end_to_end_checked = len(examples)
    report.end_to_end_mismatches = mismatches[:MAX_MISMATCHES_REPORTED]
    if mismatches:
        results["end_to_end"] = GateResult(
            gate="end_to_end",
            outcome="failed",
            detail=f"{len(mismatches)} of {len(examples)} examples scored differently",
        )
    else:
        how = "exactly" if info.task == "classification" else f"within {tolerance:g}"
        results["end_to_end"] = GateResult(
            gate="end_to_end",
            outcome="passed",
            detail=f"all {len(examples)} examples scored {how} as expected",
        )


def _matches(expected: Any, actual: Any, task: str, tolerance: float) -> bool:
    if task == "regression":
        try:
            return math.isclose(float(actual), float(expected), rel_tol=1e-12, abs_tol=tolerance)
        except (TypeError, ValueError):
            return False
    return bool(expected == actual)


def _metric_gate(
    report: GateReport,
    results: dict[GateName, GateResult],
    loaded: LoadedVersion,
    info: ModelVersionInfo,
) -> None:
    validity = info.validity
    try:
        rows = [
            loaded.signature.validate_row(e.inputs, "confidence_set")
            for e in validity.confidence_set
        ]
        prediction = loaded.predict(rows)
        value = score_metric(
            validity.metric,
            [e.label for e in validity.confidence_set],
            prediction,
            loaded.class_labels,
        )
    except (MetricUnavailable, ValueError) as exc:
        results["metric"] = GateResult(
            gate="metric", outcome="failed", detail=f"{validity.metric} cannot be computed: {exc}"
        )
        return
    except Exception as exc:
        results["metric"] = GateResult(
            gate="metric", outcome="failed", detail=f"the model failed to score the set: {exc}"
        )
        return
    report.metric_value = value
    low, high = validity.acceptable_range
    inside = low <= value <= high and math.isfinite(value)
    results["metric"] = GateResult(
        gate="metric",
        outcome="passed" if inside else "failed",
        detail=f"{validity.metric} = {value:.4g} on {len(validity.confidence_set)} examples, "
        f"acceptable [{low:g}, {high:g}]",
    )
