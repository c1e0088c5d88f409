"""Registry round trips: formats, trust, hashes, signatures, validity assets, numbering."""

from __future__ import annotations

import json
import pickle

import pandas as pd
import pytest
import skops.io as sio
from fastapi.testclient import TestClient
from sklearn.ensemble import HistGradientBoostingClassifier

from backend.deploy.audit import list_events
from backend.errors import ArtifactIntegrityError, InputError
from backend.registry import infer_signature
from backend.schemas import ValidityAssets
from backend.workspace import Workspace
from tests.helpers import (
    PRICE_SIGNATURE,
    TOY_ROW,
    TOY_SIGNATURE,
    oip_tensors,
    price_model,
    price_validity,
    toy_classifier,
    toy_frame,
    toy_validity,
)


def _register(workspace: Workspace, data: bytes, filename: str = "m.skops", **kwargs):  # type: ignore[no-untyped-def]
    return workspace.registry.register_version(
        "toy",
        data,
        filename=filename,
        validity=toy_validity(),
        registered_by="tests",
        signature=kwargs.pop("signature", TOY_SIGNATURE),
        **kwargs,
    )


def test_versions_are_numbered_and_described(workspace: Workspace) -> None:
    second = _register(workspace, sio.dumps(toy_classifier()), description="retrained")
    assert second.version == "2"
    model = workspace.registry.get_model("toy")
    assert [v.version for v in model.versions] == ["1", "2"]
    assert model.active_version == "1" and model.latest_version == "2"
    assert model.versions[1].description == "retrained"
    assert model.versions[1].class_labels == [0, 1]
    assert model.versions[1].class_names is None  # none given: the labels are their own names
    assert model.versions[0].class_names == ["legit", "fraud"]
    # A class left unnamed keeps its label as its name.
    third = _register(workspace, sio.dumps(toy_classifier()), class_names={"1": "fraud"})
    assert third.class_names == ["0", "fraud"]
    assert model.versions[1].example_input["country"] in ("DE", "FR", "US")
    assert model.versions[1].validity.metric == "accuracy"
    assert len(model.versions[1].artifact_sha256) == 64


def test_tampered_artifact_is_detected(workspace: Workspace) -> None:
    info = workspace.registry.get_version("toy", "1")
    path = workspace.registry.store.path_for(info.artifact_sha256)
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    with pytest.raises(ArtifactIntegrityError, match="modified after registration"):
        workspace.registry.load("toy", "1")
    path.unlink()
    with pytest.raises(ArtifactIntegrityError, match="missing"):
        workspace.registry.load("toy", "1")


def test_pickle_needs_explicit_trust_which_is_recorded(workspace: Workspace) -> None:
    data = pickle.dumps(toy_classifier())
    with pytest.raises(InputError, match="can run arbitrary code"):
        _register(workspace, data, filename="m.pkl")
    with pytest.raises(InputError, match="needs a reason") as caught:
        _register(workspace, data, filename="m.pkl", trust_pickle=True, trust_reason=" ")
    assert caught.value.field == "trust_reason"
    info = _register(
        workspace, data, filename="m.pkl", trust_pickle=True, trust_reason="built by our CI"
    )
    assert info.artifact_format == "pickle" and info.trusted_by == "tests"
    trusted = [
        e for e in list_events(workspace.sessions, model="toy") if e.action == "trust_pickle"
    ]
    assert [(e.actor, e.role, e.to_version, e.reason) for e in trusted] == [
        ("tests", "admin", info.version, "built by our CI")
    ]
    assert trusted[0].details["artifact_sha256"] == info.artifact_sha256
    assert workspace.registry.load("toy", info.version).predict([TOY_ROW]).labels


def test_untrusted_skops_types_must_be_named(workspace: Workspace) -> None:
    frame, labels = toy_frame()
    numeric = frame[["amount", "count"]]
    model = HistGradientBoostingClassifier(max_iter=5).fit(numeric, labels)
    data = sio.dumps(model)
    signature = infer_signature(numeric)
    with pytest.raises(InputError, match="TreePredictor"):
        workspace.registry.register_version(
            "gbm",
            data,
            filename="g.skops",
            validity=_numeric_validity(model),
            registered_by="t",
            signature=signature,
        )
    info = workspace.registry.register_version(
        "gbm",
        data,
        filename="g.skops",
        validity=_numeric_validity(model),
        registered_by="t",
        signature=signature,
        trusted_types=sio.get_untrusted_types(data=data),
    )
    assert info.version == "1"
    assert workspace.registry.load("gbm", "1").predict([{"amount": 1.0, "count": 2}]).labels


def _numeric_validity(model):  # type: ignore[no-untyped-def]
    validity = toy_validity(None)
    rows = [{"amount": 1.0, "count": 2}]
    return ValidityAssets.model_validate(
        {
            **validity.model_dump(),
            "end_to_end": [
                {
                    "inputs": rows[0],
                    "expected": int(model.predict(toy_frame()[0][["amount", "count"]].head(1))[0]),
                }
            ],
            "confidence_set": [{"inputs": rows[0], "label": 0}],
        }
    )


def test_signature_inference_from_a_training_frame() -> None:
    frame, _ = toy_frame()
    specs = {spec.name: spec for spec in infer_signature(frame, observed_ranges=True)}
    assert specs["amount"].type == "float" and specs["amount"].min is not None
    assert specs["count"].type == "int"
    assert specs["country"].type == "category" and specs["country"].categories == ["DE", "FR", "US"]
    assert specs["online"].type == "bool"
    assert specs["note"].type == "category" and specs["note"].required


def test_signature_inference_from_a_csv_with_gaps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    frame, _ = toy_frame()
    frame = frame.copy()
    frame.loc[frame.index[:5], "amount"] = None
    frame.to_csv(tmp_path / "train.csv", index=False)
    specs = {s.name: s for s in infer_signature(pd.read_csv(tmp_path / "train.csv"))}
    assert specs["note"].type == "string" and not specs["note"].required
    assert specs["amount"].type == "float" and not specs["amount"].required
    assert specs["count"].required


def test_bad_registrations(workspace: Workspace) -> None:
    good = sio.dumps(toy_classifier())
    with pytest.raises(InputError, match="cannot tell the format"):
        _register(workspace, b"garbage", filename="m.bin")
    with pytest.raises(InputError, match="not a readable skops file"):
        _register(workspace, b"PK\x03\x04garbage", filename="m.skops")
    with pytest.raises(InputError, match="differ from the model's"):
        _register(workspace, good, signature=list(reversed(TOY_SIGNATURE)))
    broken = ValidityAssets.model_validate(
        {**toy_validity().model_dump(), "end_to_end": [{"inputs": {"amount": "x"}, "expected": 1}]}
    )
    with pytest.raises(InputError) as caught:
        workspace.registry.register_version(
            "toy",
            good,
            filename="m.skops",
            validity=broken,
            registered_by="t",
            signature=TOY_SIGNATURE,
        )
    assert caught.value.field == "validity.end_to_end[0].inputs.amount"
    with pytest.raises(InputError, match="regression"):
        _register(workspace, good, task="regression")
    with pytest.raises(InputError, match="not one of the model's classes: 0, 1") as caught:
        _register(workspace, good, class_names={"yes": "fraud"})
    assert caught.value.field == "class_names.yes"
    with pytest.raises(InputError, match="same name"):
        _register(workspace, good, class_names={"0": "fraud", "1": "fraud"})
    with pytest.raises(InputError, match="1 to 64 characters"):
        _register(workspace, good, class_names={"1": " "})
    with pytest.raises(InputError, match="only a classifier"):
        workspace.registry.register_version(
            "price-named",
            sio.dumps(price_model()[0]),
            filename="p.skops",
            validity=price_validity(),
            registered_by="t",
            signature=PRICE_SIGNATURE,
            class_names={"1": "high"},
        )
    with pytest.raises(InputError, match="model names"):
        workspace.registry.register_version(
            "bad name!", good, filename="m.skops", validity=toy_validity(), registered_by="t"
        )


def test_register_over_http(client: TestClient, admin_headers: dict[str, str]) -> None:
    metadata = {
        "validity": toy_validity().model_dump(mode="json"),
        "signature": [s.model_dump() for s in TOY_SIGNATURE],
        "description": "via http",
        "class_names": {"0": "legit", "1": "fraud"},
    }
    files = {"artifact": ("toy.skops", sio.dumps(toy_classifier()), "application/octet-stream")}
    response = client.post(
        "/api/v1/models/toy/versions",
        headers=admin_headers,
        files=files,
        data={"metadata": json.dumps(metadata)},
    )
    assert response.status_code == 201, response.text
    assert response.json()["version"] == "2"
    described = client.get("/api/v1/models/toy", headers=admin_headers).json()
    assert described["active_version"] == "1"
    assert [v["version"] for v in described["versions"]] == ["1", "2"]
    assert described["versions"][0]["signature"][0]["max"] == 10_000
    one = client.get("/api/v1/models/toy/versions/2", headers=admin_headers).json()
    assert one["registered_by"] == "admin"
    assert one["class_labels"] == [0, 1] and one["class_names"] == ["legit", "fraud"]
    metadata["class_names"] = {"2": "other"}
    refused = client.post(
        "/api/v1/models/toy/versions",
        headers=admin_headers,
        files=files,
        data={"metadata": json.dumps(metadata)},
    )
    assert refused.status_code == 422 and refused.json()["field"] == "class_names.2"
    # The record form answers with the active version.
    served = client.post(
        "/v1/models/toy:predict", headers=admin_headers, json={"instances": [TOY_ROW]}
    )
    assert served.json()["route"] == "active" and served.json()["model_version"] == "1"
    # Engineers may try a registered version before it is deployed; routed as "explicit".
    tried = client.post(
        "/v2/models/toy/versions/2/infer", headers=admin_headers, json=oip_tensors([TOY_ROW])
    ).json()
    assert tried["model_version"] == "2" and tried["parameters"]["route"] == "explicit"

    bad_json = client.post(
        "/api/v1/models/toy/versions",
        headers=admin_headers,
        files=files,
        data={"metadata": "{nope"},
    )
    assert bad_json.status_code == 422 and bad_json.json()["field"] == "metadata"
    no_validity = client.post(
        "/api/v1/models/toy/versions",
        headers=admin_headers,
        files=files,
        data={"metadata": json.dumps({"description": "x"})},
    )
    assert no_validity.status_code == 422
    assert no_validity.json()["field"] == "metadata.validity"
    pickled = {"artifact": ("toy.pkl", pickle.dumps(toy_classifier()), "application/octet-stream")}
    refused = client.post(
        "/api/v1/models/toy/versions",
        headers=admin_headers,
        files=pickled,
        data={"metadata": json.dumps(metadata)},
    )
    assert refused.status_code == 422 and "trust_pickle" in refused.json()["reason"]
