"""servedeck-server held-out: show, set or end a model's held-out share offline.

The same checks and audit event as ``PUT /api/v1/models/{name}/held-out`` (as an admin named
cli:<user>); running servers route by the change within their poll interval.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from backend.cli_deploy import Opener, cli_actor
from backend.errors import InputError
from backend.schemas import HeldOutSettings

HOUR_S = 3600


def add_held_out_command(sub: Any, common: argparse.ArgumentParser, open_workspace: Opener) -> None:
    def held_out(args: argparse.Namespace) -> int:
        workspace = open_workspace(args)
        store = workspace.deploy.held_out
        if args.off:
            store.set(args.name, None, args.reason, cli_actor())
        elif args.policy is not None or args.share is not None:
            current = store.get(args.name)
            policy = _policy(args.policy) if args.policy is not None else None
            if policy is None and current is None:
                raise InputError("no held-out policy yet: give one with --policy", "policy")
            settings: dict[str, Any] = {
                "share_percent": args.share
                if args.share is not None
                else (current.share_percent if current is not None else 2.0),
                "policy": policy if policy is not None else current.policy.model_dump(mode="json"),  # type: ignore[union-attr]
            }
            try:
                wanted = HeldOutSettings.model_validate(settings)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                raise InputError(first["msg"], field or "policy") from None
            store.set(args.name, wanted, args.reason, cli_actor())
        status = store.status(args.name, HOUR_S)
        print(status.model_dump_json(indent=2))
        return 0

    parser = sub.add_parser(
        "held-out",
        parents=[common],
        help="show or change the share of entities answered without the model",
    )
    parser.add_argument("name")
    parser.add_argument("--share", type=float, help="percent of entities held out (0-50)")
    parser.add_argument(
        "--policy",
        help='the no-model policy: a JSON file, or JSON text such as \'{"kind": "default", '
        '"answer": 0}\' (kinds: default, rule, fallback; see the README)',
    )
    parser.add_argument("--off", action="store_true", help="hold nothing out any more")
    parser.add_argument("--reason", default="", help="why (kept in the audit trail)")
    parser.set_defaults(func=held_out)


def _policy(text: str) -> Any:
    path = Path(text)
    raw = path.read_text() if not text.lstrip().startswith("{") and path.exists() else text
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"not JSON, nor a JSON file: {exc}", "policy") from None
