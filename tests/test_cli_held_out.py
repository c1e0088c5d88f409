"""servedeck-server held-out, run as a user would: set, show, refuse with the field, end."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import select

from backend.db.tables import AuditEventRow
from backend.workspace import Workspace
from tests.helpers import ToyDataDir, make_settings
from tests.test_cli import run_cli


def test_the_held_out_share_from_the_command_line(tmp_path: Path, toy_data_dir: ToyDataDir) -> None:
    data_dir = tmp_path / "data"
    toy_data_dir(data_dir)
    policy = tmp_path / "policy.json"
    policy.write_text(
        json.dumps(
            {
                "kind": "rule",
                "rules": [{"when": [{"feature": "amount", "op": ">", "value": 900}], "answer": 1}],
                "otherwise": 0,
            }
        )
    )
    common = ("--data-dir", str(data_dir))
    shown = run_cli("held-out", "toy", *common)
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["settings"] is None
    assert "No traffic is held out" in json.loads(shown.stdout)["explanation"]

    set_ = run_cli("held-out", "toy", "--policy", str(policy), "--reason", "loop", *common)
    assert set_.returncode == 0, set_.stderr
    settings = json.loads(set_.stdout)["settings"]
    assert settings["share_percent"] == 2.0 and settings["policy"]["kind"] == "rule"
    wider = run_cli("held-out", "toy", "--share", "5", *common)
    assert json.loads(wider.stdout)["settings"]["share_percent"] == 5.0  # policy kept

    bad = run_cli("held-out", "toy", "--policy", '{"kind": "default", "answer": "x"}', *common)
    assert bad.returncode != 0 and "policy.answer" in bad.stderr and "Traceback" not in bad.stderr
    too_much = run_cli("held-out", "toy", "--share", "80", *common)
    assert too_much.returncode != 0 and "share_percent" in too_much.stderr

    ended = run_cli("held-out", "toy", "--off", "--reason", "done", *common)
    assert json.loads(ended.stdout)["settings"] is None
    workspace = Workspace.open(make_settings(data_dir))
    try:
        with workspace.sessions() as session:
            events = session.scalars(
                select(AuditEventRow).where(AuditEventRow.action == "held_out")
            ).all()
    finally:
        workspace.close()
    assert [e.reason for e in events] == ["loop", "", "done"]
    assert all(e.actor.startswith("cli:") for e in events)
