"""The model probe: loads a model file for registration in a process of its own.

Loading a pickle runs whatever code it holds, and any file can crash its loader or eat the
machine's memory; none of that may happen in the server. ``python -m backend.registry.probe``
starts a small single-threaded process that imports the libraries once and then, per request
(one JSON line on stdin), forks a child that limits its own memory and CPU time, loads the
file, inspects the model and writes what it found to a pipe. The probe waits at most the
request's timeout, kills a child that overruns, and answers one JSON line on stdout:
``{"outcome": "done", "result": ...}``, ``{"outcome": "error", "error", "field"}``,
``{"outcome": "timeout"}`` or ``{"outcome": "crashed", "how"}``. It ends when stdin closes
(its parent is gone). The parent side is ``sandbox.ModelProbe``.
"""

from __future__ import annotations

import json
import os
import resource
import select
import signal
import sys
import time
from typing import Any

# Before numpy is imported: one BLAS thread, so that forking the probe is safe.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import joblib  # noqa: E402
import skops.io as sio  # noqa: E402

from backend.errors import ServeDeckError  # noqa: E402
from backend.registry.inspection import inspect_model  # noqa: E402
from backend.schemas import FeatureSpec, ValidityAssets  # noqa: E402


def load_model_file(path: str, fmt: str, trusted_types: list[str]) -> Any:
    if fmt == "skops":
        return sio.load(path, trusted=trusted_types)
    # joblib.load reads both joblib and plain pickle files.
    return joblib.load(path)


def _inspect(request: dict[str, Any]) -> dict[str, Any]:
    try:
        estimator = load_model_file(request["path"], request["format"], request["trusted_types"])
    except MemoryError:
        raise
    except Exception as exc:  # every loader failure means the same: not a usable file
        return {
            "outcome": "error",
            "error": f"the file cannot be loaded as a {request['format']} model: "
            f"{type(exc).__name__}: {str(exc)[:300]}",
            "field": "artifact",
        }
    signature = request.get("signature")
    try:
        result = inspect_model(
            estimator,
            [FeatureSpec.model_validate(s) for s in signature] if signature else None,
            request.get("task"),
            ValidityAssets.model_validate(request["validity"]),
            request.get("example_input"),
            request.get("reference_rows_path"),
        )
    except ServeDeckError as exc:
        return {"outcome": "error", "error": exc.reason, "field": exc.field}
    return {"outcome": "done", "result": result}


def _child(request: dict[str, Any], out: int) -> None:
    """In the forked child: limit, load, inspect, report; never returns."""
    devnull = os.open(os.devnull, os.O_RDWR)
    # The file's own code must not write into the probe's answers.
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        used = _address_space_bytes()
        limit = used + int(request["memory_bytes"])
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        cpu = int(request["timeout_s"]) + 1
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        try:
            answer = _inspect(request)
        except MemoryError:
            answer = {
                "outcome": "error",
                "error": "loading the model needs more memory than the "
                f"{int(request['memory_bytes']) // 2**20} MiB a registration may use",
                "field": "artifact",
            }
        data = json.dumps(answer, default=str).encode()
    except BaseException as exc:  # anything at all (SystemExit too): say so, then end
        data = json.dumps(
            {"outcome": "error", "error": f"{type(exc).__name__}: {exc}", "field": "artifact"}
        ).encode()
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(out, view) :]
    finally:
        os._exit(0)


def _address_space_bytes() -> int:
    with open("/proc/self/statm") as statm:
        pages = int(statm.read().split()[0])
    return pages * os.sysconf("SC_PAGE_SIZE")


def _run(request: dict[str, Any]) -> dict[str, Any]:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _child(request, write_end)
    os.close(write_end)
    deadline = time.monotonic() + float(request["timeout_s"])
    chunks: list[bytes] = []
    timed_out = False
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([read_end], [], [], left)[0]:
                timed_out = True
                break
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_end)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return {"outcome": "timeout"}
    _, status = os.waitpid(pid, 0)
    if chunks:
        try:
            answer: dict[str, Any] = json.loads(b"".join(chunks))
            return answer
        except ValueError:
            pass
    if os.WIFSIGNALED(status):
        number = os.WTERMSIG(status)
        return {
            "outcome": "crashed",
            "how": f"it was ended by signal {signal.Signals(number).name}",
        }
    return {"outcome": "crashed", "how": f"it exited with code {os.WEXITSTATUS(status)}"}


def main() -> None:
    # The answers go to the parent alone: nothing else may write to this stdout.
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    print("ready", file=answers, flush=True)
    for line in sys.stdin:
        try:
            answer = _run(json.loads(line))
        except Exception as exc:  # a broken request: answer it, keep serving
            answer = {"outcome": "error", "error": f"bad probe request: {exc}", "field": None}
        print(json.dumps(answer), file=answers, flush=True)


if __name__ == "__main__":
    main()
