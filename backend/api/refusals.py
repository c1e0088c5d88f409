"""Count the prediction requests the API refuses (4xx) or fails (5xx), per model version.

An answered prediction is counted by the live statistics' observer; a refused one never
reaches the observers (it is refused before, or instead of, a prediction), so it is counted
here, where the answer leaves: whatever refused it (the size limit, authentication, the
signature, an unknown model) the status is seen once. Only names the server serves are kept
as they are: anything else is counted under the model "" (see ``LiveStats``).

A refusal is counted under its model only when the request carried a token that may predict
with that model: otherwise anyone who reaches the port could push a model's error rate, which
engineers and support read, to 100% without a token. The token is looked up in the cache
alone (no database read on the refusal path, which a flood of bad requests would turn into
load); a valid token whose entry has just expired is counted under "" for that moment.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Protocol

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.auth.tokens import TokenService, has_permission
from backend.errors import ServeDeckError
from backend.monitoring.live_stats import LiveStats
from backend.serving.state import ServingState

# The prediction routes (the same three the fast path serves).
_PREDICTION_PATH = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$"
    r"|^/v1/models/(?P<record_name>[^/]+):predict$"
)


class RefusalRecorder(Protocol):
    def record_refusal(self, model: str, version: str, now: float, status: int) -> None: ...


class RefusalCounter:
    def __init__(
        self,
        app: ASGIApp,
        live_stats: LiveStats,
        state: ServingState,
        tokens: TokenService,
        also_count_in: Sequence[RefusalRecorder] = (),
    ):
        self.app = app
        self.live_stats = live_stats
        # Others that count refusals with the same bounded names (the Prometheus counters).
        self.also_count_in = list(also_count_in)
        self.state = state
        self.tokens = tokens

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _PREDICTION_PATH.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        model = match["name"] or match["record_name"] or ""
        version = match["version"] or ""

        answered = False

        async def send_counting(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                answered = True
                if message["status"] >= 400:
                    vouched = self._may_predict(_authorization(scope), model)
                    self._count(model if vouched else "", version, message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_counting)
        except Exception:
            # The model itself failed: the outermost error handler answers 500 after this,
            # out of sight of send_counting; it is a failure all the same.
            if not answered:
                vouched = self._may_predict(_authorization(scope), model)
                self._count(model if vouched else "", version, 500)
            raise

    def _count(self, model: str, version: str, status: int) -> None:
        if self.state.routing(model) is None:
            model, version = "", ""
        elif version and self.state.loaded(model, version) is None:
            version = ""
        now = time.time()
        self.live_stats.record_refusal(model, version, now, status)
        for recorder in self.also_count_in:
            recorder.record_refusal(model, version, now, status)

    def _may_predict(self, authorization: str | None, model: str) -> bool:
        try:
            principal = self.tokens.authenticate_cached(authorization)
        except ServeDeckError:  # no token, a malformed header, a revoked token
            return False
        return (
            principal is not None
            and has_permission(principal, "predict")
            and principal.may_use_model(model)
        )


def _authorization(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"authorization":
            return str(value.decode("latin-1"))
    return None
