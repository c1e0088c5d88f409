"""Held-out traffic: who is held out (sticky, sized, apart from canaries), what the caller gets
(the policy's answer, marked), what the log keeps (the model's unseen answer and the policy's),
and the settings' checks, roles and audit over HTTP."""

from __future__ import annotations

import math
import time
from typing import Any

import pandas as pd
import pytest
import skops.io as sio
from fastapi.testclient import TestClient
from sklearn.base import clone
from sqlalchemy import select

from backend.db.tables import AuditEventRow, PredictionRow
from backend.schemas import (
    DefaultPolicy,
    HeldOutSettings,
    RolloutState,
    Rule,
    RulePolicy,
)
from backend.schemas.held_out import (
    EqualityCondition,
    NumberCondition,
    PresenceCondition,
    SetCondition,
)
from backend.serving.held_out import goes_to_held_out, rule_answer
from backend.serving.routing import ModelRouting, goes_to_canary
from backend.workspace import Workspace
from tests.deploy_helpers import register_toy
from tests.helpers import TOY_ROW, TOY_SIGNATURE, toy_classifier, toy_frame, toy_validity

ENTITIES = [f"customer-{i}" for i in range(20_000)]


def _settings(share: float, answer: Any = 0) -> HeldOutSettings:
    return HeldOutSettings(share_percent=share, policy=DefaultPolicy(kind="default", answer=answer))


def _held(share: float) -> set[str]:
    settings = _settings(share)
    return {e for e in ENTITIES if goes_to_held_out(settings, "toy", e)}


def test_held_out_entities_are_sticky_sized_and_grow_only_at_the_edge() -> None:
    two, five = _held(2.0), _held(5.0)
    # Sized within statistical bounds: 5 standard deviations of a binomial draw.
    for held, share in ((two, 0.02), (five, 0.05)):
        spread = 5 * math.sqrt(len(ENTITIES) * share * (1 - share))
        assert abs(len(held) - len(ENTITIES) * share) < spread, (len(held), share)
    assert two == _held(2.0)  # sticky: the same entities every time
    assert two < five  # a larger share only adds entities, never swaps them
    assert _held(0.0) == set()
    # A request without an entity is drawn on its own.
    settings = _settings(50.0)
    drawn = sum(goes_to_held_out(settings, "toy", None) for _ in range(4_000))
    assert 1_700 < drawn < 2_300


def test_held_out_and_canary_entities_never_meet() -> None:
    # Only what routing reads of a rollout.
    rollout = RolloutState.model_construct(candidate="2", phase="canary", percent=50.0)
    routing = ModelRouting("1", 1, rollout, _settings(50.0))
    canary = {e for e in ENTITIES if goes_to_canary(routing, "toy", e)}
    held = _held(50.0)
    assert canary and held and not canary & held
    # Changing the canary share does not move a held-out entity.
    wider = ModelRouting("1", 1, rollout.model_copy(update={"percent": 25.0}), _settings(50.0))
    assert {e for e in ENTITIES if goes_to_canary(wider, "toy", e)} < canary


def test_rules_are_declarative_conditions_over_the_features() -> None:
    policy = RulePolicy(
        kind="rule",
        rules=[
            Rule(when=[NumberCondition(feature="amount", op=">", value=500)], answer=1),
            Rule(
                when=[
                    SetCondition(feature="country", op="in", value=["US", "FR"]),
                    EqualityCondition(feature="online", op="==", value=True),
                ],
                answer=1,
            ),
            Rule(when=[PresenceCondition(feature="note", op="missing")], answer=1),
        ],
        otherwise=0,
    )
    assert rule_answer(policy, {**TOY_ROW, "amount": 900.0}) == 1
    assert rule_answer(policy, {**TOY_ROW, "country": "FR", "online": True}) == 1
    assert rule_answer(policy, {**TOY_ROW, "country": "FR", "online": False}) == 0
    assert rule_answer(policy, {**TOY_ROW, "note": None}) == 1
    # Text is never compared as a number; a missing value satisfies no comparison.
    assert rule_answer(policy, {**TOY_ROW, "amount": "900"}) == 0
    assert rule_answer(policy, {**TOY_ROW, "amount": None}) == 0


def _wait_for_route(
    client: TestClient, headers: dict[str, str], entity: str, route: str
) -> dict[str, Any]:
    """Post until the workers' next poll routes the entity as expected."""
    deadline = time.monotonic() + 10
    while True:
        answer = client.post(
            "/v1/models/toy:predict",
            headers=headers,
            json={"instances": [TOY_ROW], "entity_id": entity},
        )
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        if body["route"] == route or time.monotonic() > deadline:
            return body
        time.sleep(0.1)


def _put(client: TestClient, headers: dict[str, str], body: dict[str, Any]) -> Any:
    return client.put("/api/v1/models/toy/held-out", headers=headers, json=body)


def test_a_held_out_request_gets_the_policy_answer_and_the_log_keeps_the_models(
    client: TestClient, admin_headers: dict[str, str], workspace: Workspace
) -> None:
    model_answer = int(toy_classifier().predict(pd.DataFrame([TOY_ROW]))[0])
    policy_answer = 1 - model_answer
    held = sorted(_held(50.0))[0]
    served = sorted(set(ENTITIES[:200]) - _held(50.0))[0]
    response = _put(
        client,
        admin_headers,
        {
            "share_percent": 50,
            "policy": {"kind": "default", "answer": str(policy_answer)},
            "reason": "measure the chargeback loop",
        },
    )
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["policy"]["answer"] == policy_answer  # as the model's
    body = _wait_for_route(client, admin_headers, held, "held_out")
    assert body["route"] == "held_out" and body["held_out_policy"] == "default"
    assert body["predictions"][0]["prediction"] == policy_answer
    assert body["predictions"][0]["probabilities"] is None
    # OIP marks it in the response's parameters.
    infer = client.post(
        "/v2/models/toy/infer",
        headers=admin_headers,
        json={
            "inputs": [
                {"name": k, "shape": [1], "datatype": t, "data": [TOY_ROW[k]]}
                for k, t in (("amount", "FP64"), ("count", "INT64"), ("country", "BYTES"))
            ]
            + [
                {"name": "online", "shape": [1], "datatype": "BOOL", "data": [True]},
                {"name": "note", "shape": [1], "datatype": "BYTES", "data": ["hi"]},
            ],
            "parameters": {"entity_id": held},
        },
    )
    assert infer.status_code == 200, infer.text
    assert infer.json()["parameters"]["route"] == "held_out"
    assert infer.json()["parameters"]["held_out_policy"] == "default"
    assert infer.json()["outputs"][0]["data"] == [policy_answer]
    # Entities outside the share are served by the model.
    other = _wait_for_route(client, admin_headers, served, "active")
    assert other["route"] == "active" and other["predictions"][0]["prediction"] == model_answer
    assert "held_out_policy" not in other
    # The log: the model's own, unseen answer, and what the policy answered instead.
    request_id = body["request_id"]
    deadline = time.monotonic() + 10
    while True:
        with workspace.sessions() as session:
            row = session.scalar(
                select(PredictionRow).where(PredictionRow.request_id == request_id)
            )
        if row is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row is not None and row.route == "held_out" and row.entity_id == held
    assert row.outputs["predict"] == model_answer
    assert row.outputs["predict_proba"] is not None  # the model scored it
    assert row.outputs["held_out"] == {"policy": "default", "answer": policy_answer}
    deadline = time.monotonic() + 10
    while True:  # the OIP request's row reaches the log within the writer's interval
        status = client.get("/api/v1/models/toy/held-out", headers=admin_headers).json()
        if status["coverage"]["requests"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status["coverage"]["requests"] >= 2 and status["coverage"]["entities"] >= 1
    assert "held-out requests" in status["explanation"]


def test_a_fallback_version_answers_held_out_requests(
    client: TestClient, admin_headers: dict[str, str], workspace: Workspace
) -> None:
    frame, labels = toy_frame()
    other = clone(toy_classifier()).set_params(clf__C=0.001).fit(frame, labels)
    workspace.registry.register_version(
        "toy",
        sio.dumps(other),
        filename="toy2.skops",
        validity=toy_validity(other),
        registered_by="tests",
        signature=TOY_SIGNATURE,
    )
    response = _put(
        client,
        admin_headers,
        {"share_percent": 50, "policy": {"kind": "fallback", "model": "toy", "version": "2"}},
    )
    assert response.status_code == 200, response.text
    held = sorted(_held(50.0))[0]
    body = _wait_for_route(client, admin_headers, held, "held_out")
    assert body["held_out_policy"] == "fallback"
    expected = other.predict_proba(pd.DataFrame([TOY_ROW]))[0]
    got = body["predictions"][0]["probabilities"]
    assert [got["0"], got["1"]] == pytest.approx(list(expected))
    # The log says which version answered for the policy.
    deadline = time.monotonic() + 10
    while True:
        with workspace.sessions() as session:
            row = session.scalar(
                select(PredictionRow).where(PredictionRow.request_id == body["request_id"])
            )
        if row is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert row is not None and row.outputs["held_out"]["by"] == "toy:2"


def test_a_version_the_held_out_policy_does_not_fit_may_not_serve(
    client: TestClient, admin_headers: dict[str, str], workspace: Workspace
) -> None:
    register_toy(workspace)
    fallback = {"share_percent": 5, "policy": {"kind": "fallback", "model": "toy", "version": "2"}}
    assert _put(client, admin_headers, fallback).status_code == 200
    # Version 2 would answer its own held-out traffic: the gate refuses it, saying what to do.
    deploy = {"version": "2", "reason": "retrained"}
    refused = client.post("/api/v1/models/toy/deploy", headers=admin_headers, json=deploy)
    assert refused.status_code == 409, refused.text
    gates = {g["gate"]: g for g in refused.json()["gate_report"]["gates"]}
    assert gates["held_out_policy"]["outcome"] == "failed"
    assert "/api/v1/models/toy/held-out" in gates["held_out_policy"]["detail"]
    assert gates["metric"]["outcome"] == "passed"
    # A policy that fits both versions lets it through.
    default = {"share_percent": 5, "policy": {"kind": "default", "answer": 0}}
    assert _put(client, admin_headers, default).status_code == 200
    deployed = client.post("/api/v1/models/toy/deploy", headers=admin_headers, json=deploy)
    assert deployed.status_code == 200, deployed.text
    gates = {g["gate"]: g for g in deployed.json()["report"]["gates"]}
    assert gates["held_out_policy"]["outcome"] == "passed"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"share_percent": 2, "policy": {"kind": "default", "answer": "maybe"}}, "policy.answer"),
        ({"share_percent": 60, "policy": {"kind": "default", "answer": 0}}, "share_percent"),
        (
            {
                "policy": {
                    "kind": "rule",
                    "rules": [{"when": [{"feature": "age", "op": ">", "value": 3}], "answer": 1}],
                    "otherwise": 0,
                }
            },
            "policy.rules[0].when[0].feature",
        ),
        (
            {
                "policy": {
                    "kind": "rule",
                    "rules": [
                        {"when": [{"feature": "amount", "op": ">", "value": "a"}], "answer": 1}
                    ],
                    "otherwise": 0,
                }
            },
            "policy.rule.rules[0].when[0]",
        ),
        ({"policy": {"kind": "fallback", "model": "toy"}}, "policy"),
        ({"policy": {"kind": "fallback", "model": "nobody"}}, "policy.model"),
        ({"policy": {"kind": "fallback", "model": "price"}}, "policy.model"),
        ({"policy": {"kind": "script", "code": "import os"}}, "policy"),
    ],
)
def test_settings_that_cannot_work_are_refused_naming_the_field(
    client: TestClient, admin_headers: dict[str, str], body: dict[str, Any], field: str
) -> None:
    response = _put(client, admin_headers, body)
    assert response.status_code in (409, 422), response.text
    assert response.json()["field"].startswith(field), response.json()


def test_who_may_read_and_change_the_held_out_share(
    client: TestClient, admin_headers: dict[str, str], workspace: Workspace
) -> None:
    tokens = {
        role: {"Authorization": f"Bearer {workspace.tokens.create(role, role, models=models)}"}
        for role, models in (("engineer", None), ("support", None), ("client", ["toy"]))
    }
    body = {"share_percent": 2, "policy": {"kind": "default", "answer": 0}, "reason": "loop"}
    assert _put(client, tokens["support"], body).status_code == 403
    assert _put(client, tokens["client"], body).status_code == 403
    assert client.get("/api/v1/models/toy/held-out", headers=tokens["client"]).status_code == 403
    assert client.get("/api/v1/models/toy/held-out", headers=tokens["support"]).status_code == 200
    assert _put(client, tokens["engineer"], body).status_code == 200
    cleared = client.delete(
        "/api/v1/models/toy/held-out", headers=tokens["engineer"], params={"reason": "done"}
    )
    assert cleared.status_code == 200 and cleared.json()["settings"] is None
    with workspace.sessions() as session:
        events = session.scalars(
            select(AuditEventRow).where(AuditEventRow.action == "held_out")
        ).all()
    assert [(e.actor, e.reason) for e in events] == [("engineer", "loop"), ("engineer", "done")]
    assert events[0].details["after"]["share_percent"] == 2
    assert events[1].details["after"] is None
    assert client.get("/api/v1/models/nobody/held-out", headers=admin_headers).status_code == 404
    # A fallback's answers reach this model's callers: the actor must be able to read it.
    scoped = workspace.tokens.create("toy-engineer", "engineer", models=["toy"])
    other_model = {"policy": {"kind": "fallback", "model": "price"}, "reason": "x"}
    refused = _put(client, {"Authorization": f"Bearer {scoped}"}, other_model)
    assert refused.status_code == 403, refused.text


def test_no_way_around_the_held_out_share(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    """Mixed entities in one request are refused; naming the serving version, or sending the
    entity as a number, still routes by the share."""
    held_out = _held(50.0)
    held = next(e for e in ENTITIES if e in held_out)
    served = next(e for e in ENTITIES if e not in held_out)
    body = {"share_percent": 50, "policy": {"kind": "default", "answer": 0}}
    assert _put(client, admin_headers, body).status_code == 200
    _wait_for_route(client, admin_headers, held, "held_out")
    for first, second in ((held, served), (served, held)):
        mixed = client.post(
            "/v1/models/toy:predict",
            headers=admin_headers,
            json={"instances": [TOY_ROW, TOY_ROW], "entity_ids": [first, second]},
        )
        assert mixed.status_code == 400 and mixed.json()["field"] == "entity_ids", mixed.text
    tensors = {"inputs": _toy_tensors(), "parameters": {"entity_id": held}}
    named = client.post("/v2/models/toy/versions/1/infer", headers=admin_headers, json=tensors)
    assert named.json()["parameters"]["route"] == "held_out", named.text
    number = next(i for i in range(200) if str(i) in _held_numbers())
    routes = {
        client.post(
            "/v2/models/toy/infer",
            headers=admin_headers,
            json={"inputs": _toy_tensors(), "parameters": {"entity_id": number}},
        ).json()["parameters"]["route"]
        for _ in range(8)
    }
    assert routes == {"held_out"}


def _held_numbers() -> set[str]:
    settings = _settings(50.0)
    return {str(i) for i in range(200) if goes_to_held_out(settings, "toy", str(i))}


def _toy_tensors() -> list[dict[str, Any]]:
    return [
        {"name": "amount", "shape": [1], "datatype": "FP64", "data": [TOY_ROW["amount"]]},
        {"name": "count", "shape": [1], "datatype": "INT64", "data": [TOY_ROW["count"]]},
        {"name": "country", "shape": [1], "datatype": "BYTES", "data": [TOY_ROW["country"]]},
        {"name": "online", "shape": [1], "datatype": "BOOL", "data": [TOY_ROW["online"]]},
        {"name": "note", "shape": [1], "datatype": "BYTES", "data": [TOY_ROW["note"]]},
    ]


def test_requests_without_an_entity_split_as_both_shares_say() -> None:
    """One draw decides both: a held-out share does not eat into the canary's."""
    from backend.serving.service import _resolve

    rollout = RolloutState.model_construct(candidate="2", phase="canary", percent=30.0)
    routing = ModelRouting("1", 1, rollout, _settings(20.0))
    routes = [_resolve(routing, "toy", None, None)[1] for _ in range(6_000)]
    shares = {route: routes.count(route) / len(routes) for route in set(routes)}
    assert abs(shares["canary"] - 0.30) < 0.03 and abs(shares["held_out"] - 0.20) < 0.03
