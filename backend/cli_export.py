"""servedeck-server export: the retraining export of one model into a directory.

The same rows, columns and manifest as ``POST /api/v1/exports`` (as an admin named
cli:<user>), written as the data file and ``manifest.json`` instead of a ZIP.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backend.cli_deploy import Opener, cli_actor
from backend.errors import InputError
from backend.schemas import EXPORT_SOURCES, ExportRequest


def add_export_command(sub: Any, common: argparse.ArgumentParser, open_workspace: Opener) -> None:
    def export(args: argparse.Namespace) -> int:
        from backend.feedback.export import Export

        request = _request(args)
        workspace = open_workspace(args)
        try:
            started = time.perf_counter()
            job = Export(
                workspace.sessions,
                workspace.registry.get_model(request.model),
                request,
                created_by=cli_actor().name,
            )
            manifest = job.write_directory(Path(args.out))
            took = time.perf_counter() - started
        finally:
            workspace.close()
        counts = ", ".join(f"{c.source} {c.rows}" for c in manifest.by_source if c.rows)
        print(
            f"{manifest.rows} rows ({counts or 'none'}) written to "
            f"{Path(args.out) / manifest.files[0].name} in {took:.1f} s; manifest.json beside it"
        )
        return 0

    parser = sub.add_parser(
        "export",
        parents=[common],
        help="write a model's logged features with their best labels (retraining data)",
    )
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, help="directory for the data file and manifest")
    parser.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    parser.add_argument("--version", action="append", dest="versions", help="repeatable")
    parser.add_argument("--start", help="ISO date-time (UTC unless it names a zone)")
    parser.add_argument("--end", help="ISO date-time, exclusive")
    parser.add_argument(
        "--source",
        action="append",
        dest="sources",
        choices=EXPORT_SOURCES,
        help="label sources to keep, repeatable (default: review, report, feedback)",
    )
    parser.add_argument(
        "--uninfluenced-only",
        action="store_true",
        help="only labels the model's answer could not have shaped (held-out, review)",
    )
    parser.add_argument("--class", action="append", dest="classes", help="repeatable")
    parser.set_defaults(func=export)


def _request(args: argparse.Namespace) -> ExportRequest:
    values: dict[str, Any] = {
        "model": args.model,
        "format": args.format,
        "uninfluenced_only": args.uninfluenced_only,
    }
    for name in ("versions", "start", "end", "sources", "classes"):
        if getattr(args, name) is not None:
            values[name] = getattr(args, name)
    try:
        return ExportRequest.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise InputError(first["msg"], field or "model") from None
