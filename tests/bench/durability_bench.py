"""Benchmark: kill -9 under load, with labels posted alongside; what goes missing (goal: 0).

For each of the server, its log writer, and both: ``runs`` runs of ``seconds`` of 8-thread
load against a real server on a fresh SQLite data directory, then the kill, the recovery an
operator would do, and the count of answered predictions and accepted labels missing from the
store afterwards, and of rows written twice (``tests/log_durability.py`` does the work; the
test suite runs the same with short runs).
"""

from __future__ import annotations

import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

from backend.settings import Settings
from backend.workspace import Workspace
from tests.bench.tables import fmt, format_table, short_error
from tests.helpers import register_toy_models
from tests.log_durability import KILL_CASES, DurabilityRun, run_case


def run_durability_bench(work_dir: Path, seconds: float, runs: int = 3) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    for case in KILL_CASES:
        for run_number in range(1, runs + 1):
            print(f"  kill -9 of {case}: run {run_number}/{runs} ({seconds:.0f} s)...", flush=True)
            data_dir = work_dir / f"durability-{case}-{run_number}"
            try:
                workspace = Workspace.open(Settings.load(data_dir=data_dir))
                try:
                    register_toy_models(workspace)
                    env = {"SERVEDECK_DATABASE_URL": workspace.settings.database_url}
                    run = run_case(case, workspace, env, load_s=seconds)
                finally:
                    workspace.close()
                results.append({"run": run_number, **_summary(run)})
            except Exception:
                results.append(
                    {"case": case, "run": run_number, "error": traceback.format_exc(limit=3)}
                )
    return results


def _summary(run: DurabilityRun) -> dict[str, Any]:
    summary = asdict(run)
    summary["answered"] = len(run.answered)
    summary["labelled"] = len(run.labelled)
    return summary


def render(results: list[dict[str, Any]]) -> str:
    rows = []
    for r in results:
        if "error" in r:
            rows.append(
                [r["case"], r["run"], "-", "-", "-", "-", "-", "-", short_error(r["error"])]
            )
            continue
        lost = r["missing_predictions"] + r["missing_labels"] + r["duplicated_predictions"]
        rows.append(
            [
                r["case"],
                r["run"],
                f"{r['answered']:,}",
                f"{r['labelled']:,}",
                r["missing_predictions"],
                r["missing_labels"],
                r["duplicated_predictions"],
                fmt(r["caught_up_s"], 2),
                "ok" if lost == 0 and not r["leftover_spools"] else "LOST",
            ]
        )
    headers = [
        "killed",
        "run",
        "answered",
        "labelled",
        "missing predictions",
        "missing labels",
        "written twice",
        "caught up s",
        "verdict",
    ]
    return format_table("kill -9 under 8-thread load (goal: nothing missing)", headers, rows)
