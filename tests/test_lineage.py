"""Lineage: feature sources declared at registration, the feedback loops they close (named,
refused unless forced with a reason, which is audited), and the graph over HTTP by role."""

from __future__ import annotations

import json
from typing import Any

import pytest
import skops.io as sio
from fastapi.testclient import TestClient

from backend.deploy.audit import list_events
from backend.errors import Conflict, InputError
from backend.registry.lineage import (
    FORCED_ACTION,
    LineageDeclaration,
    explain_cycle,
    find_cycles,
    lineage_graph,
)
from backend.schemas import FeatureSource
from backend.workspace import Workspace
from tests.helpers import PRICE_SIGNATURE, SETUP, price_model, price_validity

# ---------------------------------------------------------------- the cycle search alone


def test_a_self_loop_and_two_and_three_cycles_are_named_as_paths() -> None:
    assert find_cycles({"fraud": {"fraud"}}) == [["fraud", "fraud"]]
    assert find_cycles({"fraud": {"risk"}, "risk": {"fraud"}}) == [["fraud", "risk", "fraud"]]
    # Named from the alphabetically first model, whatever the order of declaration.
    assert find_cycles({"c": {"a"}, "b": {"c"}, "a": {"b"}}) == [["a", "b", "c", "a"]]
    # Two loops sharing a model are both named, the shorter first.
    both = find_cycles({"a": {"b", "a"}, "b": {"c"}, "c": {"a"}, "x": {"a"}})
    assert both == [["a", "a"], ["a", "b", "c", "a"]]


def test_no_false_cycle_on_a_dag() -> None:
    diamond = {"a": {"b", "c"}, "b": {"d"}, "c": {"d"}, "d": set(), "e": {"a", "d"}}
    assert find_cycles(diamond) == []
    assert find_cycles({}) == []


def test_only_the_cycles_through_a_model_when_asked() -> None:
    graph = {"a": {"b"}, "b": {"a"}, "c": {"c"}, "d": {"c"}}
    assert find_cycles(graph, through="c") == [["c", "c"]]
    assert find_cycles(graph, through="d") == []
    assert find_cycles(graph, through="b") == [["a", "b", "a"]]


def test_a_cycle_is_explained_in_plain_words_with_its_features() -> None:
    two = explain_cycle(
        ["fraud", "risk", "fraud"],
        {("fraud", "risk"): ["fraud_score"], ("risk", "fraud"): ["risk_band", "risk_score"]},
    )
    assert two.startswith(
        "fraud's output feeds risk (as 'fraud_score'), and risk's output feeds fraud "
        "(as 'risk_band' and 'risk_score'): a feedback loop"
    )
    assert "held-out traffic" in two and "fool you" in two
    own = explain_cycle(["fraud", "fraud"], {("fraud", "fraud"): ["last_score"]})
    assert own.startswith("fraud's own output comes back as its input (as 'last_score')")


# ---------------------------------------------------------------- registration


def _register(workspace: Workspace, name: str, sources: dict[str, str], **lineage: Any) -> Any:
    """The small price regressor (inputs x1, x2) as ``name``, with {feature: model}."""
    declaration = LineageDeclaration(
        tuple(FeatureSource(feature=f, model=m) for f, m in sources.items()), **lineage
    )
    return workspace.registry.register_version(
        name,
        sio.dumps(price_model()[0]),
        filename="price.skops",
        validity=price_validity(),
        registered_by="tests",
        registered_role="engineer",
        signature=PRICE_SIGNATURE,
        lineage=declaration,
    )


def test_registration_refuses_a_loop_unless_forced_with_a_reason(store: Workspace) -> None:
    # Declared before the upstream model exists: allowed, with a warning.
    first = _register(store, "a", {"x1": "c"})
    assert first.feature_sources == [FeatureSource(feature="x1", model="c")]
    assert [w for w in first.registration_warnings if "'c' is not registered" in w]
    assert _register(store, "b", {"x1": "a"}).registration_warnings == []
    with pytest.raises(Conflict, match="a -> b -> c -> a") as refused:
        _register(store, "c", {"x2": "b"})
    assert refused.value.field == "feature_sources"
    assert refused.value.details["cycles"][0]["path"] == ["a", "b", "c", "a"]
    with pytest.raises(InputError) as no_reason:
        _register(store, "c", {"x2": "b"}, force=True, reason="  ")
    assert no_reason.value.field == "lineage_reason"
    # Nothing of the refused registrations was kept.
    assert [m.name for m in store.registry.list_models()] == ["a", "b"]

    forced = _register(store, "c", {"x2": "b"}, force=True, reason="shadow test for a week")
    assert any("a -> b -> c -> a" in w for w in forced.registration_warnings)
    events = [e for e in list_events(store.sessions, model="c") if e.action == FORCED_ACTION]
    assert [(e.actor, e.role, e.to_version, e.reason) for e in events] == [
        ("tests", "engineer", "1", "shadow test for a week")
    ]
    assert events[0].details["cycles"] == ["a -> b -> c -> a"]
    # Read back later, the version says what it declared; the warnings were for then only.
    assert store.registry.get_version("c", "1").feature_sources == [
        FeatureSource(feature="x2", model="b")
    ]
    assert store.registry.get_version("c", "1").registration_warnings == []

    graph = lineage_graph(store.sessions, None)
    assert [c.text for c in graph.cycles] == ["a -> b -> c -> a"]
    assert all(node.on_cycle and node.registered for node in graph.nodes)
    assert {(e.from_model, e.to_model, e.feature, e.on_cycle) for e in graph.edges} == {
        ("c", "a", "x1", True),
        ("a", "b", "x1", True),
        ("b", "c", "x2", True),
    }


def test_a_model_fed_by_its_own_output_and_bad_declarations(store: Workspace) -> None:
    with pytest.raises(Conflict, match="selfish -> selfish") as refused:
        _register(store, "selfish", {"x1": "selfish"})
    assert "own output comes back" in refused.value.reason
    with pytest.raises(InputError, match="not an input") as unknown_feature:
        _register(store, "m", {"nope": "other"})
    assert unknown_feature.value.field == "feature_sources[0].feature"
    with pytest.raises(InputError, match="model names") as bad_name:
        _register(store, "m", {"x1": "no spaces please"})
    assert bad_name.value.field == "feature_sources[0].model"
    with pytest.raises(InputError, match="declared twice"):
        LineageDeclaration((FeatureSource(feature="x1", model="a"),) * 2)
    assert store.registry.list_models() == []


def test_the_graph_follows_the_serving_version_and_a_dag_has_no_cycle(store: Workspace) -> None:
    _register(store, "up", {})
    _register(store, "left", {"x1": "up"})
    _register(store, "right", {"x1": "up"})
    _register(store, "down", {"x1": "left", "x2": "right"})
    graph = lineage_graph(store.sessions, None)
    assert graph.cycles == [] and not any(e.on_cycle for e in graph.edges)
    assert len(graph.edges) == 4
    # A second version of "up" fed by "down" closes loops; forced, it is the newest version.
    _register(store, "up", {"x2": "down"}, force=True, reason="measured on held-out traffic")
    looped = lineage_graph(store.sessions, None)
    assert [c.text for c in looped.cycles] == [
        "down -> up -> left -> down",
        "down -> up -> right -> down",
    ]
    # Serving version 1 (which declares nothing), the graph is the DAG again.
    store.deploy.deploy("up", "1", "back to the plain one", SETUP)
    assert lineage_graph(store.sessions, None).cycles == []
    up = next(n for n in lineage_graph(store.sessions, None).nodes if n.name == "up")
    assert (up.serving_version, up.latest_version, up.declaring_version) == ("1", "2", "1")


# ---------------------------------------------------------------- over HTTP, by role


def _post_version(client: TestClient, token: str, name: str, metadata: dict[str, Any]) -> Any:
    body = {
        "validity": price_validity().model_dump(mode="json"),
        "signature": [s.model_dump() for s in PRICE_SIGNATURE],
        **metadata,
    }
    files = {"artifact": ("p.skops", sio.dumps(price_model()[0]), "application/octet-stream")}
    return client.post(
        f"/api/v1/models/{name}/versions",
        headers={"Authorization": f"Bearer {token}"},
        files=files,
        data={"metadata": json.dumps(body)},
    )


def test_lineage_over_http_refusal_force_audit_and_roles(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    engineer = workspace.tokens.create("eng", "engineer")
    support = workspace.tokens.create("sup", "support")
    app_client = workspace.tokens.create("app", "client", models=["price"])
    scoped = workspace.tokens.create("sup-price", "support", models=["price"])
    admin = workspace.admin_token()

    # price (a toy model already registered) is fed by "toy"'s output from its version 2.
    fed = _post_version(client, admin, "price", {"feature_sources": [
        {"feature": "x1", "model": "toy", "output": "predict_proba"}]})  # fmt: skip
    assert fed.status_code == 201, fed.text
    assert fed.json()["feature_sources"] == [
        {"feature": "x1", "model": "toy", "output": "predict_proba"}
    ]
    loop = {"feature_sources": [{"feature": "x2", "model": "price"}]}
    refused = _post_version(client, engineer, "price", loop)
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "feature_sources"
    assert refused.json()["cycles"][0]["text"] == "price -> price"
    no_reason = _post_version(client, engineer, "price", {**loop, "force_lineage": True})
    assert no_reason.status_code == 422 and no_reason.json()["field"] == "lineage_reason"
    bad_output = _post_version(client, engineer, "price", {"feature_sources": [
        {"feature": "x1", "model": "toy", "output": "logits"}]})  # fmt: skip
    assert bad_output.status_code == 422
    assert bad_output.json()["field"] == "metadata.feature_sources.0.output"
    assert _post_version(client, support, "price", loop).status_code == 403

    forced = _post_version(
        client,
        engineer,
        "price",
        {**loop, "force_lineage": True, "lineage_reason": "lag features, reviewed by Ana"},
    )
    assert forced.status_code == 201, forced.text
    assert forced.json()["version"] == "3"
    audit = client.get("/api/v1/audit", headers=admin_headers, params={"model": "price"}).json()
    forced_events = [e for e in audit["events"] if e["action"] == FORCED_ACTION]
    assert [(e["actor"], e["role"], e["to_version"], e["reason"]) for e in forced_events] == [
        ("eng", "engineer", "3", "lag features, reviewed by Ana")
    ]
    assert forced_events[0]["details"]["cycles"] == ["price -> price"]

    # price serves version 1, which declares nothing: the graph has no edge until version 3
    # serves.
    def lineage(token: str) -> Any:
        return client.get("/api/v1/lineage", headers={"Authorization": f"Bearer {token}"})

    assert lineage(admin).json()["edges"] == []
    workspace.deploy.deploy("price", "3", "accept the loop", SETUP)
    for token in (admin, engineer, support):
        graph = lineage(token)
        assert graph.status_code == 200, graph.text
        body = graph.json()
        assert [c["path"] for c in body["cycles"]] == [["price", "price"]]
        assert "own output comes back" in body["cycles"][0]["explanation"]
        assert {n["name"]: n["serving_version"] for n in body["nodes"]} == {
            "price": "3",
            "toy": "1",
        }
    assert lineage(app_client).status_code == 403
    assert client.get("/api/v1/lineage").status_code == 401
    # A token scoped to price sees price's declarations and its loop, but nothing of toy.
    seen = lineage(scoped).json()
    assert {n["name"]: n["in_scope"] for n in seen["nodes"]} == {"price": True}
    assert [c["text"] for c in seen["cycles"]] == ["price -> price"]


# ---------------------------------------------------------------- migration


def test_a_store_at_0011_upgrades_and_its_versions_declare_nothing(
    tmp_path: Any, database_url: str
) -> None:
    from alembic import command
    from sqlalchemy import inspect, text

    from backend.db import create_db_engine
    from backend.db.engine import alembic_config
    from tests.helpers import make_settings

    engine = create_db_engine(database_url)
    command.upgrade(alembic_config(engine), "0011")
    assert "feature_sources" not in inspect(engine).get_table_names()
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO models (name, task, description, state_generation, created_at) "
                "VALUES ('old', 'regression', '', 0, CURRENT_TIMESTAMP)"
            )
        )
        connection.execute(
            text(
                "INSERT INTO model_versions (model_id, number, artifact_sha256, "
                "artifact_format, artifact_size, skops_trusted_types, task, signature, "
                "example_input, validity, description, registered_by, created_at) VALUES "
                "((SELECT id FROM models WHERE name = 'old'), 1, :sha, 'skops', 1, '[]', "
                "'regression', :signature, '{}', :validity, '', 'before', CURRENT_TIMESTAMP)"
            ),
            {
                "sha": "0" * 64,
                "signature": json.dumps([s.model_dump() for s in PRICE_SIGNATURE]),
                "validity": price_validity().model_dump_json(),
            },
        )
    engine.dispose()
    workspace = Workspace.open(make_settings(tmp_path, database_url))  # upgrades to head
    try:
        assert workspace.registry.get_version("old", "1").feature_sources == []
        _register(workspace, "new", {"x1": "old"})
        graph = lineage_graph(workspace.sessions, None)
        assert [(e.from_model, e.to_model) for e in graph.edges] == [("old", "new")]
    finally:
        workspace.close()


# ---------------------------------------------------------------- the command line


def test_the_command_line_declares_sources_and_forces_a_loop_with_a_reason(
    tmp_path: Any,
) -> None:
    from tests.test_cli import run_cli

    artifact = tmp_path / "price.skops"
    artifact.write_bytes(sio.dumps(price_model()[0]))
    validity = tmp_path / "validity.json"
    validity.write_text(price_validity().model_dump_json())
    signature = tmp_path / "signature.json"
    signature.write_text(json.dumps([s.model_dump() for s in PRICE_SIGNATURE]))
    common = ["--artifact", str(artifact), "--validity", str(validity)]
    common += ["--signature", str(signature), "--data-dir", str(tmp_path / "ws")]

    def register(*extra: str) -> Any:
        return run_cli("models", "register", "lag", *common, *extra)

    malformed = register("--feature-source", "x1")
    assert malformed.returncode == 2 and "FEATURE=MODEL" in malformed.stderr
    refused = register("--feature-source", "x1=lag:predict")
    assert refused.returncode == 2, refused.stderr
    assert "lag -> lag" in refused.stderr and "--force-lineage" in refused.stderr
    no_reason = register("--feature-source", "x1=lag", "--force-lineage")
    assert no_reason.returncode == 2 and "lineage_reason" in no_reason.stderr
    forced = register(
        "--feature-source", "x1=lag", "--force-lineage", "--lineage-reason", "yesterday's value"
    )
    assert forced.returncode == 0, forced.stderr
    assert "registered lag version 1" in forced.stdout and "lag -> lag" in forced.stderr
