"""servedeck-server deploy, rollback, rollout and audit: the deployment API's actions offline.

They act on the database directly (as an admin named cli:<user>); running servers pick the
change up within their poll interval, exactly as after an HTTP call to another worker.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from backend.auth.tokens import Principal
from backend.deploy.audit import list_events
from backend.deploy.controller import rollout_status
from backend.deploy.service import GatesRefused
from backend.errors import ServeDeckError
from backend.schemas import (
    DEFAULT_ROLLOUT_STEPS,
    DeploymentState,
    GateReport,
    RolloutChecks,
    RolloutRequest,
    ServingPolicy,
)
from backend.workspace import Workspace

Opener = Callable[[argparse.Namespace], Workspace]


def cli_actor() -> Principal:
    return Principal(name=f"cli:{getpass.getuser()}", role="admin")


def format_report(report: GateReport) -> str:
    marks = {"passed": "ok", "failed": "FAIL", "skipped": "-", "forced": "forced"}
    verdict = "passed" if report.passed else "REFUSED"
    lines = [f"gates for {report.model} version {report.version}: {verdict}"]
    for gate in report.gates:
        lines.append(f"  {marks[gate.outcome]:6} {gate.gate:13} {gate.detail}")
    for mismatch in report.end_to_end_mismatches[:10]:
        lines.append(
            f"         example {mismatch.index}: expected {mismatch.expected!r}, "
            f"got {mismatch.actual!r}"
        )
    for change in report.signature_changes:
        lines.append(f"         signature: {change}")
    return "\n".join(lines)


def _show_state(state: DeploymentState) -> None:
    if state.report is not None:
        print(format_report(state.report), file=sys.stderr)
    event = state.event
    print(
        f"{state.model}: {event.action.replace('_', ' ')} "
        f"{event.from_version or '-'} -> {event.to_version or '-'}; serving version "
        f"{state.active_version or '-'}"
        + (f", rollout of {state.rollout.candidate} at {_stage(state)}" if state.rollout else "")
    )


def _stage(state: DeploymentState) -> str:
    rollout = state.rollout
    assert rollout is not None
    stage = "shadow" if rollout.phase == "shadow" else f"canary {rollout.percent:g}%"
    return stage + (" (paused)" if rollout.paused else "")


def _run(change: Callable[[], DeploymentState]) -> int:
    try:
        state = change()
    except GatesRefused as refused:
        print(format_report(refused.report), file=sys.stderr)
        raise
    _show_state(state)
    return 0


def _invalid(exc: ValidationError, what: str) -> ServeDeckError:
    """The first problem pydantic found, naming the option: not its whole multi-line dump."""
    first = exc.errors()[0] if exc.errors() else {"msg": str(exc), "loc": ()}
    where = ".".join(str(part) for part in first.get("loc", ()))
    reason = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return ServeDeckError(reason, f"{what}.{where}" if where else what)


def _steps(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ServeDeckError(
            f"expected percentages like 1,5,25,50,100, got {text!r}", "steps"
        ) from None


def add_deploy_commands(sub: Any, common: argparse.ArgumentParser, open_workspace: Opener) -> None:
    def deploy(args: argparse.Namespace) -> int:
        workspace = open_workspace(args)
        return _run(
            lambda: workspace.deploy.deploy(
                args.name, args.version, args.reason, cli_actor(), args.force_signature
            )
        )

    def rollback(args: argparse.Namespace) -> int:
        workspace = open_workspace(args)
        return _run(
            lambda: workspace.deploy.rollback(
                args.name, args.reason, cli_actor(), args.force_signature
            )
        )

    def rollout_start(args: argparse.Namespace) -> int:
        workspace = open_workspace(args)
        try:
            request = RolloutRequest(
                candidate=args.candidate,
                mode=args.mode,
                steps=_steps(args.steps),
                min_dwell_s=args.min_dwell,
                min_samples=args.min_samples,
                checks=RolloutChecks(
                    max_error_rate=args.max_error_rate,
                    max_p99_ratio=args.max_p99_ratio,
                    min_agreement=args.min_agreement,
                ),
                reason=args.reason,
                force_signature=args.force_signature,
            )
        except ValidationError as exc:
            raise _invalid(exc, "rollout") from None
        return _run(lambda: workspace.deploy.start_rollout(args.name, request, cli_actor()))

    def rollout_action(args: argparse.Namespace) -> int:
        workspace = open_workspace(args)
        method = getattr(workspace.deploy, args.rollout_command)
        return _run(lambda: method(args.name, args.reason, cli_actor()))

    def rollout_show(args: argparse.Namespace) -> int:
        # Failed candidate calls are counted inside the serving workers, not visible here.
        status = rollout_status(open_workspace(args).deploy, args.name)
        if status.rollout is None:
            print("no rollout is running")
            return 0
        print(status.model_dump_json(indent=2))
        return 0

    def policy(args: argparse.Namespace) -> int:
        workspace = open_workspace(args)
        current = workspace.deploy.state(args.name).policy
        changes = {
            name: value
            for name, value in (
                (
                    "auto_rollback",
                    None if args.auto_rollback is None else args.auto_rollback == "on",
                ),
                ("unjudged_quality", args.unjudged_quality),
                ("metric_window", args.metric_window),
                ("min_labelled", args.min_labelled),
            )
            if value is not None
        }
        if changes:
            try:
                wanted = ServingPolicy(**{**current.model_dump(), **changes})
            except ValidationError as exc:
                raise _invalid(exc, "policy") from None
            current = workspace.deploy.set_policy(args.name, wanted, args.reason, cli_actor())
        print(json.dumps(current.model_dump(mode="json"), indent=2))
        return 0

    def reports(args: argparse.Namespace) -> int:
        found = open_workspace(args).deploy.gate_reports(args.name, args.version)
        if args.json:
            print(json.dumps([r.model_dump(mode="json") for r in found], indent=2))
        for report in found if not args.json else []:
            when = f"{report.checked_at:%Y-%m-%d %H:%M}"
            print(f"#{report.id} {when} by {report.checked_by} ({report.purpose})")
            print(format_report(report))
        if not found:
            print("no gate reports yet")
        return 0

    def audit(args: argparse.Namespace) -> int:
        events = list_events(open_workspace(args).sessions, model=args.model, limit=args.limit)
        if args.json:
            print(json.dumps([e.model_dump(mode="json") for e in events], indent=2))
            return 0
        for event in events:
            print(
                f"{event.at:%Y-%m-%d %H:%M:%S} {event.actor} ({event.role}) "
                f"{event.model or '-'} {event.action} {event.from_version or '-'} -> "
                f"{event.to_version or '-'}: {event.reason}"
            )
        return 0

    parser = sub.add_parser("deploy", parents=[common], help="gate a version and serve it")
    parser.add_argument("name")
    parser.add_argument("version")
    parser.add_argument("--reason", required=True, help="why (kept in the audit trail)")
    parser.add_argument(
        "--force-signature", action="store_true", help="accept a signature that breaks callers"
    )
    parser.set_defaults(func=deploy)

    parser = sub.add_parser("rollback", parents=[common], help="back to the previous version")
    parser.add_argument("name")
    parser.add_argument("--reason", required=True)
    parser.add_argument("--force-signature", action="store_true")
    parser.set_defaults(func=rollback)

    rollout = sub.add_parser("rollout", help="gradual rollouts").add_subparsers(
        dest="rollout_command", required=True
    )
    start = rollout.add_parser("start", parents=[common], help="gate a candidate and roll it out")
    start.add_argument("name")
    start.add_argument("--candidate", required=True)
    start.add_argument("--mode", choices=["shadow", "canary"], required=True)
    start.add_argument(
        "--steps",
        default=",".join(f"{s:g}" for s in DEFAULT_ROLLOUT_STEPS),
        help="canary percentages, comma-separated",
    )
    defaults = RolloutChecks()
    start.add_argument("--min-dwell", type=float, default=60.0, help="seconds per step at least")
    start.add_argument("--min-samples", type=int, default=100, help="requests per step at least")
    start.add_argument("--max-error-rate", type=float, default=defaults.max_error_rate)
    start.add_argument("--max-p99-ratio", type=float, default=defaults.max_p99_ratio)
    start.add_argument("--min-agreement", type=float, default=defaults.min_agreement)
    start.add_argument("--reason", default="")
    start.add_argument("--force-signature", action="store_true")
    start.set_defaults(func=rollout_start)
    for action, text in (
        ("promote", "serve the candidate for all traffic"),
        ("abort", "send all traffic back to the serving version"),
        ("pause", "hold the rollout at its step"),
        ("resume", "let the rollout advance again"),
    ):
        parser = rollout.add_parser(action, parents=[common], help=text)
        parser.add_argument("name")
        parser.add_argument("--reason", default="")
        parser.set_defaults(func=rollout_action)
    show = rollout.add_parser("show", parents=[common], help="the running rollout")
    show.add_argument("name")
    show.set_defaults(func=rollout_show)

    parser = sub.add_parser(
        "policy", parents=[common], help="show or change how a model is watched and rolled out"
    )
    parser.add_argument("name")
    parser.add_argument(
        "--auto-rollback",
        choices=["on", "off"],
        help="roll back by itself when the live metric leaves its acceptable range",
    )
    parser.add_argument(
        "--unjudged-quality",
        choices=["wait", "proceed"],
        help="a rollout step whose quality cannot be judged yet (too few labels): wait for "
        "labels (default), or proceed without them (the audit trail says so)",
    )
    parser.add_argument("--metric-window", type=int)
    parser.add_argument("--min-labelled", type=int)
    parser.add_argument("--reason", default="", help="why (kept in the audit trail)")
    parser.set_defaults(func=policy)

    parser = sub.add_parser("gate-reports", parents=[common], help="a model's gate reports")
    parser.add_argument("name")
    parser.add_argument("--version")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=reports)

    parser = sub.add_parser("audit", parents=[common], help="the audit trail, newest first")
    parser.add_argument("--model")
    parser.add_argument("--limit", type=int, default=50)
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=audit)
