"""Tokens, roles and per-model scopes."""

from backend.auth.tokens import Principal, TokenService, has_permission

__all__ = ["Principal", "TokenService", "has_permission"]
