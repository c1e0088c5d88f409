"""Rollouts move by their own checks: advance, promote, or abort."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.deploy.controller import evaluate
from backend.deploy.observe import StepObservation
from backend.schemas import RolloutChecks, RolloutState
from backend.workspace import Workspace
from tests.deploy_helpers import register_toy, retrained_toy, validity_with
from tests.helpers import TOY_ROW, make_settings, register_toy_models

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _rollout(phase: str = "canary", step: int = 0, paused: bool = False) -> RolloutState:
    steps = [10.0, 50.0]
    return RolloutState(
        candidate="2", mode="shadow", phase=phase, steps=steps,  # type: ignore[arg-type]
        step_index=-1 if phase == "shadow" else step,
        percent=0.0 if phase == "shadow" else steps[step], paused=paused,
        min_dwell_s=60, min_samples=100, checks=RolloutChecks(), started_by="t",
        started_at=NOW - timedelta(minutes=5), step_started_at=NOW - timedelta(seconds=61),
    )  # fmt: skip


def _seen(**changes: float) -> StepObservation:
    base = StepObservation(
        candidate_samples=150, active_samples=1500, candidate_p99_ms=12.0, active_p99_ms=10.0,
        compared=150, agreeing=149, attempts=150, failures=0, live_metric=0.9, labelled=80,
    )  # fmt: skip
    for name, value in changes.items():
        setattr(base, name, value)
    return base


def _verdict(rollout: RolloutState, seen: StepObservation, now: datetime = NOW) -> str:
    return evaluate(rollout, seen, (0.7, 1.0), now).action


def test_a_step_waits_for_its_dwell_time_and_samples() -> None:
    assert _verdict(_rollout(), _seen(candidate_samples=40)) == "wait"
    assert _verdict(_rollout(), _seen(), now=NOW - timedelta(seconds=30)) == "wait"
    verdict = evaluate(_rollout(), _seen(candidate_samples=40), (0.7, 1.0), NOW)
    assert "40 of 100 requests seen" in verdict.detail


def test_passing_steps_advance_and_the_last_one_promotes() -> None:
    assert _verdict(_rollout("shadow"), _seen()) == "advance"
    assert _verdict(_rollout("canary", 0), _seen()) == "advance"
    assert _verdict(_rollout("canary", 1), _seen()) == "promote"
    assert _verdict(_rollout("canary", 0, paused=True), _seen()) == "wait"


def test_a_step_whose_quality_was_not_judged_waits_by_default() -> None:
    unlabelled = _seen(live_metric=None, labelled=4, metric_note="needs 30 labelled predictions")
    verdict = evaluate(_rollout("canary", 1), unlabelled, (0.7, 1.0), NOW)
    assert verdict.action == "wait" and verdict.not_judged == []
    # The reason says what was not judged, and what the policy would have to say instead.
    assert "live_metric not judged: needs 30 labelled predictions" in verdict.detail
    assert "unjudged_quality" in verdict.detail and "'proceed'" in verdict.detail
    metric = next(c for c in verdict.checks if c.name == "live_metric")
    assert metric.passed is None  # never reported as a pass


@pytest.mark.parametrize(("step", "action"), [(0, "advance"), (1, "promote")])
def test_a_policy_that_proceeds_names_what_was_not_judged(step: int, action: str) -> None:
    unlabelled = _seen(live_metric=None, labelled=4, metric_note="needs 30 labelled predictions")
    verdict = evaluate(_rollout("canary", step), unlabelled, (0.7, 1.0), NOW, "proceed")
    assert verdict.action == action
    assert [c.name for c in verdict.not_judged] == ["live_metric"]
    assert "NOT judged: live_metric (not judged: needs 30 labelled" in verdict.detail
    assert "passed its checks" not in verdict.detail  # only those that could be judged
    # Other checks still waiting hold the step whatever the policy says.
    few = _seen(live_metric=None, candidate_samples=10)
    assert _verdict_with(few, "proceed") == "wait"


def _verdict_with(seen: StepObservation, unjudged: str) -> str:
    return evaluate(_rollout(), seen, (0.7, 1.0), NOW, unjudged).action  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("phase", "changes", "failed"),
    [
        ("canary", {"failures": 3}, "error_rate"),
        ("canary", {"candidate_p99_ms": 25.0}, "p99_latency"),
        ("shadow", {"agreeing": 100}, "agreement"),
        ("canary", {"live_metric": 0.5, "labelled": 80}, "live_metric"),
    ],
)
def test_a_failing_check_aborts(phase: str, changes: dict[str, float], failed: str) -> None:
    verdict = evaluate(_rollout(phase), _seen(**changes), (0.7, 1.0), NOW)
    assert verdict.action == "abort" and verdict.detail.startswith(f"{failed}:")
    assert [c.name for c in verdict.checks if c.passed is False] == [failed]


def test_a_candidate_that_keeps_failing_is_stopped_before_its_samples_are_in() -> None:
    early = _seen(candidate_samples=12, attempts=12, failures=6)
    assert _verdict(_rollout(), early, now=NOW - timedelta(seconds=50)) == "abort"
    # A paused rollout still stops a failing candidate.
    assert _verdict(_rollout(paused=True), _seen(failures=20)) == "abort"


@pytest.fixture
def fast_client(tmp_path, database_url: str) -> Iterator[tuple[Workspace, TestClient]]:  # type: ignore[no-untyped-def]
    workspace = Workspace.open(make_settings(tmp_path, database_url, rollout_check_interval_s=0.1))
    register_toy_models(workspace)
    with TestClient(create_app(workspace=workspace)) as client:
        yield workspace, client
    workspace.close()


def _drive_until(client: TestClient, headers: dict[str, str], done, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    """Send traffic until ``done()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    i = 0
    while not done():
        if time.monotonic() > deadline:
            status = client.get("/api/v1/models/toy/rollout", headers=headers).json()
            raise AssertionError(f"the rollout did not move in time: {status}")
        body = {"instances": [TOY_ROW], "entity_id": f"card-{i}"}
        assert client.post("/v1/models/toy:predict", json=body, headers=headers).status_code == 200
        i += 1


def test_a_rollout_advances_through_shadow_and_canary_to_promotion_by_itself(
    fast_client: tuple[Workspace, TestClient],
) -> None:
    workspace, client = fast_client
    headers = {"Authorization": f"Bearer {workspace.admin_token()}"}
    register_toy(workspace)
    # No labels arrive in this test: the policy lets steps move on without the quality check.
    policy = {"unjudged_quality": "proceed", "reason": "labels come weeks later"}
    assert client.put("/api/v1/models/toy/policy", json=policy, headers=headers).status_code == 200
    request = {
        "candidate": "2", "mode": "shadow", "steps": [20, 100], "min_dwell_s": 0,
        "min_samples": 10, "checks": {"min_agreement": 0.8, "max_p99_ratio": 50},
    }  # fmt: skip
    assert (
        client.put("/api/v1/models/toy/rollout", json=request, headers=headers).status_code == 200
    )
    status = client.get("/api/v1/models/toy/rollout", headers=headers).json()
    assert status["rollout"]["phase"] == "shadow" and status["verdict"] == "wait"
    assert {c["name"] for c in status["checks"]} >= {"samples", "agreement", "p99_latency"}

    _drive_until(client, headers, lambda: workspace.registry.get_model("toy").active_version == "2")
    events = client.get("/api/v1/audit?model=toy", headers=headers).json()["events"]
    moves = [(e["action"], e["actor"], e["details"].get("stage")) for e in reversed(events)]
    assert moves[-4:] == [
        ("rollout_start", "admin", "shadow"),
        ("rollout_step", "servedeck", "canary 20%"),
        ("rollout_step", "servedeck", "canary 100%"),
        ("promote", "servedeck", "canary 100%"),
    ]
    passed = [c for c in events[0]["details"]["checks"] if c["passed"]]
    assert {c["name"] for c in passed} >= {"samples", "dwell", "error_rate", "p99_latency"}
    # The audit trail does not call an unjudged check a pass: it names it, at every step.
    for event in events[:3]:
        assert event["details"]["not_judged"] == ["live_metric"]
        assert "NOT judged: live_metric" in event["reason"]
    assert "every step passed" not in events[0]["reason"]


def test_without_labels_a_step_waits_and_says_why(
    fast_client: tuple[Workspace, TestClient],
) -> None:
    workspace, client = fast_client
    headers = {"Authorization": f"Bearer {workspace.admin_token()}"}
    register_toy(workspace)
    request = {
        "candidate": "2", "mode": "canary", "steps": [50, 100], "min_dwell_s": 0,
        "min_samples": 10, "checks": {"max_p99_ratio": 50},
    }  # fmt: skip
    assert (
        client.put("/api/v1/models/toy/rollout", json=request, headers=headers).status_code == 200
    )

    def waits_only_for_labels() -> bool:
        status = client.get("/api/v1/models/toy/rollout", headers=headers).json()
        return status["verdict"] == "wait" and "unjudged_quality" in status["detail"]

    _drive_until(client, headers, waits_only_for_labels)
    # The controller itself, judging and acting now: it holds the step.
    judged = client.app.state.rollouts.step("toy")  # type: ignore[attr-defined]
    assert judged.verdict == "wait" and "live_metric not judged" in judged.detail
    model = workspace.registry.get_model("toy")
    assert model.active_version == "1" and model.rollout is not None
    assert model.rollout.percent == 50
    events = client.get("/api/v1/audit?model=toy", headers=headers).json()["events"]
    assert events[0]["action"] == "rollout_start"  # it never moved on


def test_a_shadow_that_disagrees_is_aborted_by_its_checks(
    fast_client: tuple[Workspace, TestClient],
) -> None:
    workspace, client = fast_client
    headers = {"Authorization": f"Bearer {workspace.admin_token()}"}
    contrary = retrained_toy(contrary=True)
    # Its own validity assets pass the gates; live, it disagrees with version 1.
    register_toy(workspace, contrary, validity=validity_with(contrary, acceptable_range=(0.0, 1.0)))
    # Latency is left out of it (a loaded machine slows the shadow): only agreement can fail.
    request = {
        "candidate": "2", "mode": "shadow", "min_dwell_s": 0, "min_samples": 10,
        "checks": {"max_p99_ratio": 100},
    }  # fmt: skip
    assert (
        client.put("/api/v1/models/toy/rollout", json=request, headers=headers).status_code == 200
    )
    _drive_until(client, headers, lambda: workspace.registry.get_model("toy").rollout is None)
    model = workspace.registry.get_model("toy")
    assert model.active_version == "1"
    event = client.get("/api/v1/audit?model=toy", headers=headers).json()["events"][0]
    assert (event["action"], event["actor"]) == ("abort", "servedeck")
    assert event["reason"].startswith("a check failed: agreement: same answer on")
    failed = [c["name"] for c in event["details"]["checks"] if c["passed"] is False]
    assert failed == ["agreement"]


def test_a_stale_verdict_does_not_move_a_changed_rollout(workspace: Workspace) -> None:
    from backend.deploy.service import SYSTEM
    from backend.errors import Conflict
    from backend.schemas import RolloutRequest
    from tests.deploy_helpers import ENGINEER

    register_toy(workspace)
    started = workspace.deploy.start_rollout(
        "toy", RolloutRequest(candidate="2", mode="canary"), ENGINEER
    )
    judged = started.rollout
    assert judged is not None
    workspace.deploy.pause("toy", "a person looks", ENGINEER)  # between verdict and action
    with pytest.raises(Conflict, match="changed meanwhile"):
        workspace.deploy.promote("toy", "checks passed", SYSTEM, expected=judged)
    assert workspace.registry.get_model("toy").active_version == "1"


def test_a_candidate_that_cannot_load_where_it_serves_aborts_its_rollout(
    fast_client: tuple[Workspace, TestClient],
) -> None:
    from backend.schemas import RolloutRequest
    from tests.deploy_helpers import ENGINEER

    workspace, client = fast_client
    headers = {"Authorization": f"Bearer {workspace.admin_token()}"}
    info = register_toy(workspace)
    # Started outside the server (as the command line does): the server loads it on its poll.
    workspace.deploy.start_rollout(
        "toy", RolloutRequest(candidate="2", mode="canary", steps=[50]), ENGINEER
    )
    path = workspace.registry.store.path_for(info.artifact_sha256)
    path.write_bytes(b"damaged after its checks")
    deadline = time.monotonic() + 20
    answers = []
    while workspace.registry.get_model("toy").rollout is not None:
        assert time.monotonic() < deadline, "the rollout was not aborted"
        response = client.post(
            "/v1/models/toy:predict", json={"instances": [TOY_ROW]}, headers=headers
        )
        answers.append((response.status_code, response.json().get("model_version")))
    assert set(answers) == {(200, "1")}  # no caller saw the broken candidate
    event = client.get("/api/v1/audit?model=toy", headers=headers).json()["events"][0]
    assert (event["action"], event["actor"]) == ("abort", "servedeck")
    assert "error_rate" in event["reason"]


def test_candidate_calls_of_every_worker_are_summed_for_the_step(workspace: Workspace) -> None:
    from backend.deploy.observe import step_calls
    from backend.schemas import RolloutRequest
    from backend.serving.candidates import CandidateCalls
    from tests.deploy_helpers import ENGINEER

    register_toy(workspace)
    rollout = workspace.deploy.start_rollout(
        "toy", RolloutRequest(candidate="2", mode="canary"), ENGINEER
    ).rollout
    assert rollout is not None
    first, second = CandidateCalls(), CandidateCalls()
    second.worker = "other-host:1"
    for failed in (False, False, True):
        first.record("toy", rollout, failed)
    for failed in (True, True):
        second.record("toy", rollout, failed)
    first.record("toy", None, failed=True)  # no rollout: nothing to count
    for worker in (first, second, first):  # saving again changes nothing
        worker.save(workspace.sessions)
    assert step_calls(workspace.sessions, "toy", rollout) == (5, 3)
    # A new step starts from zero.
    advanced = workspace.deploy.advance("toy", rollout, {}).rollout
    assert advanced is not None and step_calls(workspace.sessions, "toy", advanced) == (0, 0)


def test_pause_and_resume_keep_what_the_step_has_seen(workspace: Workspace) -> None:
    from backend.deploy.observe import step_calls
    from backend.schemas import RolloutRequest
    from backend.serving.candidates import CandidateCalls
    from tests.deploy_helpers import ENGINEER

    register_toy(workspace)
    rollout = workspace.deploy.start_rollout(
        "toy", RolloutRequest(candidate="2", mode="canary"), ENGINEER
    ).rollout
    assert rollout is not None
    calls = CandidateCalls()
    for failed in (False, False, True):
        calls.record("toy", rollout, failed)
    calls.save(workspace.sessions)
    paused = workspace.deploy.pause("toy", "look", ENGINEER).rollout
    resumed_state = workspace.deploy.resume("toy", "go on", ENGINEER)
    resumed = resumed_state.rollout
    assert paused is not None and resumed is not None and not resumed.paused
    # Same step, same start: its requests, failures and time count after resuming.
    assert resumed.step_key() == paused.step_key() == rollout.step_key()
    assert resumed.step_started_at == rollout.step_started_at
    assert step_calls(workspace.sessions, "toy", resumed) == (3, 1)
    assert resumed_state.event.details["step_started_at"] == rollout.step_started_at.isoformat()
