"""The retraining export, checked row by row against the log and the labels: the features as
logged, the answer and probabilities, the best label by provenance (review over a confirmed
report's correction over feedback), the influence mark, every filter, the preview's counts,
the manifest's sha256, the API's streamed ZIP, its roles and refusals, and the CLI."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import io
import json
import threading
import time
import zipfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

import backend.api.exports as api_exports
from backend.auth import Principal
from backend.cli import main as cli_main
from backend.db.report_tables import ErrorReportRow
from backend.db.tables import LabelRow, PredictionRow
from backend.feedback import store_labels
from backend.feedback.export import Export
from backend.feedback.review import ReviewQueue
from backend.schemas import ExportRequest, LabelIn
from backend.workspace import Workspace
from tests.helpers import TOY_ROW
from tests.review_helpers import add_held_out_rows

START = 1_790_000_000.0


@dataclass
class Case:
    """One logged row and the label the export must give it."""

    request_id: str
    route: str
    label: Any = None
    source: str = "unlabelled"
    by: str | None = None
    influenced: bool | None = None


def _report(
    model: str,
    request_id: str,
    status: str,
    *,
    correction: Any = None,
    expected: Any = None,
    updated_at: float,
    filed_by: str = "shop",
) -> ErrorReportRow:
    return ErrorReportRow(
        model=model,
        request_id=request_id,
        row_index=0,
        category="wrong_answer",
        description="wrong",
        expected=expected,
        correction=correction,
        filed_by=filed_by,
        status=status,
        filed_at=updated_at - 10,
        updated_at=updated_at,
    )


def _seed(workspace: Workspace) -> list[Case]:
    """Rows of every provenance, each once; the cases in log order."""
    cases = [
        # Served rows: a feedback label is influenced by the model's answer.
        Case("s-0", "active", 1, "feedback", "shop", True),
        # A confirmed report's correction beats the feedback label.
        Case("s-1", "active", 0, "report", "support-desk", True),
        # A report not confirmed yet changes nothing.
        Case("s-2", "active", 1, "feedback", "shop", True),
        # No label, a resolved report with only the reporter's expected answer.
        Case("s-3", "canary", 1, "report", "shop", True),
        Case("s-4", "active"),
        # Held-out rows: a reviewer's label is never influenced, and beats a report.
        Case("h-0", "held_out", 0, "review", "review", False),
        Case("h-1", "held_out", 1, "review", "review", False),
        # A feedback label on a held-out row: the model did not answer it.
        Case("h-2", "held_out", 0, "feedback", "shop", False),
        # Two confirmed reports: the newest one wins.
        Case("h-3", "held_out", 1, "report", "second", False),
        Case("h-4", "held_out"),
    ]
    with workspace.sessions.begin() as session:
        for i, case in enumerate(cases):
            session.add(
                PredictionRow(
                    request_id=case.request_id,
                    row_index=0,
                    created_at=START + i,
                    model="toy",
                    version="1",
                    route=case.route,
                    entity_id=f"card-{i}",
                    features={**TOY_ROW, "amount": 10.5 + i, "count": i, "online": i % 2 == 0},
                    outputs={"predict": i % 2, "predict_proba": [1 - i / 20, i / 20]},
                    latency_ms=1.0,
                    token_name="shop",
                )
            )
        # Never exported: a shadow's answer (nobody saw it) and another model's row.
        session.add(
            PredictionRow(
                request_id="s-0",
                row_index=0,
                created_at=START,
                model="toy",
                version="1",
                route="shadow",
                entity_id=None,
                features=TOY_ROW,
                outputs={"predict": 1},
                latency_ms=1.0,
                token_name="shop",
            )
        )
        session.add(
            PredictionRow(
                request_id="p-0",
                row_index=0,
                created_at=START,
                model="price",
                version="1",
                route="active",
                entity_id=None,
                features={"x1": 1.0, "x2": 2.0},
                outputs={"predict": 3.0},
                latency_ms=1.0,
                token_name="shop",
            )
        )

        def label(rid: str, value: Any, source: str, influenced: bool | None = None) -> None:
            session.add(
                LabelRow(
                    model="toy",
                    request_id=rid,
                    row_index=0,
                    label=value,
                    received_at=START + 100,
                    source=source,
                    influenced=influenced,
                )
            )

        label("s-0", 1, "shop")
        label("s-1", 1, "shop")
        label("s-2", 1, "shop")
        label("h-0", 0, "review", False)
        label("h-1", 1, "review", False)
        label("h-2", 0, "shop")
        session.add_all(
            [
                _report(
                    "toy",
                    "s-1",
                    "confirmed",
                    correction=0,
                    expected=1,
                    updated_at=START + 200,
                    filed_by="support-desk",
                ),
                _report("toy", "s-2", "new", correction=0, updated_at=START + 200),
                _report("toy", "s-3", "resolved", expected=1, updated_at=START + 200),
                _report("toy", "h-0", "confirmed", correction=1, updated_at=START + 200),
                _report(
                    "toy",
                    "h-3",
                    "confirmed",
                    correction=0,
                    updated_at=START + 200,
                    filed_by="first",
                ),
                _report(
                    "toy",
                    "h-3",
                    "resolved",
                    correction=1,
                    updated_at=START + 300,
                    filed_by="second",
                ),
                # Another model's confirmed report on the same request id: not this row's.
                _report("price", "s-4", "confirmed", correction=5.0, updated_at=START + 200),
            ]
        )
    return cases


def _check_rows(table: Any, cases: list[Case], workspace: Workspace) -> None:
    """Every exported row against its logged row and its expected label."""
    rows = table.to_pylist()
    assert [row["request_id"] for row in rows] == [case.request_id for case in cases]
    with workspace.sessions() as session:
        logged = {
            row.request_id: row
            for row in session.scalars(
                select(PredictionRow).where(
                    PredictionRow.model == "toy", PredictionRow.route != "shadow"
                )
            )
        }
    for row, case in zip(rows, cases, strict=True):
        log = logged[case.request_id]
        assert row["created_at"] == datetime.fromtimestamp(log.created_at, UTC)
        assert (row["version"], row["route"], row["entity_id"]) == (
            log.version,
            log.route,
            log.entity_id,
        )
        for name, value in log.features.items():
            assert row[f"feature.{name}"] == value, (case.request_id, name)
        assert row["prediction"] == log.outputs["predict"]
        assert [row["proba.0"], row["proba.1"]] == log.outputs["predict_proba"]
        assert (row["label"], row["label_source"], row["label_by"], row["influenced"]) == (
            case.label,
            case.source,
            case.by,
            case.influenced,
        ), case.request_id


def _request(**filters: Any) -> ExportRequest:
    return ExportRequest.model_validate(
        {"model": "toy", "sources": ["review", "report", "feedback", "unlabelled"], **filters}
    )


def test_every_row_has_its_logged_values_and_its_best_label(workspace: Workspace) -> None:
    cases = _seed(workspace)
    model = workspace.registry.get_model("toy")
    # Pages of three rows: rows with the same time and every page boundary are crossed.
    export = Export(workspace.sessions, model, _request(), created_by="tests", page_rows=3)
    buffer = io.BytesIO(b"".join(export.zip_stream()))
    with zipfile.ZipFile(buffer) as archive:
        assert archive.namelist() == ["data.parquet", "manifest.json"]
        data = archive.read("data.parquet")
        manifest = json.loads(archive.read("manifest.json"))
    parquet = pq.ParquetFile(io.BytesIO(data))
    # One row group per page of the log.
    assert parquet.metadata.num_row_groups == 4
    table = parquet.read()
    assert table.schema.field("feature.amount").type == "double"
    assert table.schema.field("feature.count").type == "int64"
    assert table.schema.field("feature.online").type == "bool"
    assert table.schema.field("prediction").type == "int64"
    _check_rows(table, cases, workspace)
    assert manifest["files"] == [
        {
            "name": "data.parquet",
            "rows": len(cases),
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
    ]
    assert manifest["rows"] == len(cases)
    assert {c["source"]: c["rows"] for c in manifest["by_source"]} == {
        "review": 2,
        "report": 3,
        "feedback": 3,
        "unlabelled": 2,
    }
    assert {c["label"]: c["rows"] for c in manifest["by_class"]} == {"0": 3, "1": 5, "(none)": 2}
    assert manifest["first_at"].startswith("2026-09-21")
    assert manifest["filters"]["sources"] == ["review", "report", "feedback", "unlabelled"]
    assert manifest["created_by"] == "tests"


@pytest.mark.parametrize(
    ("filters", "kept"),
    [
        ({}, ["s-0", "s-1", "s-2", "s-3", "h-0", "h-1", "h-2", "h-3"]),
        ({"uninfluenced_only": True}, ["h-0", "h-1", "h-2", "h-3"]),
        ({"sources": ["report"]}, ["s-1", "s-3", "h-3"]),
        ({"sources": ["unlabelled"]}, ["s-4", "h-4"]),
        ({"classes": [0]}, ["s-1", "h-0", "h-2"]),
        ({"classes": ["1"], "uninfluenced_only": True}, ["h-1", "h-3"]),
        (
            {
                "start": datetime.fromtimestamp(START + 2, UTC).isoformat(),
                "end": datetime.fromtimestamp(START + 6, UTC).isoformat(),
            },
            ["s-2", "s-3", "h-0"],
        ),
        ({"versions": ["1"], "sources": ["review"]}, ["h-0", "h-1"]),
    ],
)
def test_filters_keep_exactly_the_rows_they_name(
    sqlite_workspace: Workspace, filters: dict[str, Any], kept: list[str]
) -> None:
    workspace = sqlite_workspace
    cases = {case.request_id: case for case in _seed(workspace)}
    request = ExportRequest.model_validate({"model": "toy", **filters})
    model = workspace.registry.get_model("toy")
    export = Export(workspace.sessions, model, request, created_by="tests", page_rows=4)
    preview = export.preview()
    assert preview.rows == len(kept)
    manifest = export.write_directory(workspace.settings.data_dir / "out")
    table = pq.read_table(workspace.settings.data_dir / "out" / "data.parquet")
    _check_rows(table, [cases[rid] for rid in kept], workspace)
    assert manifest.by_source == preview.by_source and manifest.by_class == preview.by_class


def test_the_api_previews_and_streams_the_export(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    cases = _seed(workspace)
    body = {"model": "toy", "uninfluenced_only": True, "format": "csv"}
    preview = client.post("/api/v1/exports/preview", headers=admin_headers, json=body)
    assert preview.status_code == 200, preview.text
    counts = preview.json()
    assert counts["rows"] == 4 and counts["rows_read"] == len(cases)
    assert {c["source"]: c["rows"] for c in counts["by_source"]}["review"] == 2
    assert "could not have shaped" in counts["explanation"]
    assert any(c["name"] == "label_source" for c in counts["columns"])
    response = client.post("/api/v1/exports", headers=admin_headers, json=body)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    assert response.headers["x-export-rows-read"] == str(len(cases))
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        data = archive.read("data.csv")
        manifest = json.loads(archive.read("manifest.json"))
    assert manifest["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    table = pa_csv.read_csv(io.BytesIO(data))
    assert table.column("request_id").to_pylist() == ["h-0", "h-1", "h-2", "h-3"]
    assert table.column("label_source").to_pylist() == ["review", "review", "feedback", "report"]


def test_the_export_needs_its_permission_and_refuses_bad_filters(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    _seed(workspace)
    support = workspace.tokens.create("support-1", "support")
    scoped = workspace.tokens.create("engineer-price", "engineer", models=["price"])
    for path in ("/api/v1/exports/preview", "/api/v1/exports"):
        denied = client.post(
            path, headers={"Authorization": f"Bearer {support}"}, json={"model": "toy"}
        )
        assert denied.status_code == 403 and "export" in denied.json()["reason"]
        other = client.post(
            path, headers={"Authorization": f"Bearer {scoped}"}, json={"model": "toy"}
        )
        assert other.status_code == 403 and other.json()["field"] == "model"
    cases = [
        ({"model": "toy", "versions": ["9"]}, "versions[0]"),
        ({"model": "nope"}, "model"),
        ({"model": "toy", "sources": ["guess"]}, "sources"),
        ({"model": "price", "classes": [1]}, "classes"),
        (
            {"model": "toy", "start": "2026-01-02T00:00:00Z", "end": "2026-01-01T00:00:00Z"},
            "end",
        ),
        ({"model": "toy", "format": "xlsx"}, "format"),
        # A class no version has would export nothing, silently: the toy's classes are 0, 1.
        ({"model": "toy", "classes": [1, 7]}, "classes[1]"),
        ({"model": "toy", "classes": [True]}, "classes[0]"),
    ]
    for body, field in cases:
        refused = client.post("/api/v1/exports", headers=admin_headers, json=body)
        assert refused.status_code in (404, 422), refused.text
        assert refused.json()["field"].startswith(field), (body, refused.json())


def test_the_cli_writes_the_data_file_and_its_manifest(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    cases = _seed(sqlite_workspace)
    data_dir = sqlite_workspace.settings.data_dir
    sqlite_workspace.close()
    out = tmp_path / "export"
    code = cli_main(
        [
            "export",
            "--data-dir",
            str(data_dir),
            "--model",
            "toy",
            "--out",
            str(out),
            "--source",
            "review",
            "--source",
            "feedback",
            "--start",
            datetime.fromtimestamp(START, UTC).isoformat(),
        ]
    )
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    data = (out / "data.parquet").read_bytes()
    assert manifest["files"][0]["sha256"] == hashlib.sha256(data).hexdigest()
    expected = [c.request_id for c in cases if c.source in ("review", "feedback")]
    assert pq.read_table(out / "data.parquet").column("request_id").to_pylist() == expected


def test_a_label_sent_as_text_and_a_regression_model_export_as_their_types(
    sqlite_workspace: Workspace,
) -> None:
    workspace = sqlite_workspace
    with workspace.sessions.begin() as session:
        for i, (model, features, outputs, label) in enumerate(
            [
                ("toy", TOY_ROW, {"predict": 1, "predict_proba": [0.2, 0.8]}, "0"),
                ("price", {"x1": 0.5, "x2": -1.0}, {"predict": 3.25}, 2.5),
                ("price", {"x1": 1.5}, {"predict": 4.0}, 7),
            ]
        ):
            session.add(
                PredictionRow(
                    request_id=f"t-{i}",
                    row_index=0,
                    created_at=START + i,
                    model=model,
                    version="1",
                    route="active",
                    entity_id=None,
                    features=features,
                    outputs=outputs,
                    latency_ms=1.0,
                    token_name="shop",
                )
            )
            session.add(
                LabelRow(
                    model=model,
                    request_id=f"t-{i}",
                    row_index=0,
                    label=label,
                    received_at=START + 50,
                    source="shop",
                )
            )
    toy = Export(
        workspace.sessions, workspace.registry.get_model("toy"), _request(), created_by="t"
    )
    out = workspace.settings.data_dir / "toy-out"
    toy.write_directory(out)
    # The class "0" sent as text is the integer class 0 (the classes are integers).
    assert pq.read_table(out / "data.parquet").column("label").to_pylist() == [0]
    price = Export(
        workspace.sessions, workspace.registry.get_model("price"), _request(), created_by="t"
    )
    manifest = price.write_directory(workspace.settings.data_dir / "price-out")
    table = pq.read_table(workspace.settings.data_dir / "price-out" / "data.parquet")
    assert table.column("prediction").to_pylist() == [3.25, 4.0]
    assert table.column("label").to_pylist() == [2.5, 7.0]
    # A feature missing from a row is null, not a guess.
    assert table.column("feature.x2").to_pylist() == [-1.0, None]
    assert not [f for f in table.schema.names if f.startswith("proba.")]
    assert [(c.label, c.rows) for c in manifest.by_class] == [("(number)", 2)]


def test_a_feedback_token_named_review_does_not_pass_for_a_reviewer(
    client: TestClient, workspace: Workspace, admin_headers: dict[str, str]
) -> None:
    # A label's source is the name of the token that sent it: a client token called "review"
    # labelling served traffic is feedback the model shaped, not a held-out review label.
    _seed(workspace)
    impostor = workspace.tokens.create("review", "client", models=["toy"])
    sent = client.post(
        "/api/v1/feedback",
        headers={"Authorization": f"Bearer {impostor}"},
        json={"labels": [{"request_id": "s-4", "label": 1}]},
    )
    assert sent.status_code == 200, sent.text
    model = workspace.registry.get_model("toy")
    export = Export(workspace.sessions, model, _request(), created_by="tests")
    rows = {row["request_id"]: row for row in pa.Table.from_batches(export.batches()).to_pylist()}
    assert (rows["s-4"]["label_source"], rows["s-4"]["influenced"]) == ("feedback", True)
    assert (rows["h-0"]["label_source"], rows["h-0"]["influenced"]) == ("review", False)
    uninfluenced = Export(
        workspace.sessions, model, _request(uninfluenced_only=True), created_by="tests"
    ).preview()
    assert uninfluenced.rows == 4


def test_a_client_that_goes_away_mid_stream_leaves_no_reader_thread(
    client: TestClient,
    workspace: Workspace,
    admin_headers: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Driven at the ASGI level as uvicorn does (spec 2.3): a disconnect cancels the response
    # while the export's generator is between pages, its read-ahead thread waiting.
    _seed(workspace)
    monkeypatch.setattr(api_exports, "Export", functools.partial(Export, page_rows=1))
    body = json.dumps({"model": "toy"}).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/exports",
        "raw_path": b"/api/v1/exports",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"authorization", admin_headers["Authorization"].encode()),
            (b"content-type", b"application/json"),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }

    def readers() -> list[str]:
        return [t.name for t in threading.enumerate() if t.name.startswith("export-read")]

    async def download_then_leave() -> list[str]:
        gone = asyncio.Event()
        received: list[bytes] = []

        async def receive() -> dict[str, Any]:
            if not received:
                received.append(body)
                return {"type": "http.request", "body": body, "more_body": False}
            await gone.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.body" and message["body"]:
                received.append(message["body"])
                gone.set()

        await client.app(scope, receive, send)  # type: ignore[arg-type]
        assert len(received) >= 2  # the download had started
        return readers()

    assert asyncio.run(download_then_leave()) == []


def test_the_cli_says_why_it_cannot_write_its_directory(
    sqlite_workspace: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data_dir = sqlite_workspace.settings.data_dir
    sqlite_workspace.close()
    taken = tmp_path / "a-file"
    taken.write_text("not a directory")
    arguments = ["export", "--data-dir", str(data_dir), "--model", "toy", "--out", str(taken)]
    assert cli_main(arguments) == 2
    error = capsys.readouterr().err
    assert "out" in error and str(taken) in error, error


def test_a_correction_that_is_no_class_is_not_rounded_into_one(sqlite_workspace: Workspace) -> None:
    # A report's expected answer is free JSON: 0.7 or 1e20 for a model whose classes are the
    # integers 0 and 1 is no class at all, and must not come out as class 0 (or a crash).
    _seed(sqlite_workspace)
    with sqlite_workspace.sessions.begin() as session:
        session.add_all(
            [
                _report("toy", "s-4", "confirmed", expected=0.7, updated_at=START + 400),
                _report("toy", "h-4", "confirmed", expected=1e20, updated_at=START + 400),
            ]
        )
    model = sqlite_workspace.registry.get_model("toy")
    export = Export(sqlite_workspace.sessions, model, _request(), created_by="tests")
    rows = {row["request_id"]: row for row in pa.Table.from_batches(export.batches()).to_pylist()}
    assert (rows["s-4"]["label"], rows["s-4"]["label_source"]) == (None, "report")
    assert (rows["h-4"]["label"], rows["h-4"]["label_source"]) == (None, "report")
    assert rows["s-0"]["label"] == 1


def test_a_reviewers_answer_is_the_label_whatever_feedback_came_before_or_after(
    workspace: Workspace,
) -> None:
    """Review over feedback in both orders: a chargeback stored before the review (the queue
    keeps it as the stored label) and one stored after it (it replaces the stored label) do
    not change what the export gives: the reviewer's answer, not influenced."""
    before, after = add_held_out_rows(workspace, 2, prefix="rev")
    bank = Principal("bank", "admin")
    store_labels(workspace.sessions, [LabelIn(request_id=before, label=0, model="toy")], bank)
    queue = ReviewQueue(
        workspace.sessions, workspace.registry, lease_s=60.0, agreement_share=0.0,
        sync_interval_s=0.0, clock=time.time,
    )  # fmt: skip
    for item in queue.next("toy", "ana").items:
        queue.answer("toy", item.item, "ana", 1)
    store_labels(workspace.sessions, [LabelIn(request_id=after, label=0, model="toy")], bank)
    model = workspace.registry.get_model("toy")
    export = Export(workspace.sessions, model, _request(), created_by="tests")
    rows = {row["request_id"]: row for row in pa.Table.from_batches(export.batches()).to_pylist()}
    for request_id in (before, after):
        row = rows[request_id]
        assert (row["label"], row["label_source"], row["label_by"]) == (1, "review", "review")
        assert row["influenced"] is False
