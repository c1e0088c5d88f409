"""servedeck-server drift: the drift report of one file against another (Parquet or CSV).

No workspace is opened: the command reads the two files, summarises the reference as a model's
would be at registration, and prints the same report the API gives (a table, or JSON).
"""

from __future__ import annotations

import argparse
from typing import Any

from pydantic import ValidationError

from backend.errors import InputError


def _settings(path: str | None) -> Any:
    from backend.schemas.drift import DriftSettings

    if path is None:
        return DriftSettings()
    try:
        with open(path, encoding="utf-8") as handle:
            return DriftSettings.model_validate_json(handle.read())
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}", "settings") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise InputError(f"{where}: {first.get('msg')}" if where else str(first.get("msg")),
                         "settings") from None  # fmt: skip


def format_table(report: Any) -> str:
    lines = [report.summary, ""]
    header = f"{'feature':24} {'kind':11} {'test':14} {'score':>9} {'threshold':>10} " + (
        f"{'p-value':>9}  {'verdict':8} decided by"
    )
    lines.append(header)
    lines.append("-" * len(header))
    for entry in [*report.features, *report.predictions]:
        p_value = "-" if entry.p_value is None else f"{entry.p_value:.3g}"
        lines.append(
            f"{entry.name[:24]:24} {entry.kind:11} {entry.test:14} {entry.statistic:9.4f} "
            f"{entry.threshold:10.4g} {p_value:>9}  {'DRIFT' if entry.drifted else 'ok':8} "
            f"{entry.decided_by.replace('_', ' ')}"
        )
    lines.append("")
    for entry in [*report.features, *report.predictions]:
        if entry.drifted:
            lines.append(f"{entry.name}: {entry.explanation}")
    for skipped in report.skipped:
        lines.append(f"left out {skipped.name}: {skipped.reason}")
    timings = report.timings
    lines.append(
        f"{report.correction}. Took {timings.total_s:.3f} s (reading {timings.read_s:.3f} s, "
        f"summarising {timings.summarize_s:.3f} s, scoring {timings.score_s:.3f} s)."
    )
    return "\n".join(lines)


def run_drift(
    reference: str,
    current: str,
    as_json: bool = False,
    columns: str | None = None,
    settings_path: str | None = None,
    histograms: bool = False,
) -> int:
    from backend.monitoring.drift.files import file_drift_report

    wanted = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    if columns is not None and not wanted:
        raise InputError("name at least one column", "columns")
    report = file_drift_report(
        reference,
        current,
        _settings(settings_path),
        columns=wanted,
        include_histograms=histograms,
    )
    if as_json:
        print(report.model_dump_json(indent=2))
    else:
        print(format_table(report))
    return 0


def add_drift_command(sub: Any) -> None:
    drift = sub.add_parser(
        "drift",
        help="drift of one data file against another (Parquet or CSV)",
        description=(
            "Compare CURRENT with REFERENCE column by column (KS, Wasserstein and PSI for "
            "numbers; chi-square and Jensen-Shannon for categories) and say which columns "
            "drifted, decided by effect size on large samples and by p-value on small ones."
        ),
    )
    drift.add_argument("--reference", required=True, help="the training data (.parquet or .csv)")
    drift.add_argument("--current", required=True, help="the data to check (.parquet or .csv)")
    drift.add_argument("--json", action="store_true", help="print the report as JSON")
    drift.add_argument("--columns", help="only these columns, comma-separated (default: common)")
    drift.add_argument("--settings", help="JSON file of drift settings (thresholds, per feature)")
    drift.add_argument(
        "--histograms", action="store_true", help="include display histograms in the JSON"
    )

    def command(args: argparse.Namespace) -> int:
        return run_drift(
            args.reference,
            args.current,
            as_json=args.json,
            columns=args.columns,
            settings_path=args.settings,
            histograms=args.histograms,
        )

    drift.set_defaults(func=command)


def drift_parser() -> argparse.ArgumentParser:
    """``servedeck-server`` with only its drift command (what main uses for ``drift``)."""
    parser = argparse.ArgumentParser(prog="servedeck-server")
    add_drift_command(parser.add_subparsers(dest="command", required=True))
    return parser
