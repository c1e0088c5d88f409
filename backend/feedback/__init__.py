"""Ground truth: labels attached to logged predictions; end users' error reports and their
triage (reports, report_triage, report_search)."""

from backend.feedback.labels import store_labels

__all__ = ["store_labels"]
