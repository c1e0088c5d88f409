"""Benchmarks for ServeDeck: serving overhead against a bare FastAPI app, and log writes.

Run with ``make bench`` (``python -m tests.bench``). Not collected by pytest: the package is
listed in ``norecursedirs`` and no module is named ``test_*``.
"""
