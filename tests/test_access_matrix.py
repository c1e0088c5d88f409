"""Every route of the app, called by every kind of token, for its own and another model.

The expectations come from one table (ROUTES): the permission a route needs, and whether it
concerns one model (in its path or body) or lists what the token may see. A route the app has
and the table lacks fails the test, so a new route cannot be left out.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from backend.api.app import create_app
from backend.auth.tokens import PERMISSIONS
from backend.errors import InputError
from backend.workspace import Workspace
from tests.helpers import TOY_ROW, oip_tensors

PRICE_ROW = {"x1": 0.5, "x2": -1.0}
PUBLIC = {
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/openapi.json"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/redoc"),
}
_counter = itertools.count()
# Filled by the world fixture: a logged prediction and a report (filed by admin) per model.
_PREDICTIONS: dict[str, str] = {}
_REPORTS: dict[str, int] = {}


def _infer_body(model: str) -> dict[str, Any]:
    if model == "toy":
        return oip_tensors([TOY_ROW])
    return {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [0.5, -1.0]}]}


def _record_body(model: str) -> dict[str, Any]:
    return {"instances": [TOY_ROW if model == "toy" else PRICE_ROW]}


@dataclass(frozen=True)
class Rule:
    """What a route needs: a permission (None: any valid token), and its model: "path" (or
    "body") when it concerns one model, "listed" when it lists what the token may see."""

    permission: str | None
    model: str | None = None
    # Tokens scoped to some models may not use it at all (it reaches every model).
    unscoped_only: bool = False
    # How another model's object is refused: 403 names the scope, 404 hides that it exists.
    hidden_as: int = 403
    body: Callable[[str], Any] | None = None
    stream: bool = False
    # Tokens without this permission see only what they filed themselves (others: 404).
    own_unless: str | None = None


ROUTES: dict[tuple[str, str], Rule] = {
    ("GET", "/v2"): Rule(None),
    ("GET", "/v2/models/{name}"): Rule("predict", "path"),
    ("GET", "/v2/models/{name}/versions/{version}"): Rule("predict", "path"),
    ("GET", "/v2/models/{name}/ready"): Rule("predict", "path"),
    ("GET", "/v2/models/{name}/versions/{version}/ready"): Rule("predict", "path"),
    ("POST", "/v2/models/{name}/infer"): Rule("predict", "path", body=_infer_body),
    ("POST", "/v2/models/{name}/versions/{version}/infer"): Rule(
        "predict", "path", body=_infer_body
    ),
    ("POST", "/v1/models/{name}:predict"): Rule("predict", "path", body=_record_body),
    ("GET", "/api/v1/whoami"): Rule(None),
    ("GET", "/api/v1/models"): Rule("read", "listed"),
    ("GET", "/api/v1/models/{name}"): Rule("read", "path"),
    ("GET", "/api/v1/models/{name}/versions/{version}"): Rule("read", "path"),
    ("POST", "/api/v1/models/{name}/versions"): Rule("register", "path"),
    ("GET", "/api/v1/predictions"): Rule("read_predictions", "listed"),
    ("GET", "/api/v1/tokens"): Rule("tokens", unscoped_only=True),
    ("POST", "/api/v1/tokens"): Rule(
        "tokens",
        unscoped_only=True,
        body=lambda _m: {"name": f"matrix-{next(_counter)}", "role": "support"},
    ),
    ("DELETE", "/api/v1/tokens/{name}"): Rule("tokens", unscoped_only=True),
    ("POST", "/api/v1/models/{name}/deploy"): Rule(
        "deploy", "path", body=lambda _m: {"version": "1", "reason": "matrix"}
    ),
    ("POST", "/api/v1/models/{name}/rollback"): Rule(
        "deploy", "path", body=lambda _m: {"reason": "matrix"}
    ),
    ("PUT", "/api/v1/models/{name}/rollout"): Rule(
        "deploy", "path", body=lambda _m: {"candidate": "9", "mode": "canary"}
    ),
    ("GET", "/api/v1/models/{name}/rollout"): Rule("read", "path"),
    ("POST", "/api/v1/models/{name}/rollout/promote"): Rule("deploy", "path"),
    ("POST", "/api/v1/models/{name}/rollout/abort"): Rule("deploy", "path"),
    ("POST", "/api/v1/models/{name}/rollout/pause"): Rule("deploy", "path"),
    ("POST", "/api/v1/models/{name}/rollout/resume"): Rule("deploy", "path"),
    ("PUT", "/api/v1/models/{name}/policy"): Rule("deploy", "path", body=lambda _m: {}),
    ("GET", "/api/v1/models/{name}/gate-reports"): Rule("read", "path"),
    ("GET", "/api/v1/audit"): Rule("read", "listed"),
    ("GET", "/api/v1/lineage"): Rule("read", "listed"),
    ("POST", "/api/v1/feedback"): Rule(
        "feedback",
        "body",
        body=lambda m: {"labels": [{"request_id": "matrix", "label": 1, "model": m}]},
    ),
    ("GET", "/api/v1/events/predictions"): Rule("read_predictions", "listed", stream=True),
    ("GET", "/api/v1/monitor/live"): Rule("read_predictions", "listed"),
    ("GET", "/api/v1/alerts"): Rule("read", "listed"),
    ("GET", "/api/v1/alerts/{alert_id}"): Rule("read", "path", hidden_as=404),
    ("POST", "/api/v1/alerts/{alert_id}/acknowledge"): Rule("deploy", "path", hidden_as=404),
    ("GET", "/api/v1/events/alerts"): Rule("read", "listed", stream=True),
    # The caller's own files, no model: any token that may read (support and up).
    ("POST", "/api/v1/drift/files"): Rule("read"),
    ("GET", "/api/v1/models/{name}/performance"): Rule("read_predictions", "path"),
    ("GET", "/api/v1/models/{name}/feedback-loops"): Rule("read_predictions", "path"),
    ("GET", "/api/v1/models/{name}/drift"): Rule("read", "path"),
    ("GET", "/api/v1/models/{name}/drift/series"): Rule("read", "path"),
    ("GET", "/api/v1/models/{name}/drift/settings"): Rule("read", "path"),
    ("PUT", "/api/v1/models/{name}/drift/settings"): Rule("deploy", "path", body=lambda _m: {}),
    ("GET", "/api/v1/events"): Rule("read", "listed", stream=True),
    ("GET", "/api/v1/events/position"): Rule("read"),
    ("GET", "/api/v1/alert-rules/defaults"): Rule("read"),
    ("GET", "/api/v1/models/{name}/alert-rules"): Rule("read", "path"),
    ("PUT", "/api/v1/models/{name}/alert-rules"): Rule(
        "deploy", "path", body=lambda _m: {"rules": [{"kind": "error_rate", "threshold": 0.1}]}
    ),
    ("GET", "/api/v1/models/{name}/held-out"): Rule("read", "path"),
    ("PUT", "/api/v1/models/{name}/held-out"): Rule(
        "deploy",
        "path",
        body=lambda m: {"share_percent": 0, "policy": {"kind": "default", "answer": 0}},
    ),
    ("DELETE", "/api/v1/models/{name}/held-out"): Rule("deploy", "path"),
    # The held-out review queue: reviewers read logged inputs and write labels, so they need
    # read_predictions and feedback (support and up; never a client).
    ("GET", "/api/v1/models/{name}/review/next"): Rule("read_predictions", "path"),
    ("POST", "/api/v1/models/{name}/review/{item}/answer"): Rule(
        "read_predictions", "path", body=lambda _m: {"label": 1}
    ),
    ("POST", "/api/v1/models/{name}/review/{item}/skip"): Rule("read_predictions", "path"),
    ("POST", "/api/v1/models/{name}/review/undo"): Rule("read_predictions", "path"),
    ("GET", "/api/v1/models/{name}/review/stats"): Rule("read_predictions", "path"),
    # The retraining export reads every row's features: engineers and admins, their models.
    ("POST", "/api/v1/exports/preview"): Rule("export", "body", body=lambda m: {"model": m}),
    ("POST", "/api/v1/exports"): Rule("export", "body", body=lambda m: {"model": m}),
    # Prometheus's scrape: the live statistics' counts, so their permission.
    ("GET", "/metrics"): Rule("read_predictions", "listed"),
    # Error reports: every role files for its models; triage (support and up) reads and
    # changes them; another model's report is hidden (404).
    ("POST", "/api/v1/reports"): Rule(
        "report",
        "body",
        body=lambda m: {"request_id": _PREDICTIONS[m], "model": m, "category": "other"},
    ),
    ("GET", "/api/v1/reports"): Rule("triage", "listed"),
    ("GET", "/api/v1/reports/counts"): Rule("triage", "listed"),
    ("POST", "/api/v1/reports/bulk"): Rule(
        "triage",
        "body",
        hidden_as=404,
        body=lambda m: {"ids": [_REPORTS[m]], "change": {"severity": "low"}},
    ),
    ("GET", "/api/v1/reports/{report_id}"): Rule("triage", "path", hidden_as=404),
    ("PATCH", "/api/v1/reports/{report_id}"): Rule(
        "triage", "path", hidden_as=404, body=lambda _m: {"severity": "medium"}
    ),
    ("POST", "/api/v1/reports/{report_id}/notes"): Rule(
        "triage", "path", hidden_as=404, body=lambda _m: {"text": "matrix"}
    ),
    ("GET", "/api/v1/reports/{report_id}/status"): Rule(
        "report", "path", hidden_as=404, own_unless="triage"
    ),
}


@dataclass(frozen=True)
class Caller:
    name: str
    role: str
    models: list[str] | None


CALLERS = [
    Caller("admin", "admin", None),
    Caller("toy-admin", "admin", ["toy"]),
    Caller("engineer", "engineer", None),
    Caller("price-engineer", "engineer", ["price"]),
    Caller("support", "support", None),
    Caller("toy-support", "support", ["toy"]),
    # Scoped to several models: listings and streams show them all without a model named.
    Caller("both-support", "support", ["toy", "price"]),
    Caller("toy-client", "client", ["toy"]),
    Caller("both-client", "client", ["toy", "price"]),
]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    from tests.helpers import make_settings, register_toy_models

    workspace = Workspace.open(make_settings(tmp_path_factory.mktemp("matrix")))
    register_toy_models(workspace)
    tokens = {
        caller.name: (
            workspace.admin_token()
            if caller.name == "admin"
            else workspace.tokens.create(caller.name, caller.role, caller.models)
        )
        for caller in CALLERS
    }
    alerts = {
        model: workspace.alerts.raise_once(
            model,
            "1",
            "live_metric",
            severity="warning",
            title=f"{model} matrix alert",
            explanation="raised by the access test",
            details={},
        )[0].id
        for model in ("toy", "price")
    }
    with TestClient(create_app(workspace=workspace)) as client:
        admin = {"Authorization": f"Bearer {tokens['admin']}"}
        for model in ("toy", "price"):
            answer = client.post(
                f"/v1/models/{model}:predict", headers=admin, json=_record_body(model)
            )
            assert answer.status_code == 200, answer.text
            _PREDICTIONS[model] = answer.json()["request_id"]
        client.app.state.serving.prediction_log.flush(10)  # type: ignore[attr-defined]
        for model in ("toy", "price"):
            filed = client.post(
                "/api/v1/reports",
                headers=admin,
                json={"request_id": _PREDICTIONS[model], "model": model, "category": "other"},
            )
            assert filed.status_code == 201, filed.text
            _REPORTS[model] = filed.json()["id"]
        yield client, {"tokens": tokens, "alerts": alerts}
    workspace.close()


def served_routes(client: TestClient) -> set[tuple[str, str]]:
    """(method, path) of every route, those of included routers too."""
    return {
        (method, str(route.path))
        for route in iter_route_contexts(client.app.routes)  # type: ignore[attr-defined]
        for method in (route.methods or ())
        if method not in ("HEAD", "OPTIONS")
    }


def test_the_table_covers_every_route_of_the_app(
    world: tuple[TestClient, dict[str, Any]],
) -> None:
    client, _ = world
    served = served_routes(client)
    missing = sorted(served - PUBLIC - set(ROUTES))
    assert not missing, f"routes without an access rule in ROUTES: {missing}"
    stale = sorted(set(ROUTES) - served)
    assert not stale, f"ROUTES lists routes the app does not have: {stale}"
    # The table names only permissions the roles know.
    known = set().union(*PERMISSIONS.values())
    assert {rule.permission for rule in ROUTES.values()} - {None} <= known


def test_a_client_token_must_be_scoped(world: tuple[TestClient, dict[str, Any]]) -> None:
    client, context = world
    answer = client.post(
        "/api/v1/tokens",
        headers={"Authorization": f"Bearer {context['tokens']['admin']}"},
        json={"name": "open-client", "role": "client"},
    )
    assert answer.status_code == 422 and answer.json()["field"] == "models"
    with pytest.raises(InputError):
        client.app.state.workspace.tokens.create("open-client", "client")  # type: ignore[attr-defined]


def _concrete(path: str, model: str, alerts: dict[str, int]) -> str:
    return (
        path.replace("{name}", model if "/tokens/" not in path else "nobody")
        .replace("{version}", "1")
        .replace("{alert_id}", str(alerts[model]))
        .replace("{item}", "1")
        .replace("{report_id}", str(_REPORTS.get(model, 0)))
    )


def _call(
    client: TestClient, method: str, path: str, rule: Rule, model: str, token: str
) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    params: dict[str, str] = {}
    if path.endswith("/versions") and method == "POST":
        answer = client.post(
            path,
            headers=headers,
            files={"artifact": ("m.skops", b"PK\x03\x04", "application/octet-stream")},
            data={"metadata": json.dumps({})},
        )
        return answer.status_code, None
    if rule.stream:
        # From the start of the alerts: the first message shows the first alert it may see.
        if path.endswith("/events/alerts"):
            headers["Last-Event-ID"] = "0"
        elif path.endswith("/events"):
            headers["Last-Event-ID"] = "0-0"
        with client.stream("GET", path, headers=headers, params=params) as answer:
            if answer.status_code != 200:
                answer.read()
                return answer.status_code, answer.json()
            for line in answer.iter_lines():
                if line.startswith("data: "):
                    return 200, json.loads(line.removeprefix("data: "))
        return answer.status_code, None

    body = rule.body(model) if rule.body is not None else None
    answer = client.request(method, path, headers=headers, json=body, params=params)
    try:
        payload = answer.json()
    except ValueError:
        payload = answer.text  # the Prometheus text format
    return answer.status_code, payload


def _listed_models(path: str, payload: Any) -> set[str]:
    """The models a listing showed."""
    if path.endswith("/events/predictions"):
        return {event["model"] for event in payload["events"]}
    if path.endswith("/events/alerts") or path.endswith("/events"):
        return {payload["model"]}
    if path.endswith("/models"):
        return {m["name"] for m in payload["models"]}
    if path.endswith("/predictions"):
        return {p["model"] for p in payload["predictions"]}
    if path.endswith("/audit"):
        return {e["model"] for e in payload["events"] if e["model"] is not None}
    if path.endswith("/alerts"):
        return {a["model"] for a in payload["alerts"]}
    if path.endswith("/reports"):
        return {r["model"] for r in payload["reports"]}
    if path.endswith("/lineage"):
        # An upstream model outside the scope is named by its consumer's declaration (in_scope
        # false, nothing else shown); what the graph describes is the models in scope.
        return {n["name"] for n in payload["nodes"] if n["in_scope"]} | {
            e["to_model"] for e in payload["edges"]
        }
    if path == "/metrics":
        return {
            sample.labels["model"]
            for family in text_string_to_metric_families(payload)
            for sample in family.samples
            if "model" in sample.labels
        }
    if path.endswith("/monitor/live"):
        return {payload["model"]} if payload["model"] else {"toy", "price"}
    return set()


@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c.name)
def test_every_route_answers_each_role_as_the_rules_say(
    world: tuple[TestClient, dict[str, Any]], caller: Caller
) -> None:
    client, context = world
    token = context["tokens"][caller.name]
    role_may = PERMISSIONS[caller.role]
    wrong: list[str] = []
    for (method, template), rule in ROUTES.items():
        models = ("toy", "price") if rule.model in ("path", "body") else ("toy",)
        for model in models:
            path = _concrete(template, model, context["alerts"])
            allowed = rule.permission is None or rule.permission in role_may
            if rule.unscoped_only and caller.models is not None:
                allowed = False
            in_scope = caller.models is None or model in caller.models
            status, payload = _call(client, method, path, rule, model, token)
            if not allowed:
                expected = {403}
            elif rule.model in ("path", "body") and not in_scope:
                expected = {rule.hidden_as}
            elif rule.own_unless is not None and rule.own_unless not in role_may:
                expected = {404}  # filed by admin, not by this token
            else:
                expected = None  # anything but a refusal
            seen = f"{method} {path} ({model}) -> {status} {str(payload)[:160]}"
            if expected is not None and status not in expected:
                wrong.append(f"expected {sorted(expected)}: {seen}")
            elif expected is None and status in (401, 403, 404 if rule.hidden_as == 404 else 401):
                wrong.append(f"expected it allowed: {seen}")
            elif expected is None and rule.model == "listed" and caller.models is not None:
                if status != 200:
                    wrong.append(f"expected a listing: {seen}")
                else:
                    outside = _listed_models(template, payload) - set(caller.models)
                    if outside:
                        wrong.append(f"showed other models {sorted(outside)}: {seen}")
    assert not wrong, "\n".join(wrong)


def test_every_route_but_the_public_ones_needs_a_valid_token(
    world: tuple[TestClient, dict[str, Any]],
) -> None:
    client, context = world
    wrong = []
    for method, template in sorted(served_routes(client) - PUBLIC):
        path = _concrete(template, "toy", context["alerts"])
        for headers in ({}, {"Authorization": "Bearer sdk_wrong"}, {"Authorization": "Basic a"}):
            answer = client.request(method, path, headers=headers, json={})
            if answer.status_code != 401 or answer.json().get("field") != "authorization":
                wrong.append(f"{method} {path} {headers} -> {answer.status_code}")
    assert not wrong, "\n".join(wrong)
