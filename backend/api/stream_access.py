"""An event stream is read only while its token may read it.

A stream's token was checked once, when it opened; a revocation (or a role or scope that no
longer allows the read) must end it as promptly as it refuses a plain request. So a stream
looks at its token again before every message it sends and at least every
``CHECK_INTERVAL_S`` while it waits, through the same cache as every request (microseconds
while the cache answers; the cache checks the tokens table about twice per TTL).
"""

from __future__ import annotations

from fastapi import Request

from backend.api.deps import resolve_principal
from backend.auth import Principal, ReadScope, TokenService, read_scope
from backend.errors import Forbidden, Unauthorized

# How long a waiting stream goes without looking at its token: with the token cache's TTL,
# the longest a revoked token's idle stream stays open.
CHECK_INTERVAL_S = 0.5


class StreamAccess:
    """The token behind one open stream and the read scope it allows right now."""

    def __init__(
        self,
        tokens: TokenService,
        authorization: str | None,
        permission: str,
        model: str | None,
        scope: ReadScope,
    ):
        self._tokens = tokens
        self._authorization = authorization
        self._permission = permission
        self._model = model
        self.scope = scope
        # Why the stream had to end (None while it may go on).
        self.ended_because: str | None = None

    async def still_allowed(self) -> bool:
        """Look at the token again (revoked, or no longer allowed this read): False once it
        may no longer read; the scope follows the token's models."""
        if self.ended_because is not None:
            return False
        try:
            principal = await resolve_principal(self._tokens, self._authorization)
            self.scope = read_scope(principal, self._permission, self._model)
        except (Unauthorized, Forbidden) as refusal:
            self.ended_because = refusal.message
            return False
        return True

    def farewell(self) -> bytes:
        """The last thing the stream sends: an SSE comment saying why it ends (clients
        ignore it; whoever reads the raw stream learns why, and a reconnect gets the 401)."""
        reason = (self.ended_because or "access ended").replace("\n", " ")
        return b": stream ended: %s\n\n" % reason.encode()


def stream_access(
    request: Request, principal: Principal, permission: str, model: str | None
) -> StreamAccess:
    """Check the read now (403 before the stream opens) and keep what re-checks it."""
    scope = read_scope(principal, permission, model)
    return StreamAccess(
        request.app.state.workspace.tokens,
        request.headers.get("authorization"),
        permission,
        model,
        scope,
    )
