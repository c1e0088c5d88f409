"""A baseline ServeDeck from an earlier commit, for the serving bench's before/after A/B.

The baseline is a detached ``git worktree`` of the repository at a ref; its server runs with
that checkout as working directory and ``PYTHONPATH``, so it imports the baseline's ``backend``
(the venv's editable install only resolves what ``sys.path`` does not). It gets its own data
directory, registered by the baseline's own code: the current schema may be newer than the
baseline's migrations, and the baseline refuses a database from the future.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.bench.models import BenchModel
from tests.bench.servers import REPO_ROOT, clean_env

# Run by the baseline's Python path: its own bench models (same seeds, same signatures and
# validity assets) registered through its own registry, but with the artifacts pointed at the
# files the current servers load, so all of them serve the very same bytes.
_REGISTER = """
import dataclasses, json, sys
from pathlib import Path
import backend
from tests.bench.models import build_models, register_models
out_dir, data_dir, artifacts = Path(sys.argv[1]), Path(sys.argv[2]), json.loads(sys.argv[3])
models = [
    dataclasses.replace(m, artifact=Path(artifacts[m.name]))
    for m in build_models(out_dir)
    if m.name in artifacts
]
token = register_models(data_dir, models)
print(json.dumps({"token": token, "backend": backend.__file__}))
"""


@dataclass(frozen=True)
class Deck:
    """Where one ServeDeck server keeps its data, its admin token, and the code it runs."""

    data_dir: Path
    token: str
    src: Path | None = None  # a checkout to run from instead of the repository
    settings_env: tuple[tuple[str, str], ...] = ()  # settings of the server, e.g. monitoring off

    @property
    def extra_env(self) -> dict[str, str]:
        env = dict(self.settings_env)
        if self.src is not None:
            env["PYTHONPATH"] = str(self.src)
        return env


def _git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def resolve(ref: str) -> str:
    """The short commit a ref names (the table shows what was actually measured)."""
    return _git("rev-parse", "--short", f"{ref}^{{commit}}")


@contextmanager
def worktree(ref: str, path: Path, problems: list[str]) -> Iterator[Path]:
    """A detached checkout of ``ref`` at ``path``, removed afterwards whatever happened."""
    _git("worktree", "add", "--detach", str(path), ref)
    try:
        yield path
    finally:
        try:
            _git("worktree", "remove", "--force", str(path))
        except Exception as exc:  # reported, never raised over the bench's own outcome
            problems.append(f"baseline worktree not removed: {exc}")
            with suppress(Exception):
                _git("worktree", "prune")


def register(src: Path, work_dir: Path, models: list[BenchModel]) -> Deck:
    """Register ``models`` in a fresh data dir with the baseline's code; returns its Deck."""
    data_dir = work_dir / "baseline-data"
    artifacts = {m.name: str(m.artifact.resolve()) for m in models}
    argv = [sys.executable, "-c", _REGISTER, str(work_dir / "baseline-models"), str(data_dir)]
    done = subprocess.run(
        [*argv, json.dumps(artifacts)],
        cwd=src,
        env={**clean_env(), "PYTHONPATH": str(src)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    if done.returncode != 0:
        raise RuntimeError(f"baseline registration failed: {done.stderr.strip()[-2000:]}")
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    imported = Path(answer["backend"]).resolve()
    if not imported.is_relative_to(src.resolve()):
        # The current package would be measured twice and called a baseline.
        raise RuntimeError(f"baseline imported {imported}, not the checkout at {src}")
    return Deck(data_dir, str(answer["token"]), src)
