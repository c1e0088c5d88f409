"""The serving version's live metric: an alert when it leaves its range, and a rollback
where the model's policy asks for one."""

from __future__ import annotations

from fastapi.testclient import TestClient

from backend.deploy.reactions import react_to_quality
from backend.workspace import Workspace
from tests.deploy_helpers import register_toy
from tests.helpers import TOY_ROW


def _serve_and_label(client: TestClient, headers: dict[str, str], count: int, wrong: bool) -> None:
    request_ids, answers = [], []
    for i in range(count):
        body = {"instances": [TOY_ROW], "entity_id": f"card-{i}"}
        answer = client.post("/v1/models/toy:predict", json=body, headers=headers).json()
        request_ids.append(answer["request_id"])
        answers.append(answer["predictions"][0]["prediction"])
    labels = [
        {"request_id": rid, "label": (1 - a) if wrong else a}
        for rid, a in zip(request_ids, answers, strict=True)
    ]
    client.app.state.serving.prediction_log.flush(10)  # type: ignore[attr-defined]
    response = client.post("/api/v1/feedback", json={"labels": labels}, headers=headers)
    assert response.json()["accepted"] == count


def watch_model(workspace: Workspace, model: str) -> str:
    return react_to_quality(workspace.deploy, workspace.alerts, model)


def test_a_live_metric_out_of_range_alerts_once_and_rolls_back_by_policy(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    register_toy(workspace)
    deployed = client.post(
        "/api/v1/models/toy/deploy", json={"version": "2", "reason": "new"}, headers=admin_headers
    )
    assert deployed.status_code == 200
    policy = {"auto_rollback": False, "metric_window": 50, "min_labelled": 20, "reason": "watch"}
    assert (
        client.put("/api/v1/models/toy/policy", json=policy, headers=admin_headers).status_code
        == 200
    )

    _serve_and_label(client, admin_headers, 10, wrong=True)
    assert watch_model(workspace, "toy") == "10 labelled predictions, 20 needed"
    _serve_and_label(client, admin_headers, 40, wrong=False)
    assert watch_model(workspace, "toy") == "accuracy 0.8 in range"  # 40 of 50 right
    _serve_and_label(client, admin_headers, 30, wrong=True)
    assert watch_model(workspace, "toy") == "alerted"
    assert watch_model(workspace, "toy") == "already alerted"
    assert workspace.registry.get_model("toy").active_version == "2"

    policy["auto_rollback"] = True
    client.put("/api/v1/models/toy/policy", json=policy, headers=admin_headers)
    assert watch_model(workspace, "toy") == "alerted and rolled back"
    model = client.get("/api/v1/models/toy", headers=admin_headers).json()
    assert model["active_version"] == "1" and model["policy"]["auto_rollback"] is True
    events = client.get("/api/v1/audit?model=toy", headers=admin_headers).json()["events"]
    rollback = events[0]
    alerts = [e for e in events if e["action"] == "metric_alert"]
    assert len(alerts) == 1  # raised once, the rollback came when the policy asked for it
    alert = alerts[0]
    assert (rollback["action"], rollback["actor"]) == ("rollback", "servedeck")
    assert rollback["reason"].startswith("automatic: toy version 2: live accuracy")
    assert alert["action"] == "metric_alert" and alert["details"]["labelled"] == 50
    # The alert itself is monitoring's: listed, with plain words, until someone owns it.
    listed = client.get("/api/v1/alerts?model=toy", headers=admin_headers).json()["alerts"]
    assert [(a["version"], a["kind"], a["status"]) for a in listed] == [
        ("2", "live_metric", "open")
    ]
    assert listed[0]["id"] == alert["details"]["alert_id"]
    assert "What to do" in listed[0]["explanation"]


def test_support_cannot_change_the_policy(workspace: Workspace, client: TestClient) -> None:
    support = {"Authorization": f"Bearer {workspace.tokens.create('help', 'support')}"}
    response = client.put(
        "/api/v1/models/toy/policy", json={"auto_rollback": True}, headers=support
    )
    assert response.status_code == 403
    bad = {"Authorization": f"Bearer {workspace.admin_token()}"}
    refused = client.put("/api/v1/models/toy/policy", json={"min_labelled": 1}, headers=bad)
    assert refused.status_code == 422 and refused.json()["field"] == "min_labelled"


def test_a_policy_that_could_never_be_judged_is_refused(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    policy = {"metric_window": 50, "min_labelled": 100}
    refused = client.put("/api/v1/models/toy/policy", json=policy, headers=admin_headers)
    assert refused.status_code == 422 and "never be judged" in refused.json()["reason"]
