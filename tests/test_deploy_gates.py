"""Gates: a version that is not known to be good is never served, and the report says why."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from backend.db.tables import ModelVersionRow
from backend.deploy.gates import signature_changes
from backend.deploy.service import GatesRefused
from backend.schemas import FeatureSpec, GateReport
from backend.workspace import Workspace
from tests.deploy_helpers import ENGINEER, register_toy, retrained_toy, validity_with, without
from tests.helpers import TOY_SIGNATURE, toy_validity


def _refused(workspace: Workspace, version: str, **kwargs) -> GateReport:  # type: ignore[no-untyped-def]
    with pytest.raises(GatesRefused) as refused:
        workspace.deploy.deploy("toy", version, "try it", ENGINEER, **kwargs)
    assert workspace.registry.get_model("toy").active_version == "1"  # nothing changed
    return refused.value.report


def _outcomes(report: GateReport) -> dict[str, str]:
    return {gate.gate: gate.outcome for gate in report.gates}


def test_a_good_version_passes_every_gate_in_order(workspace: Workspace) -> None:
    register_toy(workspace)
    state = workspace.deploy.deploy("toy", "2", "retrained on more data", ENGINEER)
    assert state.active_version == "2" and state.report is not None
    assert [g.gate for g in state.report.gates] == [
        "artifact_hash", "load", "signature", "end_to_end", "metric", "held_out_policy",
    ]  # fmt: skip
    assert set(_outcomes(state.report).values()) == {"passed"}
    assert state.report.end_to_end_checked == 10 and state.report.metric == "accuracy"
    assert state.report.metric_value is not None and 0.7 <= state.report.metric_value <= 1.0
    assert state.event.action == "deploy" and state.event.from_version == "1"
    assert state.event.actor == "eng" and state.event.role == "engineer"


def test_a_modified_artifact_fails_the_hash_gate_and_nothing_else_runs(
    workspace: Workspace,
) -> None:
    info = register_toy(workspace)
    path = workspace.registry.store.path_for(info.artifact_sha256)
    data = path.read_bytes()
    path.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    report = _refused(workspace, "2")
    assert _outcomes(report) == {
        "artifact_hash": "failed", "load": "skipped", "signature": "passed",
        "end_to_end": "skipped", "metric": "skipped", "held_out_policy": "passed",
    }  # fmt: skip
    assert "modified after registration" in report.gates[0].detail


def test_an_artifact_that_cannot_load_fails_the_load_gate(workspace: Workspace) -> None:
    register_toy(workspace)
    # The record now claims the skops file is a trusted joblib pickle: it cannot load as one.
    with workspace.sessions.begin() as session:
        session.execute(
            update(ModelVersionRow)
            .where(ModelVersionRow.number == 2)
            .values(artifact_format="joblib", trusted_by="someone")
        )
    report = _refused(workspace, "2")
    assert _outcomes(report)["artifact_hash"] == "passed"
    assert _outcomes(report)["load"] == "failed" and "cannot load" in report.gates[1].detail


def _drop_count(inputs: dict[str, object]) -> dict[str, object]:
    return {name: value for name, value in inputs.items() if name != "count"}


def test_a_removed_feature_is_refused_unless_forced_with_a_reason(workspace: Workspace) -> None:
    model = retrained_toy(drop=("count",))
    full = toy_validity(model)
    validity = validity_with(
        model,
        end_to_end=[{**e.model_dump(), "inputs": _drop_count(e.inputs)} for e in full.end_to_end],
        confidence_set=[
            {**e.model_dump(), "inputs": _drop_count(e.inputs)} for e in full.confidence_set
        ],
    )
    register_toy(workspace, model, validity=validity, signature=without(TOY_SIGNATURE, "count"))
    report = _refused(workspace, "2")
    assert _outcomes(report)["signature"] == "failed"
    # The scoring gates still ran: one report shows everything.
    assert _outcomes(report)["end_to_end"] == "passed" and _outcomes(report)["metric"] == "passed"
    assert any("'count' was removed" in change for change in report.signature_changes)

    state = workspace.deploy.deploy(
        "toy", "2", "every caller moved to the new form", ENGINEER, force_signature=True
    )
    assert state.active_version == "2" and state.report is not None
    assert _outcomes(state.report)["signature"] == "forced"
    assert state.report.forced_reason == "every caller moved to the new form"


def test_wrong_end_to_end_outputs_are_listed_with_expected_and_actual(
    workspace: Workspace,
) -> None:
    model = retrained_toy()
    good = toy_validity(model)
    flipped = [
        {"inputs": e.inputs, "expected": 1 - e.expected if i < 3 else e.expected}
        for i, e in enumerate(good.end_to_end)
    ]
    register_toy(workspace, model, validity=validity_with(model, end_to_end=flipped))
    report = _refused(workspace, "2")
    assert _outcomes(report)["end_to_end"] == "failed"
    assert [m.index for m in report.end_to_end_mismatches] == [0, 1, 2]
    first = report.end_to_end_mismatches[0]
    assert first.expected == 1 - first.actual and first.inputs == good.end_to_end[0].inputs
    assert "3 of 10 examples" in report.gates[3].detail


def test_a_metric_outside_its_range_is_refused_with_the_value(workspace: Workspace) -> None:
    model = retrained_toy()
    strict = validity_with(model, acceptable_range=(0.99, 1.0))
    register_toy(workspace, model, validity=strict)
    report = _refused(workspace, "2")
    assert _outcomes(report)["metric"] == "failed"
    assert report.metric_value is not None and report.metric_value < 0.99
    assert report.acceptable_range == (0.99, 1.0)


def test_every_report_is_kept_per_version(workspace: Workspace) -> None:
    model = retrained_toy()
    register_toy(
        workspace,
        model,
        validity=validity_with(model, acceptable_range=(0.99, 1.0)),
    )
    _refused(workspace, "2")
    register_toy(workspace)
    workspace.deploy.deploy("toy", "3", "better", ENGINEER)
    reports = workspace.deploy.gate_reports("toy")
    assert [(r.version, r.passed) for r in reports] == [("3", True), ("2", False), ("1", True)]
    assert [r.version for r in workspace.deploy.gate_reports("toy", "2")] == ["2"]
    audit = [(e.action, e.to_version) for e in workspace.deploy.model_info("toy").history]
    assert audit == [("deploy", "1"), ("deploy", "3")]


def test_signature_differences_are_sorted_into_breaking_and_compatible() -> None:
    old = TOY_SIGNATURE
    new = [
        FeatureSpec(name="amount", type="int"),  # retyped
        FeatureSpec(name="count", type="int", min=0, max=99),  # range changed
        FeatureSpec(name="country", type="category", categories=["DE", "FR"]),
        FeatureSpec(name="online", type="bool"),
        FeatureSpec(name="note", type="string", required=True),  # became required
        FeatureSpec(name="channel", type="string", required=False),  # new, optional
        FeatureSpec(name="merchant", type="string"),  # new, required
    ]
    breaking, compatible = signature_changes(old, new)
    assert breaking == [
        "feature 'amount' changed type from float to int",
        "feature 'note' became required: callers may leave it out",
        "feature 'merchant' is new and required: callers do not send it",
    ]
    assert compatible == [
        "feature 'count' range changed from [0.0, None] to [0.0, 99.0]",
        "feature 'country' has different categories",
        "feature 'channel' is new and optional",
    ]


def test_an_undefined_metric_is_unavailable_not_nan() -> None:
    from backend.registry import Prediction
    from backend.registry.metrics import MetricUnavailable, score_metric

    # Three classes, one absent from the labels: scikit-learn answers NaN here.
    prediction = Prediction([0, 1, 0], [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1]])
    with pytest.raises(MetricUnavailable, match="undefined"):
        score_metric("roc_auc", [0, 1, 0], prediction, [0, 1, 2])


def test_an_alert_counts_until_the_version_is_deployed_again(workspace: Workspace) -> None:
    register_toy(workspace)
    workspace.deploy.deploy("toy", "2", "new", ENGINEER)
    alerts = workspace.alerts
    assert alerts.active("toy", "2", "live_metric") is None
    alert, raised = alerts.raise_once(
        "toy", "2", "live_metric", severity="critical", title="low", explanation="", details={}
    )
    assert raised and alerts.active("toy", "2", "live_metric") == alert
    workspace.deploy.rollback("toy", "back", ENGINEER)
    assert alerts.active("toy", "2", "live_metric") == alert  # a rollback does not clear it
    workspace.deploy.deploy("toy", "2", "fixed the labels", ENGINEER)
    assert alerts.active("toy", "2", "live_metric") is None  # it serves afresh
    resolved = alerts.get(alert.id)
    assert resolved.status == "resolved" and "judged afresh" in resolved.resolution


def test_a_rollback_skips_a_version_that_raised_a_quality_alert(workspace: Workspace) -> None:
    register_toy(workspace)
    register_toy(workspace)
    workspace.deploy.deploy("toy", "2", "new", ENGINEER)
    workspace.deploy.record_alert("toy", "2", "live accuracy low", {})
    workspace.deploy.deploy("toy", "3", "replaces the bad one", ENGINEER)
    # 2 served before 3, but its quality fell while it did: back to 1, the last good one.
    option = workspace.deploy.model_info("toy").rollback
    assert option is not None and option.target == "1"
    assert [s.version for s in option.skipped] == ["2"]
    assert "quality alert" in option.skipped[0].why
    assert workspace.deploy.rollback("toy", "3 misbehaves", ENGINEER).active_version == "1"
    # Deployed again on purpose, a version counts as good again.
    workspace.deploy.deploy("toy", "2", "labels were wrong, 2 is fine", ENGINEER)
    workspace.deploy.deploy("toy", "3", "try again", ENGINEER)
    option = workspace.deploy.model_info("toy").rollback
    assert option is not None and (option.target, option.skipped) == ("2", [])


def test_the_good_versions_follow_deployments_rollbacks_and_alerts() -> None:
    from datetime import UTC, datetime

    from backend.deploy.audit import good_versions
    from backend.schemas import AuditEvent

    def event(action: str, before: str | None, after: str) -> AuditEvent:
        return AuditEvent(
            id=0, at=datetime.now(UTC), actor="t", role="admin", model="m", action=action,
            from_version=before, to_version=after, reason="",
        )  # fmt: skip

    chain = [event("deploy", None, "1"), event("deploy", "1", "2"), event("deploy", "2", "3")]
    assert good_versions(chain) == ["1", "2", "3"]
    assert good_versions([*chain, event("rollback", "3", "2")]) == ["1", "2"]
    alerted = [*chain[:2], event("metric_alert", None, "2"), chain[2]]
    assert good_versions(alerted) == ["1", "3"]
    # A rollback that skipped the bad version leaves neither on the way back.
    back = [*alerted, event("rollback", "3", "1")]
    assert good_versions(back) == ["1"]
    # Served before any recorded deployment: the first event's from_version counts.
    assert good_versions([event("deploy", "4", "5")]) == ["4", "5"]


def test_a_deployment_reads_the_version_it_gates_once(workspace: Workspace) -> None:
    register_toy(workspace)
    registry = workspace.registry
    reads: list[tuple[str, str]] = []
    original = registry.get_version

    def counted(model: str, version: str):  # type: ignore[no-untyped-def]
        reads.append((model, version))
        return original(model, version)

    registry.get_version = counted  # type: ignore[method-assign]
    try:
        workspace.deploy.deploy("toy", "2", "new", ENGINEER)
    finally:
        registry.get_version = original  # type: ignore[method-assign]
    # The candidate once (kept for the gates), the serving version once (its callers' signature).
    assert sorted(reads) == [("toy", "1"), ("toy", "2")]


def test_a_stale_change_is_refused_and_changes_nothing(workspace: Workspace) -> None:
    from backend.deploy.changes import Change, apply_change, read_model_state
    from backend.errors import Conflict

    register_toy(workspace)
    before = read_model_state(workspace.sessions, "toy")
    workspace.deploy.deploy("toy", "2", "new", ENGINEER)
    stale = Change("deploy", ENGINEER, before.active, "1", "late", {"active_version": "1"})
    with pytest.raises(Conflict, match="changed while this deploy"):
        apply_change(workspace.sessions, "toy", before.generation, stale)
    after = read_model_state(workspace.sessions, "toy")
    assert after.active == "2" and after.generation == before.generation + 1
    with pytest.raises(Conflict, match="no rollout is running"):
        after.running_rollout("toy")
