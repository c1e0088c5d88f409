"""Bearer tokens: created once, shown once, stored as a sha256 digest.

Tokens are 256 random bits, so a plain sha256 is enough to make a stolen table useless;
a slow password hash (bcrypt, argon2) would only add latency to every request.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import secrets
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import TokenRow
from backend.errors import Conflict, Forbidden, InputError, NotFound, Unauthorized
from backend.schemas import ROLES, TokenInfo

TOKEN_PREFIX = "sdk_"

log = logging.getLogger(__name__)

# What each role may do. Client tokens are further limited to their models and constraints.
PERMISSIONS: dict[str, frozenset[str]] = {
    "admin": frozenset(
        {
            "predict",
            "read",
            "register",
            "deploy",
            "feedback",
            "read_predictions",
            "tokens",
            "trust_pickle",
            "export",
            "report",
            "triage",
        }
    ),
    # "export": the retraining export, every logged row's features (engineer and admin only).
    # "report": file an end user's error report; "triage": work through the reports.
    "engineer": frozenset(
        {
            "predict",
            "read",
            "register",
            "deploy",
            "feedback",
            "read_predictions",
            "export",
            "report",
            "triage",
        }
    ),
    "support": frozenset({"read", "feedback", "read_predictions", "report", "triage"}),
    "client": frozenset({"predict", "feedback", "report"}),
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and role, never its secret."""

    name: str
    role: str
    models: frozenset[str] | None = None
    constraints: dict[str, frozenset[Any]] = field(default_factory=dict)

    def may_use_model(self, model: str) -> bool:
        return self.models is None or model in self.models


def has_permission(principal: Principal, permission: str) -> bool:
    return permission in PERMISSIONS.get(principal.role, frozenset())


def require(principal: Principal, permission: str, model: str | None = None) -> None:
    if not has_permission(principal, permission):
        raise Forbidden(f"the {principal.role} role may not {permission.replace('_', ' ')}")
    if model is not None and not principal.may_use_model(model):
        raise Forbidden(f"token {principal.name!r} is not allowed to use model {model!r}", "model")


def require_unscoped(principal: Principal, permission: str) -> None:
    """For what reaches every model (tokens, trusting code): a token scoped to some models
    could otherwise hand itself, or anyone, more than it has."""
    require(principal, permission)
    if principal.models is not None:
        raise Forbidden(
            f"token {principal.name!r} is scoped to some models and may not "
            f"{permission.replace('_', ' ')}; use a token for all models",
            "authorization",
        )


def check_constraints(principal: Principal, rows: Iterable[dict[str, Any]], prefix: str) -> None:
    """A client token may carry allowed values per feature: anything else is refused."""
    if not principal.constraints:
        return
    for i, row in enumerate(rows):
        for feature, allowed in principal.constraints.items():
            if row.get(feature) not in allowed:
                raise Forbidden(
                    f"value {row.get(feature)!r} is outside this token's allowed values "
                    f"{sorted(map(str, allowed))}",
                    f"{prefix}[{i}].{feature}",
                )


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@functools.lru_cache(maxsize=256)
def _digest_of_bearer(authorization: str) -> str:
    """The digest of a header's token. Memoised: hashing the same few tokens again on every
    request was ~2% of the serving process's time at 16 connections. Bounded, so a flood of
    made-up tokens only evicts; it maps a header to its digest, never to an answer, so a
    revocation still takes effect through the cache below within its TTL. A refused header
    raises and is not kept."""
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("expected 'Authorization: Bearer <token>'", "authorization")
    return _digest(secret.strip())


# Entries kept at most; a flood of made-up tokens only empties the cache.
MAX_CACHED_TOKENS = 10_000


class TokenService:
    """Resolves bearer headers, from a cache checked against the table as a whole.

    Tokens are only ever created and revoked. So instead of re-reading each cached token, one
    read per process looks at the whole table (how many tokens, how many revoked, the latest
    revocation) at most every half TTL; any change empties the cache. A revocation made by
    another process (the command line, another worker) therefore takes effect within the TTL,
    at one read per process whatever the number of tokens in use (a re-read per token costs
    ~1 ms of the serving process's CPU each, twice per TTL). Changes made other than by
    creating and revoking (hand edits of a row's role, models or secret, or a deleted row
    replaced under the same id) are not seen until a restart.
    """

    def __init__(self, sessions: sessionmaker[Session], cache_ttl_s: float = 1.0):
        self.sessions = sessions
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, Principal | None] = {}
        self._lock = threading.Lock()
        # The table as last seen, when that read began (monotonic), and how often the cache
        # was emptied: a token read before a change is stored only if no check saw the change
        # meanwhile (else an answer from before a revocation could outlive it).
        self._table_seen: tuple[Any, ...] | None = None
        self._checked_at = -math.inf
        self._epoch = 0
        self._checking = False
        self._refresher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="token-refresh")

    def create(
        self,
        name: str,
        role: str,
        models: list[str] | None = None,
        constraints: dict[str, list[Any]] | None = None,
    ) -> str:
        if role not in ROLES:
            raise InputError(f"unknown role {role!r}; roles: {', '.join(ROLES)}", "role")
        if role == "client" and not models:
            raise InputError("a client token must name the models it may use", "models")
        if constraints and role != "client":
            raise InputError("input constraints apply to client tokens only", "constraints")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = TokenRow(
            name=name,
            role=role,
            secret_sha256=_digest(secret),
            models=sorted(set(models)) if models else None,
            constraints=constraints or {},
        )
        try:
            with self.sessions.begin() as session:
                session.add(row)
        except IntegrityError:
            raise Conflict(f"a token named {name!r} exists already", "name") from None
        return secret

    def revoke(self, name: str) -> None:
        with self.sessions.begin() as session:
            row = session.scalar(select(TokenRow).where(TokenRow.name == name))
            if row is None:
                raise NotFound(f"no token named {name!r}", "name")
            row.revoked_at = datetime.now(UTC)
        with self._lock:
            self._forget_all()

    def list(self) -> list[TokenInfo]:
        with self.sessions() as session:
            rows = session.scalars(select(TokenRow).order_by(TokenRow.name)).all()
            return [
                TokenInfo(
                    name=row.name,
                    role=row.role,  # type: ignore[arg-type]
                    models=row.models,
                    constraints=row.constraints,
                    created_at=row.created_at,
                    revoked=row.revoked_at is not None,
                )
                for row in rows
            ]

    def authenticate(self, authorization: str | None) -> Principal:
        """Resolve a bearer header, reading the database when the cache cannot answer."""
        digest = self._digest_of_header(authorization)
        age = time.monotonic() - self._checked_at
        if age >= self.cache_ttl_s:
            # Past the TTL the cache answers nothing until the table has been checked.
            self._check_table()
        elif age >= self.cache_ttl_s / 2:
            self._check_soon()
        principal = self._lookup(digest)
        if principal is None:
            raise Unauthorized("unknown or revoked token", "authorization")
        return principal

    def authenticate_cached(self, authorization: str | None) -> Principal | None:
        """Answer from the cache alone, or None when only the database can.

        Within half the TTL of the last look at the table the cache answers alone; between
        half the TTL and the TTL it still answers while one background thread looks again,
        so a busy worker never waits on the database; past the TTL only the database
        answers. A revocation made by another process therefore takes effect within the
        TTL, which is also the longest a refused token waits to be accepted again.
        """
        digest = self._digest_of_header(authorization)
        age = time.monotonic() - self._checked_at
        if age >= self.cache_ttl_s:
            return None
        try:
            principal = self._cache[digest]
        except KeyError:
            return None
        if principal is None:
            raise Unauthorized("unknown or revoked token", "authorization")
        if age >= self.cache_ttl_s / 2:
            self._check_soon()
        return principal

    @staticmethod
    def _digest_of_header(authorization: str | None) -> str:
        if not authorization:
            raise Unauthorized("missing 'Authorization: Bearer <token>' header", "authorization")
        return _digest_of_bearer(authorization)

    def _check_soon(self) -> None:
        """One check behind the requests, unless one is running or has just ended."""
        with self._lock:
            # Asked again under the lock: a check that just ended has set both.
            stale = time.monotonic() - self._checked_at >= self.cache_ttl_s / 2
            if stale and not self._checking:
                self._checking = True
                self._refresher.submit(self._check_behind)

    def _check_behind(self) -> None:
        try:
            self._check_table()
        except Exception:  # the database is away: past the TTL requests ask it themselves
            log.warning("tokens: the periodic check of the tokens table failed", exc_info=True)
            time.sleep(min(self.cache_ttl_s / 2, 1.0))  # not a retry per request meanwhile
        finally:
            with self._lock:
                self._checking = False

    def _check_table(self) -> None:
        """Look at the tokens table as a whole; empty the cache if anything changed since the
        last look (a token created or revoked, here or in another process)."""
        began = time.monotonic()
        with self.sessions() as session:
            seen = tuple(
                session.execute(
                    select(
                        func.count(),
                        func.count(TokenRow.revoked_at),
                        func.max(TokenRow.revoked_at),
                        func.max(TokenRow.id),
                    )
                ).one()
            )
        with self._lock:
            if seen != self._table_seen:
                self._forget_all()
                self._table_seen = seen
            self._checked_at = max(self._checked_at, began)

    def _forget_all(self) -> None:
        """Empty the cache; tokens being read meanwhile are not stored (the lock is held)."""
        self._cache.clear()
        self._epoch += 1

    def _lookup(self, digest: str) -> Principal | None:
        with self._lock:
            epoch = self._epoch
        with self.sessions() as session:
            row = session.scalar(select(TokenRow).where(TokenRow.secret_sha256 == digest))
            principal = None
            if row is not None and row.revoked_at is None:
                principal = Principal(
                    name=row.name,
                    role=row.role,
                    models=frozenset(row.models) if row.models is not None else None,
                    constraints={k: frozenset(v) for k, v in (row.constraints or {}).items()},
                )
        with self._lock:
            if self._epoch == epoch:
                if len(self._cache) >= MAX_CACHED_TOKENS:
                    self._cache.clear()
                self._cache[digest] = principal
        return principal
