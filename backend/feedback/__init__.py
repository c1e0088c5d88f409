"""Ground truth: labels attached to logged predictions."""

from backend.feedback.labels import store_labels

__all__ = ["store_labels"]
