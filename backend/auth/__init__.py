"""Tokens, roles and per-model scopes."""

from backend.auth.scope import ReadScope, read_scope
from backend.auth.tokens import Principal, TokenService, has_permission

__all__ = ["Principal", "ReadScope", "TokenService", "has_permission", "read_scope"]
