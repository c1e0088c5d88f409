"""Count the prediction requests the API refuses (4xx) or fails (5xx), per model version.

An answered prediction is counted by the live statistics' observer; a refused one never
reaches the observers (it is refused before, or instead of, a prediction), so it is counted
by the prediction fast path, which answers every prediction request: whatever refused it (the
size limit, authentication, the signature, an unknown model) the status is seen once. Only
names the server serves are kept as they are: anything else is counted under the model ""
(see ``LiveStats``).

A refusal is counted under its model only when the request carried a token that may predict
with that model: otherwise anyone who reaches the port could push a model's error rate, which
engineers and support read, to 100% without a token. The token is looked up in the cache
alone (no database read on the refusal path, which a flood of bad requests would turn into
load); a valid token whose entry has just expired is counted under "" for that moment.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Protocol

from starlette.types import Scope

from backend.auth.tokens import TokenService, has_permission
from backend.errors import ServeDeckError
from backend.monitoring.live_stats import LiveStats
from backend.serving.state import ServingState


class RefusalRecorder(Protocol):
    def record_refusal(self, model: str, version: str, now: float, status: int) -> None: ...


class RefusalCounter:
    """Called by the prediction fast path (``fast_path``) with the status of every prediction
    request it refuses or fails, whatever refused it: the NUL check, the size limit,
    authentication, the signature, an unknown model, or the model's own failure."""

    def __init__(
        self,
        live_stats: LiveStats,
        state: ServingState,
        tokens: TokenService,
        also_count_in: Sequence[RefusalRecorder] = (),
    ):
        self.live_stats = live_stats
        # Others that count refusals with the same bounded names (the Prometheus counters).
        self.also_count_in = list(also_count_in)
        self.state = state
        self.tokens = tokens

    def count(self, scope: Scope, model: str, version: str, status: int) -> None:
        vouched = self._may_predict(_authorization(scope), model)
        self._count(model if vouched else "", version, status)

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
