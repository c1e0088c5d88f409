"""Drift: reference summaries made once, current windows counted as data arrives, and the
statistics and report computed from those counts alone (never by re-reading raw rows)."""

from backend.monitoring.drift.build import summarize_current, summarize_reference
from backend.monitoring.drift.summaries import (
    CurrentSummary,
    ReferenceSummary,
    merge_windows,
)

__all__ = [
    "CurrentSummary",
    "ReferenceSummary",
    "merge_windows",
    "summarize_current",
    "summarize_reference",
]
