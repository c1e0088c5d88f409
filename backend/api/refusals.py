"""Count the prediction requests the API refuses (4xx) or fails (5xx), per model version.

An answered prediction is counted by the live statistics' observer; a refused one never
reaches the observers (it is refused before, or instead of, a prediction), so it is counted
here, where the answer leaves: whatever refused it (the size limit, authentication, the
signature, an unknown model) the status is seen once. Only names the server serves are kept
as they are: anything else is counted under the model "" (see ``LiveStats``).
"""

from __future__ import annotations

import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backend.monitoring.live_stats import LiveStats
from backend.serving.state import ServingState

# The prediction routes (the same three the fast path serves).
_PREDICTION_PATH = re.compile(
    r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?/infer$"
    r"|^/v1/models/(?P<record_name>[^/]+):predict$"
)


class RefusalCounter:
    def __init__(self, app: ASGIApp, live_stats: LiveStats, state: ServingState):
        self.app = app
        self.live_stats = live_stats
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = None
        if scope["type"] == "http" and scope["method"] == "POST":
            match = _PREDICTION_PATH.match(scope["path"])
        if match is None:
            await self.app(scope, receive, send)
            return
        model = match["name"] or match["record_name"] or ""
        version = match["version"] or ""

        async def send_counting(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 400:
                self._count(model, version, message["status"])
            await send(message)

        await self.app(scope, receive, send_counting)

    def _count(self, model: str, version: str, status: int) -> None:
        if self.state.routing(model) is None:
            model, version = "", ""
        elif version and self.state.loaded(model, version) is None:
            version = ""
        self.live_stats.record_refusal(model, version, time.time(), status)
