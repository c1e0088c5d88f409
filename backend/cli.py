"""servedeck-server: serve, register models, manage tokens, build the demo, simulate traffic,
measure drift between two data files."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import socket
import stat
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.claim import BUSY_LINE, DataDirBusy, DataDirClaim
from backend.cli_drift import add_drift_command, drift_parser
from backend.errors import ServeDeckError
from backend.parent_watch import ParentWatch
from backend.settings import Settings

if TYPE_CHECKING:
    from backend.schemas import FeatureSource
    from backend.workspace import Workspace


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.load(data_dir=args.data_dir, database_url=args.database_url)


def _open(args: argparse.Namespace) -> Workspace:
    from backend.workspace import Workspace

    settings = _settings(args)
    try:
        claim = DataDirClaim.take(settings)
    except DataDirBusy:
        # A server owns the directory: it upgraded the store and wrote the first-start token.
        # A command beside it only joins: upgrading under it, or writing back an admin token
        # its owner deleted, is the server's call alone.
        return Workspace.join(settings)
    try:
        return Workspace.open(settings)
    finally:
        claim.release()


def _read_json(path: str, what: str) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ServeDeckError(f"{what} file {path} does not exist", what) from None
    except json.JSONDecodeError as exc:
        raise ServeDeckError(f"{what} file {path} is not valid JSON: {exc}", what) from None


# ---------------------------------------------------------------------------- commands


def _watch_parent(args: argparse.Namespace) -> None:
    if not args.exit_with_parent:
        return
    # Only a pipe says when its writer ended: /dev/null ends at once (the server would stop as
    # soon as it started), a terminal only on Ctrl+D, and a closed stdin is no file at all.
    try:
        is_pipe = stat.S_ISFIFO(os.fstat(0).st_mode)
    except OSError:
        is_pipe = False
    if not is_pipe:
        raise ServeDeckError(
            "--exit-with-parent needs a pipe from the starting process on stdin "
            "(as the console starts its backend)",
            "exit_with_parent",
        )
    ParentWatch().start()


def cmd_serve(args: argparse.Namespace) -> int:
    from backend.server import serve

    _watch_parent(args)
    settings = _settings(args)
    if args.max_batch_size is not None:
        if args.max_batch_size < 1:
            raise ServeDeckError("must be at least 1", "max-batch-size")
        settings = dataclasses.replace(settings, max_batch_size=args.max_batch_size)
    serve(settings, args.host, args.port, workers=args.workers, log_level=args.log_level)
    return 0


def _feature_source(item: str) -> FeatureSource:
    """FEATURE=MODEL or FEATURE=MODEL:OUTPUT (predict or predict_proba)."""
    from pydantic import ValidationError

    from backend.schemas import FeatureSource

    feature, sep, source = item.partition("=")
    model, _, output = source.partition(":")
    if not sep or not feature.strip() or not model.strip():
        raise ServeDeckError(
            f"expected FEATURE=MODEL or FEATURE=MODEL:OUTPUT, got {item!r}", "feature-source"
        )
    try:
        return FeatureSource.model_validate(
            {"feature": feature.strip(), "model": model.strip(), "output": output or None}
        )
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid")
        raise ServeDeckError(f"{item!r}: {reason}", "feature-source") from None


def cmd_models_register(args: argparse.Namespace) -> int:
    from backend.registry.lineage import LineageDeclaration
    from backend.registry.reference import read_table_file
    from backend.schemas import FeatureSpec, ValidityAssets

    workspace = _open(args)
    validity = ValidityAssets.model_validate(_read_json(args.validity, "validity"))
    signature = None
    if args.signature:
        signature = [FeatureSpec.model_validate(s) for s in _read_json(args.signature, "signature")]
    frame = None
    if args.training_data:
        frame = read_table_file(Path(args.training_data).read_bytes(), "training-data")
    info = workspace.registry.register_version(
        args.name,
        Path(args.artifact).read_bytes(),
        filename=args.artifact,
        validity=validity,
        registered_by=args.registered_by,
        signature=signature,
        training_frame=frame,
        training_target=args.target,
        task=args.task,
        description=args.description,
        trust_pickle=args.trust_pickle,
        trust_reason=args.trust_reason or "",
        trusted_types=args.trust_type,
        lineage=LineageDeclaration(
            tuple(_feature_source(item) for item in args.feature_source),
            args.force_lineage,
            args.lineage_reason or "",
        ),
    )
    for warning in info.registration_warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"registered {args.name} version {info.version} (sha256 {info.artifact_sha256})")
    return 0


def cmd_models_list(args: argparse.Namespace) -> int:
    workspace = _open(args)
    models = workspace.registry.list_models()
    if args.json:
        print(json.dumps([m.model_dump(mode="json") for m in models], indent=2))
        return 0
    if not models:
        print("no models registered")
    for model in models:
        versions = ", ".join(v.version for v in model.versions)
        print(
            f"{model.name:20} {model.task:15} active={model.active_version or '-':4} "
            f"versions=[{versions}]"
        )
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    workspace = _open(args)
    print(workspace.registry.get_model(args.name).model_dump_json(indent=2))
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    workspace = _open(args)
    constraints: dict[str, list[Any]] = {}
    for item in args.constraint:
        feature, sep, values = item.partition("=")
        if not sep or not feature or not values:
            raise ServeDeckError(f"expected FEATURE=V1,V2, got {item!r}", "constraint")
        constraints[feature.strip()] = [v.strip() for v in values.split(",")]
    models = args.models or None
    typed = workspace.registry.token_constraints(models, constraints)
    secret = workspace.tokens.create(args.name, args.role, models, typed)
    # The token alone on stdout, so scripts can capture it.
    print(secret)
    return 0


def cmd_tokens_list(args: argparse.Namespace) -> int:
    workspace = _open(args)
    for token in workspace.tokens.list():
        scope = ",".join(token.models) if token.models else "all models"
        state = "revoked" if token.revoked else "active"
        print(f"{token.name:24} {token.role:9} {state:8} {scope}")
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    _open(args).tokens.revoke(args.name)
    print(f"revoked {args.name}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from backend.demo.workspace import build_demo
    from backend.workspace import Workspace

    _watch_parent(args)
    settings = _settings(args)
    # Serving: claim the directory before building into it, so a running backend is never
    # written under (nor its server.json removed).
    claim = DataDirClaim.take(settings) if args.serve else None
    token_is_new = not settings.admin_token_file.exists()
    try:
        workspace = Workspace.open(settings)
        summary = build_demo(workspace)
    except BaseException:
        if claim is not None:
            claim.release()
        raise
    built = ", ".join(summary["built"]) or "nothing (already there)"
    print(f"demo workspace in {workspace.settings.data_dir}: built {built}", file=sys.stderr)
    for name, model in summary["models"].items():
        versions = ", ".join(model["versions"])
        print(
            f"  {name}: active version {model['active_version']}, versions {versions}",
            file=sys.stderr,
        )
    if not args.serve:
        return 0
    from backend.demo.simulate import run_simulator
    from backend.server import serve

    assert claim is not None
    stop = threading.Event()
    token = workspace.admin_token()
    workspace.close()

    def simulate_when_ready() -> None:
        url = _wait_for_server(settings, stop)
        if url is None:
            return
        print(f"ServeDeck demo at {url}", file=sys.stderr, flush=True)
        print(_admin_token_notice(settings, token, token_is_new), file=sys.stderr, flush=True)
        try:
            run_simulator(
                url,
                token,
                rate=args.rate,
                drift_at=args.drift_at,
                stop_event=stop,
                feedback_loop=args.feedback_loop,
            )
        except Exception:  # the server must go on serving; say why the traffic stopped
            logging.getLogger("backend.demo").exception("the traffic simulator stopped")

    port = args.port
    if port and not _port_is_free(args.host, port):
        print(f"port {port} is busy; serving on a free port instead", file=sys.stderr)
        port = 0
    threading.Thread(target=simulate_when_ready, name="simulator", daemon=True).start()
    try:
        serve(settings, args.host, port, claim=claim)
    finally:
        stop.set()
    return 0


def _admin_token_notice(settings: Settings, token: str, token_is_new: bool) -> str:
    """A token is shown once, when it is made, and only to a person at a terminal: never
    into a pipe or a file, where it would end up in somebody's log."""
    where = f"the admin token is in {settings.admin_token_file} (readable by you only)"
    if token_is_new and sys.stderr.isatty():
        return f"admin token (shown once): {token}\n{where}"
    return where


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _wait_for_server(settings: Settings, stop: threading.Event) -> str | None:
    while not stop.wait(0.1):
        if settings.server_info_file.exists():
            return str(json.loads(settings.server_info_file.read_text())["url"])
    return None


def cmd_simulate(args: argparse.Namespace) -> int:
    from backend.demo.simulate import run_simulator

    settings = _settings(args)
    url = args.url
    if url is None:
        if not settings.server_info_file.exists():
            raise ServeDeckError(
                f"no running server found in {settings.data_dir}; start "
                "'servedeck-server serve' or pass --url",
                "url",
            )
        url = json.loads(settings.server_info_file.read_text())["url"]
    token = args.token or settings.admin_token_file.read_text().strip()
    stats = run_simulator(
        url,
        token,
        rate=args.rate,
        duration=args.duration,
        drift_at=args.drift_at,
        label_delay=args.label_delay,
        seed=args.seed,
        feedback_loop=args.feedback_loop,
    )
    print(json.dumps(stats.as_dict(), indent=2, default=str))
    return 0


# ---------------------------------------------------------------------------- parser


FEEDBACK_LOOP_HELP = (
    "simulate a feedback loop: transactions the fraud model blocks never get a chargeback "
    "label (held-out ones always do); see the Feedback loops page"
)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--data-dir", help="workspace directory (default: user data dir; env SERVEDECK_DATA_DIR)"
    )
    common.add_argument(
        "--database-url",
        help="SQLAlchemy URL (env SERVEDECK_DATABASE_URL; default SQLite in the data dir)",
    )
    parser = argparse.ArgumentParser(prog="servedeck-server", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", parents=[common], help="serve the workspace over HTTP")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080, help="0 picks a free port")
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--log-level", default="info")
    serve.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when stdin closes or the starting process ends (the console's backend)",
    )
    serve.add_argument(
        "--max-batch-size",
        type=int,
        default=None,
        help="rows per model call when requests are batched (1 turns it off)",
    )
    serve.set_defaults(func=cmd_serve)

    models = sub.add_parser("models", help="register and inspect models").add_subparsers(
        dest="models_command", required=True
    )
    register = models.add_parser("register", parents=[common], help="register a model version")
    register.add_argument("name")
    register.add_argument(
        "--artifact", required=True, help=".skops file (.pkl/.joblib with --trust-pickle)"
    )
    register.add_argument(
        "--validity",
        required=True,
        help="JSON file: end_to_end, confidence_set, metric, acceptable_range",
    )
    register.add_argument("--signature", help="JSON file: a list of feature specs")
    register.add_argument(
        "--training-data",
        help="CSV or Parquet: the reference drift is measured against (and the signature, "
        "when not given); without it the validity confidence set stands in",
    )
    register.add_argument(
        "--target",
        help="the label column of --training-data: not a feature; calibrates the "
        "label-free performance estimate",
    )
    register.add_argument("--task", choices=["classification", "regression"])
    register.add_argument("--description", default="")
    register.add_argument(
        "--trust-pickle",
        action="store_true",
        help="accept a pickle/joblib file (it can run code when loaded); needs --trust-reason",
    )
    register.add_argument(
        "--trust-reason",
        help="why the pickle is safe to run (recorded in the audit trail)",
    )
    register.add_argument(
        "--trust-type",
        action="append",
        default=[],
        help="a skops type you reviewed and accept (repeatable)",
    )
    register.add_argument(
        "--feature-source",
        action="append",
        default=[],
        metavar="FEATURE=MODEL[:OUTPUT]",
        help="an input that another model's output produces (OUTPUT: predict or "
        "predict_proba; repeatable); a feedback loop is refused unless --force-lineage",
    )
    register.add_argument(
        "--force-lineage",
        action="store_true",
        help="register even though the feature sources close a feedback loop; needs "
        "--lineage-reason",
    )
    register.add_argument(
        "--lineage-reason", help="why the feedback loop is acceptable (kept in the audit trail)"
    )
    register.add_argument("--registered-by", default="cli")
    register.set_defaults(func=cmd_models_register)
    listing = models.add_parser("list", parents=[common], help="list models")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=cmd_models_list)
    show = models.add_parser("show", parents=[common], help="describe one model")
    show.add_argument("name")
    show.set_defaults(func=cmd_models_show)

    tokens = sub.add_parser("tokens", help="manage access tokens").add_subparsers(
        dest="tokens_command", required=True
    )
    create = tokens.add_parser("create", parents=[common], help="create a token (printed once)")
    create.add_argument("--name", required=True)
    create.add_argument("--role", required=True, choices=["admin", "engineer", "support", "client"])
    create.add_argument("--models", nargs="*", default=[], help="models a client token may use")
    create.add_argument(
        "--constraint",
        action="append",
        default=[],
        help="FEATURE=V1,V2: allowed input values for a client token",
    )
    create.set_defaults(func=cmd_tokens_create)
    tokens.add_parser("list", parents=[common]).set_defaults(func=cmd_tokens_list)
    revoke = tokens.add_parser("revoke", parents=[common])
    revoke.add_argument("name")
    revoke.set_defaults(func=cmd_tokens_revoke)

    demo = sub.add_parser("demo", parents=[common], help="build the card-fraud demo workspace")
    demo.add_argument("--serve", action="store_true", help="then serve it with live traffic")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--rate", type=float, default=20.0, help="simulated requests/s")
    demo.add_argument("--drift-at", type=float, default=None, help="seconds until drift")
    demo.add_argument("--feedback-loop", action="store_true", help=FEEDBACK_LOOP_HELP)
    demo.add_argument(
        "--exit-with-parent",
        action="store_true",
        help="stop when stdin closes or the starting process ends (the console's backend)",
    )
    demo.set_defaults(func=cmd_demo)

    simulate = sub.add_parser("simulate", parents=[common], help="send demo traffic over HTTP")
    simulate.add_argument("--url", help="server URL (default: the running server of the data dir)")
    simulate.add_argument("--token", help="default: the admin token of the data dir")
    simulate.add_argument("--rate", type=float, default=20.0)
    simulate.add_argument("--duration", type=float, default=None)
    simulate.add_argument("--drift-at", type=float, default=None)
    simulate.add_argument(
        "--label-delay", type=float, default=5.0, help="seconds before labels are posted"
    )
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--feedback-loop", action="store_true", help=FEEDBACK_LOOP_HELP)
    simulate.set_defaults(func=cmd_simulate)

    # Imported here: the deployment stack (models, the store) is not needed by `drift`.
    from backend.cli_deploy import add_deploy_commands
    from backend.cli_export import add_export_command
    from backend.cli_held_out import add_held_out_command

    add_deploy_commands(sub, common, _open)
    add_held_out_command(sub, common, _open)
    add_export_command(sub, common, _open)
    add_drift_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Migrations run on every open; their progress lines are noise at the command line.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # Every file these commands make lands in a data directory of tokens, predictions and
    # models: readable by its owner only, whichever code creates it (SQLite, the spool, ...).
    os.umask(0o077)
    arguments = sys.argv[1:] if argv is None else argv
    # The file drift report opens no workspace: it starts without the server's imports.
    parser = drift_parser() if arguments[:1] == ["drift"] else build_parser()
    args = parser.parse_args(arguments)
    try:
        return int(args.func(args))
    except DataDirBusy as exc:
        # For the console that started this: where to connect instead (stdout, like READY).
        print(f"{BUSY_LINE} {exc.running.url or '-'}", flush=True)
        print(f"error: {exc.message}", file=sys.stderr)
        return 3
    except ServeDeckError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
