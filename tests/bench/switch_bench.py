"""Benchmark 4: deployment switches under load on one worker.

One model with two registered versions, one ServeDeck worker, closed-loop load at 16
connections (the most one worker holds). Three phases of the same length on the same
server: without switches, with 20 alternating actions spaced evenly (rollback 2 -> 1,
deploy 1 -> 2, ...), and without switches again: throughput on a small machine drifts by
tens of percent over seconds, so the switching phase is compared with the mean of the
phases around it. The load generator (``tests.bench.version_load``) records every answer's
completion time and ``model_version``, so the switch time of an action is measured from the
answers themselves: from the moment the call was sent to the last answer from the old
version (after it, every answer comes from the new one).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from backend.settings import Settings
from backend.workspace import Workspace
from tests.bench.models import BENCH_ADMIN, build_lr20, register_version, sqlite_url
from tests.bench.servers import REPO_ROOT, ServerProcess, clean_env, running_server
from tests.bench.tables import fmt, format_table, short_error
from tests.bench.version_load import READY_LINE

MODEL = "lr20"
CONCURRENCY = 16
ACTIONS = 20
SWITCH_TARGET_MS = 1000.0  # the issue: every worker on the new version within one second
WARMUP_S = 2.0  # load before each measured window: connections open, caches warm
# The load generator runs this much longer than the window: it counts its seconds from its
# own start, which comes before its first answer, and the last action needs answers after it.
LOAD_SLACK_S = 3.0


@dataclass
class Action:
    kind: str  # "rollback" or "deploy"
    from_version: str
    to_version: str
    sent: float = 0.0  # epoch seconds, the clock the load generator records answers with
    returned: float = 0.0
    status: int = 0  # HTTP status of the call; 0 when it got no answer
    served_after: str | None = None  # active_version in the call's answer
    error: str = ""
    switch_ms: float | None = None  # None: no switch to the new version was seen

    @property
    def call_ms(self) -> float:
        return (self.returned - self.sent) * 1000.0


@dataclass
class Phase:
    name: str
    seconds: float = 0.0
    answered: int = 0  # 2xx answers completed inside the measured window
    rps: float = 0.0
    failed: int = 0  # non-2xx or no answer, over the whole load run (warm-up included)
    error_sample: str = ""
    versions: dict[str, int] = field(default_factory=dict)  # 2xx answers per version
    note: str = ""


@dataclass
class Outcome:
    seconds: float
    baselines: list[Phase] = field(default_factory=list)  # before and after the switches
    switching: Phase | None = None
    actions: list[Action] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    error: str | None = None


# ---------------------------------------------------------------------- setup


def _prepare(work_dir: Path) -> tuple[Path, str, list[str], list[bytes]]:
    """A data dir serving version 1 of a model with two versions; token, versions, bodies."""
    # Two trainings on different seeds: the versions really differ, as in a real promotion.
    builds = []
    for i in (1, 2):
        out_dir = work_dir / "models" / f"v{i}"
        out_dir.mkdir(parents=True, exist_ok=True)
        builds.append(build_lr20(out_dir, 1_000, seed=20 + i))
    data_dir = work_dir / "servedeck"
    settings = Settings.load(data_dir=data_dir, database_url=sqlite_url(data_dir))
    workspace = Workspace.open(settings)
    try:
        versions = [register_version(workspace, MODEL, build) for build in builds]
        workspace.deploy.deploy(MODEL, versions[0], "benchmark setup", BENCH_ADMIN)
        token = workspace.admin_token()
    finally:
        workspace.close()
    # The record form with an entity id, as a real caller sends it.
    bodies = []
    for index, body in enumerate(builds[0].bodies):
        payload = orjson.loads(body)
        payload["entity_id"] = f"entity-{index}"
        bodies.append(orjson.dumps(payload))
    return data_dir, token, versions, bodies


def _call(base_url: str, path: str, payload: dict[str, Any], token: str) -> tuple[int, Any, str]:
    """POST JSON; (status, parsed answer or None, error text)."""
    request = urllib.request.Request(base_url + path, data=orjson.dumps(payload), method="POST")
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Bearer {token}")
    # No proxies: an exported http_proxy must not route 127.0.0.1 through a proxy.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=60) as response:
            return response.status, orjson.loads(response.read()), ""
    except urllib.error.HTTPError as exc:
        return exc.code, None, short_error(exc.read().decode(errors="replace"), 200)
    except Exception as exc:
        return 0, None, f"{type(exc).__name__}: {exc}"


def _perform(base_url: str, action: Action, token: str) -> None:
    path = f"/api/v1/models/{MODEL}/{action.kind}"
    payload: dict[str, Any] = {"reason": f"switch benchmark: {action.kind}"}
    if action.kind == "deploy":
        payload["version"] = action.to_version
    action.sent = time.time()
    action.status, answer, action.error = _call(base_url, path, payload, token)
    action.returned = time.time()
    if isinstance(answer, dict):
        action.served_after = answer.get("active_version")


# ---------------------------------------------------------------------- load


Answer = tuple[float, int, str | None]


def _load(
    url: str, bodies_file: Path, token: str, seconds: float, out: Path, actions: list[Action]
) -> tuple[list[Answer], float, str]:
    """Run the load generator; perform the actions evenly inside the measured window.

    Returns the answers, the window's start (epoch seconds) and the generator's error sample.
    """
    argv = [
        sys.executable, "-m", "tests.bench.version_load", "--url", url,
        "--bodies", str(bodies_file), "--header", f"Authorization: Bearer {token}",
        "--concurrency", str(CONCURRENCY), "--seconds", f"{WARMUP_S + seconds + LOAD_SLACK_S:g}",
        "--out", str(out),
    ]  # fmt: skip
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=clean_env(), stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            assert proc.stdout is not None
            # Bounded: the generator stops by itself after its seconds, ready or not.
            for line in proc.stdout:
                if line.strip() == READY_LINE:
                    break
            else:
                proc.wait(30)
                stderr.seek(0)
                tail = " | ".join(stderr.read().splitlines()[-5:])
                raise RuntimeError(
                    f"the load generator got no answer (exit {proc.returncode}): {tail}"
                )
            window_start = time.time() + WARMUP_S
            spacing = seconds / len(actions) if actions else 0.0
            for index, action in enumerate(actions):
                # Evenly spaced; when a call overruns its slot the next one goes at once.
                time.sleep(max(0.0, window_start + (index + 0.5) * spacing - time.time()))
                _perform(url.split("/v1/", 1)[0], action, token)
            summary_line = proc.stdout.read()
            proc.wait(seconds + 120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    summary = orjson.loads(summary_line.strip().splitlines()[-1]) if summary_line.strip() else {}
    answers: list[Answer] = [tuple(orjson.loads(line)) for line in out.read_bytes().splitlines()]
    return answers, window_start, str(summary.get("error_sample", ""))


def _summarise(name: str, answers: list[Answer], start: float, seconds: float) -> Phase:
    phase = Phase(name, seconds)
    end = start + seconds
    for t, status, version in answers:
        ok = 200 <= status < 300
        if not ok:
            phase.failed += 1
        elif start <= t < end:
            phase.answered += 1
            key = str(version)
            phase.versions[key] = phase.versions.get(key, 0) + 1
    last = max((t for t, _, _ in answers), default=start)
    if last < end:
        # The rate would be understated: say so rather than report a wrong ratio silently.
        phase.note = f"the load stopped {end - last:.1f} s before the window ended"
    phase.rps = phase.answered / seconds if seconds > 0 else 0.0
    return phase


def _switch_times(answers: list[Answer], actions: list[Action], end: float) -> None:
    """Fill ``switch_ms``: call sent -> last old-version answer, within the action's slot.

    An action's slot runs until the next action is sent, so answers caused by the next
    switch are not blamed on this one. No new-version answer after the last old one means
    the switch was not seen at all (None).
    """
    for index, action in enumerate(actions):
        if action.status != 200:
            continue
        slot_end = actions[index + 1].sent if index + 1 < len(actions) else end
        slot = [(t, v) for t, s, v in answers if action.sent <= t < slot_end and 200 <= s < 300]
        last_old = max((t for t, v in slot if v != action.to_version), default=None)
        seen_new = any(
            v == action.to_version and (last_old is None or t > last_old) for t, v in slot
        )
        if not seen_new:
            continue
        # No old answer after the call at all: every answer from the call on was new.
        action.switch_ms = 0.0 if last_old is None else (last_old - action.sent) * 1000.0


# ---------------------------------------------------------------------- the run


def _plan(versions: list[str]) -> list[Action]:
    """Start on version 2: rollback to 1, deploy 2 again, and so on."""
    old, new = versions[0], versions[1]
    return [
        Action("rollback", new, old) if i % 2 == 0 else Action("deploy", old, new)
        for i in range(ACTIONS)
    ]


def run_switch_bench(work_dir: Path, seconds: float) -> Outcome:
    outcome = Outcome(seconds=seconds)
    bench_dir = work_dir / "switch"
    try:
        data_dir, token, versions, bodies = _prepare(bench_dir)
    except Exception:
        outcome.error = "setup failed: " + traceback.format_exc(limit=3)
        return outcome
    bodies_file = bench_dir / "bodies.jsonl"
    bodies_file.write_bytes(b"\n".join(bodies) + b"\n")
    argv = [sys.executable, "-m", "backend.cli", "serve", "--data-dir", str(data_dir)]
    argv += ["--port", "0", "--log-level", "warning"]
    proc: ServerProcess | None = None
    try:
        with running_server("servedeck/switch", argv, "SERVEDECK READY") as proc:
            assert proc.url is not None
            url = f"{proc.url}/v1/models/{MODEL}:predict"

            def phase(
                name: str, stem: str, actions: list[Action]
            ) -> tuple[Phase, list[Answer], float]:
                print(f"  {name}...", flush=True)
                out = bench_dir / f"answers-{stem}.jsonl"
                answers, start, sample = _load(url, bodies_file, token, seconds, out, actions)
                summary = _summarise(name, answers, start, seconds)
                summary.error_sample = sample
                return summary, answers, start

            outcome.baselines.append(phase("without switches (before)", "before", [])[0])
            # Version 2 serving (and loaded) before the window: the first action is a rollback.
            first = Action("deploy", versions[0], versions[1])
            _perform(proc.url, first, token)
            if first.status != 200:
                raise RuntimeError(f"deploying version {versions[1]} failed: {first.error}")
            outcome.actions = _plan(versions)
            outcome.switching, answers, start = phase(
                f"with {ACTIONS} switches", "switching", outcome.actions
            )
            _switch_times(answers, outcome.actions, start + seconds + LOAD_SLACK_S)
            del answers  # a few hundred thousand tuples: not kept through the next phase
            outcome.baselines.append(phase("without switches (after)", "after", [])[0])
    except Exception:
        outcome.error = traceback.format_exc(limit=3)
    finally:
        if proc is not None:
            outcome.problems.extend(proc.problems)
    return outcome


# ---------------------------------------------------------------------- reporting


def _met(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def render(outcome: Outcome) -> str:
    title = (
        f"Deployment switches under load (one worker, {CONCURRENCY} connections, "
        f"{outcome.seconds:g} s per phase)"
    )
    bases, switching = outcome.baselines, outcome.switching
    if not bases or switching is None:
        # The exception line in the table, the whole traceback under it.
        error = outcome.error or "no result"
        last_line = error.strip().splitlines()[-1]
        table = format_table(title, ["error"], [[short_error(last_line, 200)]])
        return f"{table}\n{error.rstrip()}"
    actions = outcome.actions
    answered_ok = sum(1 for a in actions if a.status == 200)
    switch_ms = [a.switch_ms for a in actions if a.switch_ms is not None]
    unseen = len(actions) - len(switch_ms)
    worst = max(switch_ms) if switch_ms else None
    calls = [a.call_ms for a in actions if a.status]
    base_rps = statistics.mean(b.rps for b in bases)
    base_failed = sum(b.failed for b in bases)
    ratio = switching.rps / base_rps if base_rps else None
    rows: list[list[object]] = [
        ["actions: alternating rollback / deploy", f"{answered_ok}/{len(actions)} answered 200",
         f"{len(actions)}/{len(actions)}", _met(answered_ok == len(actions))],
        ["requests failed without switches", base_failed, "0", _met(base_failed == 0)],
        ["requests failed during switches", switching.failed, "0", _met(switching.failed == 0)],
        ["switch time median (ms): call sent -> all answers new", fmt(_median(switch_ms)), "", ""],
        ["switch time max (ms)", fmt(worst) + (f" ({unseen} not seen)" if unseen else ""),
         f"<= {SWITCH_TARGET_MS:g}",
         _met(not unseen and worst is not None and worst <= SWITCH_TARGET_MS)],
        ["API call duration median / max (ms)",
         f"{fmt(_median(calls))} / {fmt(max(calls) if calls else None)}", "", ""],
        ["throughput without switches (req/s): mean of before / after",
         f"{fmt(base_rps)} ({' / '.join(fmt(b.rps) for b in bases)})", "", ""],
        ["throughput during switches (req/s)", fmt(switching.rps), "", ""],
        ["throughput during / without", fmt(ratio, 2) + "x" if ratio else "-", "", ""],
    ]  # fmt: skip
    table = format_table(title, ["measure", "value", "target", "met"], rows)
    notes = []
    for phase in (*bases, switching):
        if phase.note:
            notes.append(f"{phase.name}: {phase.note}")
        if phase.error_sample:
            notes.append(f"{phase.name}: first failure: {short_error(phase.error_sample, 150)}")
    notes.extend(
        f"action {i + 1} ({a.kind} to {a.to_version}): HTTP {a.status} {short_error(a.error)}"
        for i, a in enumerate(actions)
        if a.status != 200
    )
    notes.extend(f"server log: {line}" for line in outcome.problems[:10])
    if outcome.error:
        notes.append(f"error: {short_error(outcome.error, 200)}")
    return "\n".join([table, *notes])


def to_json(outcome: Outcome) -> dict[str, Any]:
    result = asdict(outcome)
    for entry, action in zip(result["actions"], outcome.actions, strict=True):
        entry["call_ms"] = action.call_ms if action.status else None
    return result
