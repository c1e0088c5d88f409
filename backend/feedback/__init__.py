"""Ground truth: labels attached to logged predictions, and reading the log back."""

from backend.feedback.labels import read_predictions, store_labels

__all__ = ["read_predictions", "store_labels"]
