"""HTTP surface: the Open Inference Protocol, the record form and the management API."""

from backend.api.app import create_app

__all__ = ["create_app"]
