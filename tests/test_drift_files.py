"""The ad-hoc drift report over files: ``servedeck-server drift`` run as a user would, and
``POST /api/v1/drift/files`` on a real app, with good and bad files."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from backend.api.app import create_app
from backend.workspace import Workspace
from tests.helpers import make_settings


def _frame(seed: int, rows: int, drifted: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    amount = rng.lognormal(3, 1, rows) * (1.2 if drifted else 1.0)
    return pd.DataFrame(
        {
            "amount": amount,
            "age": rng.integers(18, 90, rows),
            "channel": rng.choice(["web", "app", "pos"], rows, p=[0.5, 0.3, 0.2]),
            "is_foreign": rng.random(rows) < 0.1,
        }
    )


def _parquet(frame: pd.DataFrame) -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), sink)
    return sink.getvalue()


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", "drift", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_command_prints_a_table_and_json_for_parquet_and_csv(tmp_path: Path) -> None:
    reference, current = tmp_path / "ref.parquet", tmp_path / "cur.csv"
    reference.write_bytes(_parquet(_frame(1, 20_000)))
    current.write_bytes(_csv(_frame(2, 20_000, drifted=True)))
    table = run_cli("--reference", str(reference), "--current", str(current))
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("1 of 4 features changed (amount)")
    row = next(line for line in lines if line.startswith("amount "))
    assert "DRIFT" in row and "effect size" in row
    assert any(line.startswith("amount: Values of amount are larger") for line in lines)
    assert "Bonferroni: 4 tests at once" in table.stdout

    as_json = run_cli(
        "--reference", str(reference), "--current", str(current), "--json", "--columns",
        "amount,channel", "--histograms",
    )  # fmt: skip
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert [f["name"] for f in report["features"]] == ["amount", "channel"]
    assert report["features"][0]["drifted"] and not report["features"][1]["drifted"]
    assert report["features"][1]["histogram"][0]["label"] in {"web", "app", "pos"}
    assert report["rows_reference"] == report["rows_current"] == 20_000


def test_the_command_takes_settings_and_names_what_is_wrong(tmp_path: Path) -> None:
    reference, current = tmp_path / "ref.parquet", tmp_path / "cur.parquet"
    reference.write_bytes(_parquet(_frame(3, 5_000)))
    current.write_bytes(_parquet(_frame(4, 5_000, drifted=True)))
    settings = tmp_path / "settings.json"
    relaxed_amount = {"ks_threshold": 0.9, "wasserstein_threshold": 5}
    settings.write_text(json.dumps({"features": {"amount": relaxed_amount}}))
    relaxed = run_cli(
        "--reference", str(reference), "--current", str(current), "--settings", str(settings),
        "--json",
    )  # fmt: skip
    assert relaxed.returncode == 0, relaxed.stderr
    amount = json.loads(relaxed.stdout)["features"][0]
    assert amount["threshold"] == 0.9 and not amount["drifted"]

    settings.write_text(json.dumps({"alpha": 2}))
    for args, expected in [
        (["--settings", str(settings)], "error: settings: alpha: "),
        (["--columns", "nope"], "error: columns: not in the reference file: nope"),
        (["--columns", " , "], "error: columns: name at least one column"),
    ]:
        refused = run_cli("--reference", str(reference), "--current", str(current), *args)
        assert refused.returncode == 2 and refused.stderr.startswith(expected), refused.stderr
        assert "Traceback" not in refused.stderr
    missing = run_cli("--reference", str(tmp_path / "none.csv"), "--current", str(current))
    assert missing.returncode == 2 and "error: reference: no such file" in missing.stderr


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = make_settings(
        tmp_path_factory.mktemp("drift-api"), max_drift_upload_bytes=2 * 1024 * 1024
    )
    workspace = Workspace.open(settings)
    tokens = {
        "support": workspace.tokens.create("drift-support", "support"),
        "scoped-support": workspace.tokens.create("drift-scoped", "support", ["toy"]),
        "client": workspace.tokens.create("drift-client", "client", ["toy"]),
    }
    with TestClient(create_app(workspace=workspace)) as client:
        yield client, tokens
    workspace.close()


def _post(
    client: TestClient,
    token: str,
    reference: tuple[str, bytes],
    current: tuple[str, bytes],
    **form: str,
) -> Any:
    return client.post(
        "/api/v1/drift/files",
        headers={"Authorization": f"Bearer {token}"},
        files={
            "reference": (reference[0], reference[1], "application/octet-stream"),
            "current": (current[0], current[1], "application/octet-stream"),
        },
        data=form,
    )


def test_the_api_reports_drift_for_any_token_that_may_read(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = api
    reference = ("ref.parquet", _parquet(_frame(5, 20_000)))
    current = ("cur.csv", _csv(_frame(6, 20_000, drifted=True)))
    for role in ("support", "scoped-support"):
        answer = _post(client, tokens[role], reference, current, include_histograms="true")
        assert answer.status_code == 200, answer.text
        report = answer.json()
        amount = report["features"][0]
        assert amount["name"] == "amount" and amount["drifted"]
        assert amount["decided_by"] == "effect_size" and amount["histogram"]
        assert "retrain if this is real" in amount["explanation"]
        assert report["timings"]["total_s"] > 0
    refused = _post(client, tokens["client"], reference, current)
    assert refused.status_code == 403 and "may not read" in refused.json()["reason"]


BAD_FILES: list[tuple[str, tuple[str, bytes], tuple[str, bytes], dict[str, str], str, str]] = [
    ("not a data file", ("ref.bin", bytes(range(256)) * 4), ("c.csv", b"a\n1\n"), {},
     "reference", "not a Parquet or CSV file"),
    ("an empty file", ("ref.csv", b"a,b\n1,2\n"), ("c.csv", b""), {}, "current",
     "the file is empty"),
    ("no rows", ("ref.csv", b"a,b\n1,2\n"), ("c.csv", b"a,b\n"), {}, "current",
     "the file has no rows"),
    ("a broken Parquet file", ("ref.parquet", b"PAR1" + b"x" * 100), ("c.csv", b"a\n1\n"), {},
     "reference", "not a readable Parquet file"),
    ("no common columns", ("ref.csv", b"a,b\n1,2\n3,4\n"), ("c.csv", b"x,y\n1,2\n"), {},
     "current", "no column in common"),
    ("numbers against text", ("ref.csv", b"a\n1\n2\n3\n4\n5\n6\n7\n"),
     ("c.csv", b"a\nx\ny\n"), {}, "current", "holds numbers in the reference but text"),
    ("settings that are not JSON", ("ref.csv", b"a\n1\n"), ("c.csv", b"a\n1\n"),
     {"settings": "{nope"}, "settings", "not valid JSON"),
    ("a threshold out of range", ("ref.csv", b"a\n1\n"), ("c.csv", b"a\n1\n"),
     {"settings": '{"features": {"a": {"js_threshold": 3}}}'}, "settings.features.a.js_threshold",
     "less than or equal to 1"),
    ("repeated column names", ("ref.csv", b"a,a\n1,2\n"), ("c.csv", b"a\n1\n"), {},
     "reference", "column names appear more than once: a"),
    ("an unknown column asked for", ("ref.csv", b"a\n1\n"), ("c.csv", b"a\n1\n"),
     {"columns": "b"}, "columns", "not in the reference file: b"),
]  # fmt: skip


@pytest.mark.parametrize("case", BAD_FILES, ids=[case[0] for case in BAD_FILES])
def test_bad_files_are_refused_naming_the_field(
    api: tuple[TestClient, dict[str, str]], case: tuple[Any, ...]
) -> None:
    client, tokens = api
    _name, reference, current, form, field, reason = case
    answer = _post(client, tokens["support"], reference, current, **form)
    assert answer.status_code == 422, answer.text
    body = answer.json()
    assert body["field"] == field and reason in body["reason"], body


def test_a_missing_file_and_an_oversized_upload_are_refused(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = api
    answer = client.post(
        "/api/v1/drift/files",
        headers={"Authorization": f"Bearer {tokens['support']}"},
        files={"reference": ("r.csv", b"a\n1\n", "text/csv")},
    )
    assert answer.status_code == 422 and answer.json()["field"] == "current"
    # The route's own limit (2 MiB in this app), larger than a plain request's 8 MiB would be
    # by default: a 3 MB upload is refused before it is parsed.
    big = ("big.csv", b"a\n" + b"1\n" * 1_500_000)
    refused = _post(client, tokens["support"], big, ("c.csv", b"a\n1\n"))
    assert refused.status_code == 413 and refused.json()["field"] == "body"
    assert "2097152 bytes" in refused.json()["reason"]


def test_values_near_the_float_limit_give_a_report_json_can_carry(
    api: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = api
    values = [1e308, -1e308, 1.5e308, -1.7e308, 3.0, 7.0, 9.0, 11.0]
    reference = ("r.csv", ("a\n" + "\n".join(map(repr, values)) + "\n").encode())
    current = ("c.csv", b"a\n1.7e308\n-1.79e308\n1e308\n2.0\n")
    answer = _post(client, tokens["support"], reference, current, include_histograms="true")
    assert answer.status_code == 200, answer.text
    feature = answer.json()["features"][0]
    assert feature["name"] == "a" and feature["decided_by"] == "p_value"
