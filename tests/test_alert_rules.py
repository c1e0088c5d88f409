"""Alert rules: a persisting condition raises once, after for_s; resolves after clear_for_s;
re-opens within its cooldown; two workers neither raise twice nor flap; acknowledgement and
history; p99, error-rate and refusal-rate rules on real traffic through a real app; the
rules' API; the 0010 migration on an old store."""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import pytest
import requests
from fastapi.testclient import TestClient

from backend.api import create_app
from backend.monitoring.alerts import AlertService
from backend.monitoring.evaluator import RuleEngine
from backend.monitoring.rules import DEFAULT_RULES, Measurement
from backend.schemas import DECISIONS, AlertRule, MixDecision
from backend.workspace import Workspace
from tests.helpers import (
    SETUP,
    TOY_ROW,
    TOY_SIGNATURE,
    make_settings,
    register_toy_models,
    start_server,
    toy_validity,
)
from tests.rule_models import FAILING_AMOUNT, SLOW_COUNT, SLOW_S, moody_pickle

RULE = AlertRule(
    kind="p99_latency", threshold=100.0, window_s=60, min_count=5, for_s=30, clear_for_s=60,
    cooldown_s=600,
)  # fmt: skip
T0 = 1_800_000_000.0


def _measured(bad: bool, value: float = 250.0) -> Measurement:
    return Measurement(value, bad, 40, f"p99 latency {value:.0f} ms", {"value": value})


def _judge(engine: RuleEngine, bad: bool, now: float, rule: AlertRule = RULE) -> str:
    active = engine.alerts.active("toy", None, rule.kind)
    return engine.judge(
        "toy", rule, _measured(bad), active, now, title="toy: slow", explanation="What to do: x"
    )


def test_a_persisting_condition_raises_once_after_for_s_and_resolves_after_clearing(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    engine = RuleEngine(workspace.alerts)
    assert _judge(engine, True, T0) == "pending 0 of 30 s"
    assert _judge(engine, True, T0 + 20) == "pending 20 of 30 s"
    raised = _judge(engine, True, T0 + 30)
    assert raised.startswith("raised: alert ")
    alert_id = int(raised.rsplit(" ", 1)[1])
    for second in range(35, 300, 5):  # it persists: the same alert, the newest value
        assert _judge(engine, True, T0 + second) == f"still active: alert {alert_id}"
    listed = workspace.alerts.list(model="toy")
    assert [(a.id, a.kind, a.version, a.status) for a in listed] == [
        (alert_id, "p99_latency", None, "open")
    ]
    assert listed[0].last_seen_at is not None
    assert listed[0].last_seen_at.timestamp() == pytest.approx(T0 + 295)
    # Clear: held for clear_for_s before it is resolved (hysteresis).
    assert _judge(engine, False, T0 + 300) == "clearing 0 of 60 s"
    assert _judge(engine, False, T0 + 340) == "clearing 40 of 60 s"
    assert _judge(engine, True, T0 + 345) == f"still active: alert {alert_id}"  # back: reset
    assert _judge(engine, False, T0 + 350) == "clearing 0 of 60 s"
    assert _judge(engine, False, T0 + 410) == f"resolved: alert {alert_id}"
    assert _judge(engine, False, T0 + 415) == "clear"
    # Back within the cooldown (600 s after the resolution): the same alert re-opens.
    assert _judge(engine, True, T0 + 500).startswith("pending")
    assert _judge(engine, True, T0 + 530) == f"reopened: alert {alert_id}"
    again = workspace.alerts.get(alert_id)
    assert (again.status, again.reopened, again.resolved_at) == ("open", 1, None)
    # Acknowledged by a person (who, when, the note), then it clears again.
    engineer = {"Authorization": f"Bearer {workspace.tokens.create('eng', 'engineer')}"}
    acknowledged = client.post(
        f"/api/v1/alerts/{alert_id}/acknowledge", headers=engineer, json={"note": "on it"}
    ).json()
    assert (acknowledged["acknowledged_by"], acknowledged["acknowledgement"]) == ("eng", "on it")
    assert abs(time.time() - _seconds(acknowledged["acknowledged_at"])) < 60
    assert _judge(engine, False, T0 + 540) == "clearing 0 of 60 s"
    assert _judge(engine, False, T0 + 600) == f"resolved: alert {alert_id}"
    # After the cooldown: a new alert, the old one stays in the history.
    assert _judge(engine, True, T0 + 1_300).startswith("pending")
    newer = _judge(engine, True, T0 + 1_330)
    assert newer.startswith("raised: alert ") and newer != raised

    shown = client.get(f"/api/v1/alerts/{alert_id}", headers=admin_headers).json()
    history = [(h["action"], h["actor"]) for h in shown["history"]]
    changed = [h for h in history if h[0] == "changed"]
    assert history == [
        ("raised", "servedeck"),
        *changed,
        ("resolved", "servedeck"),
        ("reopened", "servedeck"),
        ("acknowledged", "eng"),
        ("resolved", "servedeck"),
    ]
    # Its details changed in place (the newest value every minute at most), no new alert.
    assert 3 <= len(changed) <= 5
    assert shown["history"][-1]["note"].startswith("the condition has been clear for 60 s")
    resolved = client.get("/api/v1/alerts?model=toy&status=resolved", headers=admin_headers)
    assert [a["id"] for a in resolved.json()["alerts"]] == [alert_id]


def _seconds(value: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(value).timestamp()


def test_two_workers_raise_one_alert_and_do_not_flap(workspace: Workspace) -> None:
    """Each worker judges its own traffic; one says clear while the other still sees it."""
    rule = RULE.model_copy(update={"for_s": 0})
    first, second = RuleEngine(workspace.alerts), RuleEngine(AlertService(workspace.sessions))
    raised = _judge(first, True, T0, rule)
    assert raised.startswith("raised")
    alert_id = int(raised.rsplit(" ", 1)[1])
    assert _judge(second, True, T0 + 1, rule) == f"still active: alert {alert_id}"
    # The first worker's traffic is fine; the second's is still slow: no resolution.
    for second_offset in range(5, 200, 5):
        now = T0 + second_offset
        _judge(second, True, now, rule)
        outcome = _judge(first, False, now, rule)
        assert outcome.startswith(("clearing", "clear here, still seen elsewhere")), outcome
    assert workspace.alerts.get(alert_id).status == "open"
    # Both clear: resolved once nobody has seen it for clear_for_s.
    assert _judge(second, False, T0 + 200, rule) == "clearing 0 of 60 s"
    assert (
        _judge(first, False, T0 + 240, rule)
        == f"clear here, still seen elsewhere: alert {alert_id}"
    )
    assert _judge(first, False, T0 + 256, rule) == f"resolved: alert {alert_id}"
    assert _judge(second, False, T0 + 300, rule) == "clear"
    assert len(workspace.alerts.list(model="toy", statuses=None)) == 1


def test_a_rule_switched_off_resolves_its_alert(workspace: Workspace) -> None:
    engine = RuleEngine(workspace.alerts)
    rule = RULE.model_copy(update={"for_s": 0})
    assert _judge(engine, True, T0, rule).startswith("raised")
    off = rule.model_copy(update={"enabled": False})
    assert _judge(engine, True, T0 + 5, off) == "resolved: rule switched off"
    assert workspace.alerts.list(model="toy", statuses=["open", "acknowledged"]) == []


def test_the_mix_rule_counts_every_decision_but_a_plain_answer() -> None:
    assert set(get_args(MixDecision)) == set(DECISIONS) - {"answered"}


# ---------------------------------------------------------------- real traffic, real app


@pytest.fixture
def moody(workspace: Workspace) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """A real app serving a model that is slow or fails on some inputs."""
    data = moody_pickle()
    workspace.registry.register_version(
        "moody",
        data,
        filename="moody.pkl",
        validity=toy_validity(pickle.loads(data)),
        registered_by="tests",
        signature=TOY_SIGNATURE,
        trust_pickle=True,
        trust_reason="the alert rules' test model",
    )
    workspace.deploy.deploy("moody", "1", "test setup", SETUP)
    # The server's token cache on, as in production: a refusal or failure counts for its
    # model only once the token behind it is known to be allowed to use it.
    settings = make_settings(
        workspace.settings.data_dir, workspace.settings.database_url, token_cache_ttl_s=60.0
    )
    served = Workspace.open(settings)
    # A model failure is answered 500 by the outermost handler, not raised into the test.
    with TestClient(create_app(workspace=served), raise_server_exceptions=False) as test_client:
        yield test_client, {"Authorization": f"Bearer {workspace.admin_token()}"}
    served.close()


def _post(client: TestClient, headers: dict[str, str], row: dict[str, Any], n: int) -> set[int]:
    return {
        client.post(
            "/v1/models/moody:predict", json={"instances": [row]}, headers=headers
        ).status_code
        for _ in range(n)
    }


def _evaluate(client: TestClient) -> dict[Any, str]:
    evaluator = client.app.state.alert_rules  # type: ignore[attr-defined]
    # A second on: the current second's bucket is complete.
    return client.portal.call(evaluator.evaluate, time.time() + 1.5)  # type: ignore[union-attr]


def _rules(client: TestClient, headers: dict[str, str], *rules: dict[str, Any]) -> None:
    answer = client.put(
        "/api/v1/models/moody/alert-rules", json={"rules": list(rules)}, headers=headers
    )
    assert answer.status_code == 200, answer.text


def _open(workspace: Workspace, kind: str) -> list[Any]:
    active = workspace.alerts.list(model="moody", statuses=["open", "acknowledged"])
    return [a for a in active if a.kind == kind]


def test_p99_error_and_refusal_rules_on_real_traffic(
    workspace: Workspace, moody: tuple[TestClient, dict[str, str]]
) -> None:
    client, headers = moody
    quick = {"window_s": 60, "min_count": 5, "for_s": 0, "clear_for_s": 0, "cooldown_s": 0}
    _rules(
        client,
        headers,
        {"kind": "p99_latency", "threshold": SLOW_S * 1000 / 2, **quick},
        {"kind": "error_rate", "threshold": 0.2, "severity": "critical", **quick},
        {"kind": "refusal_rate", "threshold": 0.3, **quick},
    )
    assert _post(client, headers, TOY_ROW, 10) == {200}
    outcomes = _evaluate(client)
    assert outcomes[("moody", "p99_latency")] == "clear", outcomes
    assert outcomes[("moody", "error_rate")] == "clear"
    assert _open(workspace, "p99_latency") == []

    # Slow answers: p99 over half the model's sleep.
    assert _post(client, headers, {**TOY_ROW, "count": SLOW_COUNT}, 5) == {200}
    outcomes = _evaluate(client)
    assert outcomes[("moody", "p99_latency")].startswith(("raised", "still active"))
    [slow] = _open(workspace, "p99_latency")
    assert slow.details["value"] >= SLOW_S * 1000 and slow.version is None
    assert "p99 latency" in slow.title and "What to do" in slow.explanation
    _evaluate(client)
    assert [a.id for a in _open(workspace, "p99_latency")] == [slow.id]  # grouped: still one

    # Failures (5xx) are ours: 5 of 20 calls failed = 25 %, over 20 %.
    assert _post(client, headers, {**TOY_ROW, "amount": FAILING_AMOUNT}, 5) == {500}
    _evaluate(client)
    [failing] = _open(workspace, "error_rate")
    assert failing.severity == "critical" and failing.details["failed"] == 5
    assert failing.details["count"] == 20
    # Refusals (4xx) are the callers': bad input is a refusal, not an error.
    assert _post(client, headers, {**TOY_ROW, "country": "XX"}, 15) == {422}
    _evaluate(client)
    [refused] = _open(workspace, "refusal_rate")
    assert refused.details["refused"] == 15 and refused.details["count"] == 35
    assert [a.details["failed"] for a in _open(workspace, "error_rate")] == [5]


def test_the_decision_mix_rule_on_the_live_statistics(
    workspace: Workspace, moody: tuple[TestClient, dict[str, str]]
) -> None:
    """Only plain answers occur until the guards (abstain, fallback) land: real answers
    raise nothing; answers recorded with other decisions raise the mix rule."""
    client, headers = moody
    _rules(
        client,
        headers,
        {
            "kind": "decision_mix", "threshold": 0.3, "decisions": ["abstained", "fallback"],
            "window_s": 60, "min_count": 10, "for_s": 0, "clear_for_s": 0, "cooldown_s": 0,
        },
    )  # fmt: skip
    assert _post(client, headers, TOY_ROW, 10) == {200}
    assert _evaluate(client)[("moody", "decision_mix")] == "clear"
    live_stats = client.app.state.live_stats  # type: ignore[attr-defined]
    now = time.time()

    def record() -> None:
        for decision in ("abstained",) * 4 + ("fallback",) * 2:
            live_stats.record("moody", now, 3.0, [0.51], decision=decision, version="1")

    client.portal.call(_run_sync, record)  # type: ignore[union-attr]
    _evaluate(client)
    [mix] = _open(workspace, "decision_mix")
    assert mix.details["decisions"] == {"abstained": 4, "fallback": 2}
    assert mix.details["value"] == pytest.approx(6 / 16)


async def _run_sync(function: Any) -> None:
    function()  # on the app's event loop, where the live statistics are kept


# ---------------------------------------------------------------- the rules' API


def test_rules_are_read_and_set_per_model(
    workspace: Workspace, client: TestClient, admin_headers: dict[str, str]
) -> None:
    defaults = client.get("/api/v1/alert-rules/defaults", headers=admin_headers).json()
    assert [r["kind"] for r in defaults] == list(DEFAULT_RULES)
    mine = client.get("/api/v1/models/toy/alert-rules", headers=admin_headers).json()
    assert mine["rules"] == defaults and mine["customized"] == []
    engineer = {"Authorization": f"Bearer {workspace.tokens.create('eng', 'engineer')}"}
    support = {"Authorization": f"Bearer {workspace.tokens.create('help', 'support')}"}
    body = {"rules": [{"kind": "p99_latency", "threshold": 250, "severity": "critical"}]}
    assert (
        client.put("/api/v1/models/toy/alert-rules", json=body, headers=support).status_code == 403
    )
    answer = client.put("/api/v1/models/toy/alert-rules", json=body, headers=engineer)
    assert answer.status_code == 200, answer.text
    rules = {r["kind"]: r for r in answer.json()["rules"]}
    assert rules["p99_latency"]["threshold"] == 250 and answer.json()["customized"] == [
        "p99_latency"
    ]
    assert rules["error_rate"] == DEFAULT_RULES["error_rate"].model_dump()
    # Support reads them; other models keep the defaults.
    assert client.get("/api/v1/models/toy/alert-rules", headers=support).json()["rules"] == list(
        rules.values()
    )
    price = client.get("/api/v1/models/price/alert-rules", headers=admin_headers).json()
    assert price["customized"] == []
    # Turning the quality rule off: the watch says so instead of alerting.
    off = {"rules": [{"kind": "live_metric", "enabled": False}]}
    assert (
        client.put("/api/v1/models/toy/alert-rules", json=off, headers=engineer).status_code == 200
    )
    from backend.monitoring.watch import judge_live_metric

    verdict = judge_live_metric(
        workspace.sessions, workspace.registry, workspace.alerts, "toy", "1", 50, 20
    )
    assert verdict.text == "the live_metric alert rule is switched off for this model"
    # Leaving a kind out returns it to its default.
    assert client.get("/api/v1/models/toy/alert-rules", headers=admin_headers).json()[
        "customized"
    ] == ["live_metric"]


@pytest.mark.parametrize(
    ("rule", "field", "says"),
    [
        ({"kind": "disk_full", "threshold": 1}, "rules[0].kind", "Input should be"),
        ({"kind": "estimated_metric"}, "rules[0].kind", "no rule of kind 'estimated_metric'"),
        ({"kind": "drift_features", "threshold": 2}, "rules[0].threshold", "share of drifted"),
        ({"kind": "drift_prediction", "threshold": 0.5}, "rules[0].threshold", "no threshold"),
        ({"kind": "error_rate", "threshold": 5}, "rules[0].threshold", "share above 0"),
        ({"kind": "error_rate"}, "rules[0].threshold", "share above 0"),
        ({"kind": "p99_latency", "threshold": -3}, "rules[0].threshold", "milliseconds"),
        ({"kind": "live_metric", "threshold": 0.5}, "rules[0].threshold", "acceptable range"),
        ({"kind": "decision_mix", "threshold": 0.2}, "rules[0].decisions", "needs the decisions"),
        ({"kind": "p99_latency", "threshold": 9, "window_s": 5}, "rules[0].window_s", "10"),
        ({"kind": "p99_latency", "threshold": 9, "speed": 1}, "rules[0].speed", "xtra"),
    ],
)
def test_bad_rules_are_refused_naming_the_field(
    client: TestClient, admin_headers: dict[str, str], rule: dict[str, Any], field: str, says: str
) -> None:
    answer = client.put(
        "/api/v1/models/toy/alert-rules", json={"rules": [rule]}, headers=admin_headers
    )
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == field and says in answer.json()["reason"], answer.json()


def test_a_kind_given_twice_and_an_unknown_model_are_refused(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    twice = {"rules": [{"kind": "error_rate", "threshold": 0.1}] * 2}
    answer = client.put("/api/v1/models/toy/alert-rules", json=twice, headers=admin_headers)
    assert answer.status_code == 422 and answer.json()["field"] == "rules[1].kind"
    unknown = client.get("/api/v1/models/nobody/alert-rules", headers=admin_headers)
    assert unknown.status_code == 404


# ---------------------------------------------------------------- the migration


def test_the_migration_keeps_alerts_and_gives_them_a_history(database_url: str) -> None:
    from alembic import command
    from sqlalchemy import text

    from backend.db import create_db_engine, session_factory, upgrade_database
    from backend.db.engine import alembic_config

    engine = create_db_engine(database_url)
    command.upgrade(alembic_config(engine), "0009")
    with engine.begin() as connection:
        for version, status, acknowledged in (
            ("1", "resolved", None),
            ("2", "acknowledged", "ann"),
        ):
            connection.execute(
                text(
                    "INSERT INTO alerts (model, version, kind, severity, status, title, "
                    "explanation, details, raised_at, acknowledged_by, acknowledged_at, "
                    "acknowledgement, resolved_at, resolution) VALUES ('fraud', :version, "
                    "'live_metric', 'critical', :status, 't', 'e', '{\"value\": 0.5}', 100.0, "
                    ":by, :at, 'looking', :resolved, '')"
                ),
                {
                    "version": version,
                    "status": status,
                    "by": acknowledged,
                    "at": 150.0 if acknowledged else None,
                    "resolved": 200.0 if status == "resolved" else None,
                },
            )
    upgrade_database(engine)
    alerts = AlertService(session_factory(engine))
    try:
        kept = alerts.active("fraud", "2", "live_metric")
        assert kept is not None and kept.acknowledged_by == "ann"
        history = [(h.action, h.actor) for h in alerts.get(kept.id).history]
        assert history == [("raised", "servedeck"), ("acknowledged", "ann")]
        old = next(a for a in alerts.list(model="fraud", statuses=None) if a.version == "1")
        assert [h.action for h in alerts.get(old.id).history] == ["raised", "resolved"]
        # Grouped per version as before: raising version 2 again is the same alert.
        again, raised = alerts.raise_once(
            "fraud", "2", "live_metric", severity="critical", title="t", explanation="e",
            details={"value": 0.4},
        )  # fmt: skip
        assert (again.id, raised, again.details["value"]) == (kept.id, False, 0.4)
        # A model-wide alert (no version) is one per model, too.
        first, _ = alerts.raise_once(
            "fraud", None, "error_rate", severity="critical", title="t", explanation="e",
            details={},
        )  # fmt: skip
        second, raised = alerts.raise_once(
            "fraud", None, "error_rate", severity="critical", title="t", explanation="e",
            details={},
        )  # fmt: skip
        assert second.id == first.id and not raised
    finally:
        engine.dispose()


# ---------------------------------------------------------------- two real workers


def test_two_server_workers_raise_one_alert_and_resolve_it_once(
    tmp_path: Path, postgres_url: str
) -> None:
    """A real server with two uvicorn workers (on PostgreSQL, as several workers are run),
    each judging its own share of the traffic: one alert however many workers see the
    failures, and one resolution after they stop."""
    setup = Workspace.open(make_settings(tmp_path, postgres_url))
    try:
        register_toy_models(setup)
        data = moody_pickle()
        setup.registry.register_version(
            "moody", data, filename="moody.pkl", validity=toy_validity(pickle.loads(data)),
            registered_by="tests", signature=TOY_SIGNATURE, trust_pickle=True,
            trust_reason="the alert rules' test model",
        )  # fmt: skip
        setup.deploy.deploy("moody", "1", "test setup", SETUP)
        admin = setup.admin_token()
    finally:
        setup.close()
    # Rounds every second (not 5 s): the raise and the resolution come sooner, nothing else
    # changes.
    env = {"SERVEDECK_DATABASE_URL": postgres_url, "SERVEDECK_ALERT_INTERVAL": "1"}
    server = start_server(tmp_path, "--workers", "2", env=env)
    headers = {"Authorization": f"Bearer {admin}"}
    try:
        rule = {
            "kind": "error_rate", "threshold": 0.2, "window_s": 10, "min_count": 3, "for_s": 0,
            "clear_for_s": 2, "cooldown_s": 0,
        }  # fmt: skip
        answer = requests.put(
            f"{server.url}/api/v1/models/moody/alert-rules",
            json={"rules": [rule]}, headers=headers, timeout=10,
        )  # fmt: skip
        assert answer.status_code == 200, answer.text

        def alerts() -> list[dict[str, Any]]:
            listed = requests.get(
                f"{server.url}/api/v1/alerts",
                params={"model": "moody", "status": ["open", "acknowledged", "resolved"]},
                headers=headers, timeout=10,
            )  # fmt: skip
            return [a for a in listed.json()["alerts"] if a["kind"] == "error_rate"]

        failing = {"instances": [{**TOY_ROW, "amount": FAILING_AMOUNT}]}
        url = f"{server.url}/v1/models/moody:predict"
        deadline = time.monotonic() + 60
        # A new connection per request: the kernel spreads them over both workers.
        while not alerts():
            assert time.monotonic() < deadline, "no alert within 60 s of failing traffic"
            statuses = {
                requests.post(url, json=failing, headers=headers, timeout=10).status_code
                for _ in range(6)
            }
            assert statuses == {500}
        # The failures stop; both workers' windows clear; one resolution, never a second alert.
        deadline = time.monotonic() + 90
        while (found := alerts())[0]["status"] != "resolved":
            assert len(found) == 1, found
            assert time.monotonic() < deadline, "not resolved within 90 s of the failures"
            requests.post(url, json={"instances": [TOY_ROW]}, headers=headers, timeout=10)
            time.sleep(0.5)  # paced traffic while waiting, not a wait for a result
        [alert] = alerts()
        history = requests.get(
            f"{server.url}/api/v1/alerts/{alert['id']}", headers=headers, timeout=10
        ).json()["history"]
        actions = [h["action"] for h in history if h["action"] != "changed"]
        assert actions == ["raised", "resolved"], history
    finally:
        server.stop()
