"""Errors that carry an HTTP status, the offending field and a plain-words reason."""

from __future__ import annotations

from typing import Any


class ServeDeckError(Exception):
    status = 400

    def __init__(
        self,
        reason: str,
        field: str | None = None,
        status: int | None = None,
        details: dict[str, Any] | None = None,
    ):
        super().__init__(reason)
        self.reason = reason
        self.field = field
        # Extra members of the JSON error body (a refused deployment's gate report).
        self.details = details or {}
        if status is not None:
            self.status = status

    @property
    def message(self) -> str:
        return f"{self.field}: {self.reason}" if self.field else self.reason


class InputError(ServeDeckError):
    """The request does not fit the model's input signature."""

    status = 422


class NotFound(ServeDeckError):
    status = 404


class Conflict(ServeDeckError):
    status = 409


class Unauthorized(ServeDeckError):
    status = 401


class Forbidden(ServeDeckError):
    status = 403


class ArtifactIntegrityError(ServeDeckError):
    """A stored artifact no longer matches the sha256 recorded when it was registered."""

    status = 409
