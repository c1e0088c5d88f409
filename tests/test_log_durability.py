"""kill -9 of the server, of its log writer, or of both, under load: nothing answered is lost.

Each answered prediction was in the spool before its answer left, so whatever is killed, the
log ends up with every answered prediction exactly once, and every accepted label.
"""

from __future__ import annotations

import pytest

from backend.workspace import Workspace
from tests.log_durability import KILL_CASES, run_case

# Alone, after the parallel part: kill -9 under load.
pytestmark = pytest.mark.serial


@pytest.mark.parametrize("case", KILL_CASES)
def test_kill_9_loses_no_answered_prediction(case: str, workspace: Workspace) -> None:
    env = {
        "SERVEDECK_DATABASE_URL": workspace.settings.database_url,
        "SERVEDECK_LOG_FLUSH_INTERVAL": "0.2",
    }
    run = run_case(case, workspace, env)
    killed = "both" if case == "both" else f"the {case}"
    print(
        f"\nkill -9 of {killed}: {len(run.answered)} answered, {len(run.labelled)} labelled; "
        f"missing {run.missing_predictions} predictions and {run.missing_labels} labels, "
        f"{run.duplicated_predictions} written twice; caught up in {run.caught_up_s} s"
    )
    assert len(run.answered) >= 100, "the server answered too little before the kill"
    assert run.missing_predictions == 0
    assert run.duplicated_predictions == 0
    assert run.missing_labels == 0
    assert run.leftover_spools == [], "a drained spool was left behind"
