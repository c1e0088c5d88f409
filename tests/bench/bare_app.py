"""The baseline: the least a FastAPI server can do to answer ServeDeck's record form.

No auth, no validation, no batching, no logging: parse the body, build the model input the
way ServeDeck does, call predict_proba on the event loop, return the probabilities. What
ServeDeck costs beyond this is its serving overhead.

Run as ``python -m tests.bench.bare_app --model M.skops --features f0,f1 --port 0``; prints
``BARE READY http://127.0.0.1:PORT`` once it accepts connections, like ServeDeck does.
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

import numpy as np
import orjson
import pandas as pd
import sklearn
import skops.io as sio
import uvicorn
from fastapi import FastAPI, Request, Response

READY_LINE = "BARE READY"


def load_model(path: str) -> Any:
    # The bench wrote this file itself a moment ago, so trusting its types is safe.
    return sio.load(path, trusted=sio.get_untrusted_types(file=path))


def create_app(model: Any, feature_names: list[str]) -> FastAPI:
    # Same rule as ServeDeck's LoadedVersion: a model fitted on a DataFrame gets a DataFrame.
    frame_columns = getattr(model, "feature_names_in_", None)
    columns = [str(c) for c in frame_columns] if frame_columns is not None else None

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.post("/predict")
    async def predict(request: Request) -> Response:
        rows: list[dict[str, Any]] = orjson.loads(await request.body())["instances"]
        if columns is not None:
            design: Any = pd.DataFrame.from_records(rows, columns=columns)
        else:
            design = np.array([[row[n] for n in feature_names] for row in rows], dtype=np.float64)
        # ServeDeck skips sklearn's finiteness scan (its signature already checked); do the
        # same so both servers spend identical time inside the model.
        with sklearn.config_context(assume_finite=True):
            proba = model.predict_proba(design)
        return Response(
            orjson.dumps({"probabilities": proba.tolist()}), media_type="application/json"
        )

    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", required=True, help=".skops file")
    parser.add_argument("--features", required=True, help="comma-separated, in model order")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Bound here, not by uvicorn, so port 0 works and the chosen port can be announced.
    sock.bind((args.host, args.port))
    url = f"http://{args.host}:{sock.getsockname()[1]}"

    def announce() -> None:
        print(f"{READY_LINE} {url}", flush=True)

    app = create_app(load_model(args.model), args.features.split(","))
    # The same uvicorn settings ServeDeck's `serve` uses, so the HTTP stack is identical.
    config = uvicorn.Config(app, log_level="warning", access_log=False)
    _AnnouncingServer(config, announce).run(sockets=[sock])


class _AnnouncingServer(uvicorn.Server):
    """Says it is ready once it listens (a lifespan hook would run before that)."""

    def __init__(self, config: uvicorn.Config, announce: Any):
        super().__init__(config)
        self._announce = announce

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            self._announce()


if __name__ == "__main__":
    main()
