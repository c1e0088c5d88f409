"""The deployment API: deploy, rollback, rollouts and the audit trail, as clients use them."""

from __future__ import annotations

import time

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from backend.cli import main as cli_main
from backend.workspace import Workspace
from tests.deploy_helpers import register_toy
from tests.helpers import TOY_ROW, logged_rows


def _deploy(client: TestClient, headers: dict[str, str], version: str, reason: str = "better"):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/models/toy/deploy", json={"version": version, "reason": reason}, headers=headers
    )


def _predict(client: TestClient, headers: dict[str, str], entity: str | None = None) -> dict:  # type: ignore[type-arg]
    body: dict = {"instances": [TOY_ROW]}  # type: ignore[type-arg]
    if entity is not None:
        body["entity_id"] = entity
    response = client.post("/v1/models/toy:predict", json=body, headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_deploy_then_rollback_then_nothing_left_to_roll_back(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    register_toy(workspace)
    assert _deploy(client, admin_headers, "2").status_code == 200
    assert _predict(client, admin_headers)["model_version"] == "2"
    assert _deploy(client, admin_headers, "3").status_code == 200
    assert _predict(client, admin_headers)["model_version"] == "3"

    back = client.post(
        "/api/v1/models/toy/rollback", json={"reason": "v3 misfires"}, headers=admin_headers
    )
    assert back.status_code == 200, back.text
    state = back.json()
    assert state["active_version"] == "2" and state["event"]["from_version"] == "3"
    assert state["report"]["purpose"] == "rollback" and state["report"]["passed"]
    assert _predict(client, admin_headers)["model_version"] == "2"
    # The next rollback goes further back (1), not forth to the version just left (3).
    again = client.post(
        "/api/v1/models/toy/rollback", json={"reason": "v2 too"}, headers=admin_headers
    )
    assert again.json()["active_version"] == "1"
    last = client.post("/api/v1/models/toy/rollback", json={"reason": "?"}, headers=admin_headers)
    assert last.status_code == 409 and last.json()["field"] == "version"
    model = client.get("/api/v1/models/toy", headers=admin_headers).json()
    # The refusal and the model's state say the same: why, and what makes a rollback possible.
    assert model["rollback"]["target"] is None
    assert last.json()["reason"] == model["rollback"]["unavailable_reason"]
    assert "version 1 is the first version toy served" in last.json()["reason"]

    assert [(e["action"], e["from_version"], e["to_version"]) for e in model["history"]] == [
        ("deploy", None, "1"), ("deploy", "1", "2"), ("deploy", "2", "3"),
        ("rollback", "3", "2"), ("rollback", "2", "1"),
    ]  # fmt: skip


def test_a_refused_deployment_answers_409_with_the_gate_report(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    from tests.deploy_helpers import retrained_toy, validity_with

    model = retrained_toy()
    register_toy(
        workspace,
        model,
        validity=validity_with(model, acceptable_range=(0.99, 1.0)),
    )
    response = _deploy(client, admin_headers, "2")
    assert response.status_code == 409
    body = response.json()
    assert "failed the metric gate" in body["error"] and body["field"] == "version"
    gates = {g["gate"]: g["outcome"] for g in body["gate_report"]["gates"]}
    assert gates["metric"] == "failed" and gates["end_to_end"] == "passed"
    events = client.get("/api/v1/audit?model=toy", headers=admin_headers).json()["events"]
    assert events[0]["action"] == "deploy_refused" and events[0]["details"]["failed_gates"] == [
        "metric"
    ]


@pytest.mark.parametrize(
    ("body", "status", "field", "words"),
    [
        ({"version": "9", "reason": "r"}, 404, "version", "has no version 9"),
        ({"version": "1", "reason": "r"}, 409, "version", "already serving"),
        ({"version": "x", "reason": "r"}, 404, "version", "numbered"),
        ({"version": "2"}, 422, "reason", "required"),
        ({"version": "2", "reason": ""}, 422, "reason", "at least 1 character"),
    ],
)
def test_deploy_refuses_bad_requests_with_what_to_do(  # type: ignore[no-untyped-def]
    workspace: Workspace, client: TestClient, admin_headers, body, status, field, words
) -> None:
    register_toy(workspace)
    response = client.post("/api/v1/models/toy/deploy", json=body, headers=admin_headers)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field and words in response.json()["error"]


def test_only_engineers_and_admins_change_deployments_support_reads(
    workspace: Workspace, client: TestClient
) -> None:
    register_toy(workspace)
    support = {"Authorization": f"Bearer {workspace.tokens.create('help', 'support')}"}
    engineer = {"Authorization": f"Bearer {workspace.tokens.create('eng', 'engineer')}"}
    assert _deploy(client, support, "2").status_code == 403
    assert (
        client.post(
            "/api/v1/models/toy/rollback", json={"reason": "r"}, headers=support
        ).status_code
        == 403
    )
    assert client.get("/api/v1/audit", headers=support).status_code == 200
    assert client.get("/api/v1/models/toy/gate-reports", headers=support).status_code == 200
    assert _deploy(client, engineer, "2").status_code == 200
    event = client.get("/api/v1/audit", headers=support).json()["events"][0]
    assert (event["actor"], event["role"], event["action"]) == ("eng", "engineer", "deploy")
    assert client.get("/api/v1/audit").status_code == 401


def test_the_audit_trail_is_append_only_in_the_database(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    _deploy(client, admin_headers, "2")
    for statement in (
        "UPDATE audit_events SET reason = 'nothing happened'",
        "DELETE FROM audit_events",
    ):
        with pytest.raises(DBAPIError, match="append-only"), workspace.engine.begin() as connection:
            connection.execute(text(statement))
    events = client.get("/api/v1/audit", headers=admin_headers).json()["events"]
    assert [e["reason"] for e in events][:1] == ["better"]


def test_rollout_requests_that_cannot_run_say_what_to_do(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    url = "/api/v1/models/toy/rollout"
    bad_step = client.put(
        url, json={"candidate": "2", "mode": "canary", "steps": [5, 150]}, headers=admin_headers
    )
    assert bad_step.status_code == 422 and bad_step.json()["field"] == "steps[1]"
    down = client.put(
        url, json={"candidate": "2", "mode": "canary", "steps": [50, 10]}, headers=admin_headers
    )
    assert down.status_code == 422 and "increase" in down.json()["reason"]
    bad_mode = client.put(url, json={"candidate": "2", "mode": "blue-green"}, headers=admin_headers)
    assert bad_mode.status_code == 422 and bad_mode.json()["field"] == "mode"
    assert client.post(f"{url}/promote", headers=admin_headers).status_code == 409

    started = client.put(
        url, json={"candidate": "2", "mode": "canary", "steps": [10, 50]}, headers=admin_headers
    )
    assert started.status_code == 200, started.text
    second = client.put(url, json={"candidate": "2", "mode": "shadow"}, headers=admin_headers)
    assert second.status_code == 409 and "already running" in second.json()["reason"]
    blocked = _deploy(client, admin_headers, "2")
    assert blocked.status_code == 409 and "promote or abort" in blocked.json()["reason"]
    rollback = client.post(
        "/api/v1/models/toy/rollback", json={"reason": "r"}, headers=admin_headers
    )
    assert rollback.status_code == 409 and "abort it" in rollback.json()["reason"]


def test_a_canary_is_sticky_per_entity_and_promote_ends_it(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    url = "/api/v1/models/toy/rollout"
    state = client.put(
        url,
        json={"candidate": "2", "mode": "canary", "steps": [30, 60], "reason": "try v2"},
        headers=admin_headers,
    ).json()
    assert state["rollout"]["phase"] == "canary" and state["rollout"]["percent"] == 30
    first = {f"card-{i}": _predict(client, admin_headers, f"card-{i}") for i in range(200)}
    canary = [e for e, answer in first.items() if answer["route"] == "canary"]
    assert all(first[e]["model_version"] == "2" for e in canary)
    assert 0.2 < len(canary) / len(first) < 0.4
    # Sticky: the same entities get the same version again.
    for entity in list(first)[:40]:
        assert _predict(client, admin_headers, entity)["route"] == first[entity]["route"]

    paused = client.post(f"{url}/pause", json={"reason": "looking"}, headers=admin_headers).json()
    assert paused["rollout"]["paused"] and paused["rollout"]["percent"] == 30
    assert client.post(f"{url}/pause", headers=admin_headers).status_code == 409
    assert client.post(f"{url}/resume", headers=admin_headers).json()["rollout"]["paused"] is False
    promoted = client.post(
        f"{url}/promote", json={"reason": "looks good"}, headers=admin_headers
    ).json()
    assert promoted["active_version"] == "2" and promoted["rollout"] is None
    assert {_predict(client, admin_headers, e)["route"] for e in canary[:10]} == {"active"}
    actions = [
        e["action"]
        for e in client.get("/api/v1/audit?model=toy", headers=admin_headers).json()["events"]
    ]
    assert actions[:4] == ["promote", "rollout_resume", "rollout_pause", "rollout_start"]


def test_a_shadow_scores_every_request_unseen_and_abort_stops_it(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    url = "/api/v1/models/toy/rollout"
    state = client.put(url, json={"candidate": "2", "mode": "shadow"}, headers=admin_headers).json()
    assert state["rollout"]["phase"] == "shadow" and state["rollout"]["percent"] == 0
    answers = [_predict(client, admin_headers, f"card-{i}") for i in range(20)]
    assert {(a["model_version"], a["route"]) for a in answers} == {("1", "active")}
    serving = client.app.state.serving  # type: ignore[attr-defined]
    request_ids = {a["request_id"] for a in answers}

    def shadowed() -> set[str]:
        serving.prediction_log.flush(10)
        with workspace.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT request_id, version, route FROM predictions WHERE model = 'toy'")
            ).all()
        return {r.request_id for r in rows if r.route == "shadow" and r.version == "2"}

    # The shadow scores after the answer left: wait for it, with a deadline.
    deadline = time.monotonic() + 10
    while shadowed() != request_ids and time.monotonic() < deadline:
        time.sleep(0.05)
    assert shadowed() == request_ids  # every request scored by the candidate, none answered by it

    aborted = client.post(
        f"{url}/abort", json={"reason": "disagrees"}, headers=admin_headers
    ).json()
    assert aborted["rollout"] is None and aborted["event"]["from_version"] == "2"
    before = logged_rows(workspace)
    _predict(client, admin_headers)
    serving.prediction_log.flush(10)
    assert logged_rows(workspace) == before + 1  # no shadow row any more


def test_the_command_line_deploys_rolls_back_and_shows_the_audit(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    register_toy(workspace)
    location = [
        "--data-dir",
        str(workspace.settings.data_dir),
        "--database-url",
        workspace.settings.database_url,
    ]
    assert cli_main(["deploy", "toy", "2", "--reason", "from the shell", *location]) == 0
    assert "deploy 1 -> 2" in capsys.readouterr().out
    assert cli_main(["rollback", "toy", "--reason", "oops", *location]) == 0
    assert "rollback 2 -> 1" in capsys.readouterr().out
    assert cli_main(["rollback", "toy", "--reason", "again", *location]) == 2
    assert "version 1 is the first version toy served" in capsys.readouterr().err
    assert (
        cli_main(
            [
                "rollout",
                "start",
                "toy",
                "--candidate",
                "2",
                "--mode",
                "canary",
                "--steps",
                "5,50",
                *location,
            ]
        )
        == 0
    )
    assert "canary 5%" in capsys.readouterr().out
    assert cli_main(["rollout", "abort", "toy", "--reason", "enough", *location]) == 0
    assert "abort 2 -> 1; serving version 1" in capsys.readouterr().out
    assert cli_main(["audit", "--model", "toy", *location]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert " abort 2 -> 1" in lines[0] and "cli:" in lines[0]


def test_a_rollback_from_a_version_no_longer_serving_is_refused(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    _deploy(client, admin_headers, "2")
    url = "/api/v1/models/toy/rollback"
    first = client.post(url, json={"reason": "r", "from_version": "2"}, headers=admin_headers)
    assert first.status_code == 200 and first.json()["active_version"] == "1"
    # The same click again (or a second person): not a second step back.
    again = client.post(url, json={"reason": "r", "from_version": "2"}, headers=admin_headers)
    assert again.status_code == 409 and again.json()["field"] == "from_version"
    assert "no longer serves" in again.json()["reason"]


def test_audit_pages_of_a_scoped_token_hold_only_its_models(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    _deploy(client, admin_headers, "2")
    scoped = workspace.tokens.create("pricing", "engineer", models=["price"])
    headers = {"Authorization": f"Bearer {scoped}"}
    events = client.get("/api/v1/audit?limit=1", headers=headers).json()["events"]
    assert [e["model"] for e in events] == ["price"]  # a full page, not an empty one
    assert client.get("/api/v1/audit?model=toy", headers=headers).status_code == 403


def _rollback_option(client: TestClient, headers: dict[str, str]) -> dict:  # type: ignore[type-arg]
    return dict(client.get("/api/v1/models/toy", headers=headers).json()["rollback"])


def test_a_rollback_that_is_unavailable_says_why_and_what_makes_it_possible(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    first = _rollback_option(client, admin_headers)
    assert first["target"] is None and "first version toy served" in first["unavailable_reason"]
    register_toy(workspace)
    # Version 1 raises a quality alert while it serves (as the demo's does), then 2 replaces it.
    workspace.deploy.record_alert("toy", "1", "live accuracy 0.61 is below [0.8, 1]", {})
    assert _deploy(client, admin_headers, "2").status_code == 200
    option = _rollback_option(client, admin_headers)
    assert option["target"] is None
    assert [s["version"] for s in option["skipped"]] == ["1"]
    reason = option["unavailable_reason"]
    assert "raised a quality alert while serving" in reason and "0.61" in reason
    assert "deploy it again on purpose" in reason
    refused = client.post(
        "/api/v1/models/toy/rollback", json={"reason": "r"}, headers=admin_headers
    )
    assert refused.status_code == 409 and refused.json()["reason"] == reason

    # Deployed again on purpose, version 1 is good again: 2 can be returned to from it.
    assert _deploy(client, admin_headers, "1", "its labels were late").status_code == 200
    assert _rollback_option(client, admin_headers)["target"] == "2"
    back = client.post("/api/v1/models/toy/rollback", json={"reason": "r"}, headers=admin_headers)
    assert back.json()["active_version"] == "2"
    # From 2, the version just left (1) is never offered as if it were an earlier good one.
    after = _rollback_option(client, admin_headers)
    assert after["target"] is None
    assert after["skipped"][0]["version"] == "1"
    assert "rolled back from" in after["skipped"][0]["why"]
    assert "rolled back from" in after["unavailable_reason"]


def test_a_rollback_passes_over_the_version_it_just_left_to_an_earlier_one(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    register_toy(workspace)
    for version in ("2", "3", "2"):
        assert _deploy(client, admin_headers, version).status_code == 200
    assert _rollback_option(client, admin_headers)["target"] == "3"
    back = client.post("/api/v1/models/toy/rollback", json={"reason": "r"}, headers=admin_headers)
    assert back.json()["active_version"] == "3"
    option = _rollback_option(client, admin_headers)
    assert option["target"] == "1" and option["unavailable_reason"] is None
    assert [(s["version"], "rolled back from" in s["why"]) for s in option["skipped"]] == [
        ("2", True)
    ]
    # A running rollout: no rollback, and the reason says to abort it instead.
    rollout = {"candidate": "2", "mode": "canary"}
    assert (
        client.put("/api/v1/models/toy/rollout", json=rollout, headers=admin_headers).status_code
        == 200
    )
    during = _rollback_option(client, admin_headers)
    assert during["target"] is None and "abort it" in during["unavailable_reason"]


def test_the_rollout_status_measures_traffic_and_times_each_step(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    serving = client.app.state.serving  # type: ignore[attr-defined]
    for i in range(30):
        _predict(client, admin_headers, f"card-{i}")
    serving.prediction_log.flush(10)
    idle = client.get("/api/v1/models/toy/rollout", headers=admin_headers).json()
    # Without a rollout too, so that a planned one can be timed.
    assert idle["rollout"] is None and idle["request_rate"] == pytest.approx(30 / 60)
    register_toy(workspace)
    rollout = {"candidate": "2", "mode": "canary", "steps": [1, 50], "min_samples": 100}
    client.put("/api/v1/models/toy/rollout", json=rollout, headers=admin_headers)
    status = client.get("/api/v1/models/toy/rollout", headers=admin_headers).json()
    first, second = status["estimates"]
    # 100 requests at 1% of 0.5 requests/s: 20,000 s; at 50%: 400 s.
    assert (first["stage"], first["current"]) == ("canary 1%", True)
    assert first["expected_s"] == pytest.approx(20_000)
    assert first["remaining_s"] == pytest.approx(20_000, rel=0.01)
    assert "left" in first["detail"] and "labelled answers" in first["detail"]
    assert second["expected_s"] == pytest.approx(400) and "7 min" in second["detail"]


def test_expected_step_seconds() -> None:
    from backend.schemas import expected_step_seconds

    assert expected_step_seconds(12.8, 1, 100, 60) == pytest.approx(781.25)  # about 13 min
    assert expected_step_seconds(100, 50, 100, 60) == 60  # the dwell time is longer
    assert expected_step_seconds(0, 5, 100, 60) is None  # no traffic: it cannot finish
    assert expected_step_seconds(0, 5, 0, 60) == 60


def test_the_command_line_sets_the_rollout_policy(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    location = ["--data-dir", str(workspace.settings.data_dir)]
    location += ["--database-url", workspace.settings.database_url]
    assert cli_main(["policy", "toy", *location]) == 0
    assert '"unjudged_quality": "wait"' in capsys.readouterr().out
    change = ["--unjudged-quality", "proceed", "--auto-rollback", "on", "--reason", "no labels"]
    assert cli_main(["policy", "toy", *change, *location]) == 0
    policy = workspace.deploy.state("toy").policy
    assert (policy.unjudged_quality, policy.auto_rollback) == ("proceed", True)
    capsys.readouterr()
    bad = ["--min-labelled", "900", "--metric-window", "100"]
    assert cli_main(["policy", "toy", *bad, *location]) == 2
    assert "min_labelled cannot exceed metric_window" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["policy", "toy", "--unjudged-quality", "maybe", *location])
    event = workspace.deploy.state("toy")
    assert event.policy.unjudged_quality == "proceed"


def test_the_policy_migration_writes_the_new_field_and_takes_it_back(database_url: str) -> None:
    from alembic import command

    from backend.db import create_db_engine, upgrade_database
    from backend.db.engine import alembic_config

    engine = create_db_engine(database_url)
    config = alembic_config(engine)
    command.upgrade(config, "0008")
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO models (name, task, description, active_version, state_generation,"
                " created_at, policy) VALUES ('fraud', 'classification', '', '1', 1, "
                "CURRENT_TIMESTAMP, :policy)"
            ),
            {"policy": '{"auto_rollback": true, "metric_window": 500, "min_labelled": 100}'},
        )

    def stored() -> dict:  # type: ignore[type-arg]
        import json

        with engine.connect() as connection:
            value = connection.execute(text("SELECT policy FROM models")).scalar_one()
        return dict(json.loads(value) if isinstance(value, str) else value)

    upgrade_database(engine)
    assert stored() == {
        "auto_rollback": True, "metric_window": 500, "min_labelled": 100,
        "unjudged_quality": "wait",
    }  # fmt: skip
    command.downgrade(config, "0008")
    assert "unjudged_quality" not in stored() and stored()["auto_rollback"] is True
    engine.dispose()
