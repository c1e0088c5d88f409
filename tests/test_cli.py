"""The servedeck-server command line, run as a user would."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import skops.io as sio

from backend.cli import main
from tests.helpers import toy_classifier, toy_frame, toy_validity


def run_cli_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The command as a user runs it: its own process (about 3 s of imports each time)."""
    return subprocess.run(
        [sys.executable, "-m", "backend.cli", *args], capture_output=True, text=True, timeout=120
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The command's ``main`` in this process, its output captured: what it prints and its
    exit code are the same as in its own process, without the imports each time. An
    unexpected exception fails the test here, where a process would print a traceback."""
    out, err = io.StringIO(), io.StringIO()
    umask = os.umask(0o077)  # main() sets it for the files it makes; put it back afterwards
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(args))
            except SystemExit as exc:  # argparse refusing the arguments
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    finally:
        os.umask(umask)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


def test_register_from_the_command_line(tmp_path: Path) -> None:
    artifact = tmp_path / "toy.skops"
    artifact.write_bytes(sio.dumps(toy_classifier()))
    validity = tmp_path / "validity.json"
    validity.write_text(toy_validity().model_dump_json())
    frame, labels = toy_frame()
    training = tmp_path / "train.csv"
    pd.concat([frame, labels.rename("label")], axis=1).to_csv(training, index=False)
    data_dir = str(tmp_path / "ws")

    registered = run_cli_process(
        "models",
        "register",
        "toy",
        "--artifact",
        str(artifact),
        "--validity",
        str(validity),
        "--training-data",
        str(training),
        "--target",
        "label",
        "--data-dir",
        data_dir,
    )
    assert registered.returncode == 0, registered.stderr
    assert "registered toy version 1" in registered.stdout

    listed = run_cli_process("models", "list", "--json", "--data-dir", data_dir)
    model = json.loads(listed.stdout)[0]
    assert model["name"] == "toy" and model["versions"][0]["version"] == "1"
    signature = {spec["name"]: spec["type"] for spec in model["versions"][0]["signature"]}
    assert signature["country"] == "category" and signature["online"] == "bool"


def test_cli_errors_are_plain_sentences(tmp_path: Path) -> None:
    missing = run_cli(
        "models",
        "register",
        "toy",
        "--artifact",
        str(tmp_path / "none.skops"),
        "--validity",
        str(tmp_path / "none.json"),
        "--data-dir",
        str(tmp_path),
    )
    assert missing.returncode == 2
    assert "validity file" in missing.stderr and "does not exist" in missing.stderr
    assert "Traceback" not in missing.stderr
    pickled = tmp_path / "m.pkl"
    pickled.write_bytes(b"not really a pickle")
    validity = tmp_path / "validity.json"
    validity.write_text(toy_validity().model_dump_json())
    refused = run_cli(
        "models",
        "register",
        "toy",
        "--artifact",
        str(pickled),
        "--validity",
        str(validity),
        "--data-dir",
        str(tmp_path),
    )
    assert refused.returncode == 2 and "--trust-pickle" in refused.stderr
    unknown = run_cli("models", "show", "ghost", "--data-dir", str(tmp_path))
    assert unknown.returncode == 2 and "no model named 'ghost'" in unknown.stderr
