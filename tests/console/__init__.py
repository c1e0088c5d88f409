"""Console tests (pytest-qt, offscreen, against real backends)."""
