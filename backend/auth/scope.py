"""What one read may cover: the one place a token's model scope turns into a filter.

Every read that lists or streams something per model (predictions, live statistics, alerts,
the event streams) asks ``read_scope`` and filters by its ``models``, so a token scoped to
several models sees all of them, and nothing else, wherever it reads.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.auth.tokens import Principal, require


@dataclass(frozen=True)
class ReadScope:
    """``model``: the one model the caller named (None: it named none). ``models``: the
    models the read may show (None: every model)."""

    model: str | None
    models: frozenset[str] | None

    def includes(self, model: str) -> bool:
        return self.models is None or model in self.models


def read_scope(principal: Principal, permission: str, model: str | None = None) -> ReadScope:
    """The models a read covers: the one named (403 if it is outside the token's scope),
    else every model the token may use; 403 if the role lacks ``permission``."""
    require(principal, permission, model)
    if model is not None:
        return ReadScope(model, frozenset({model}))
    return ReadScope(None, principal.models)
