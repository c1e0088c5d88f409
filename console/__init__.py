"""ServeDeck desktop console (PySide6 + pyqtgraph).

The console arrives with issue 3; this package exists now so that the layering
contract in pyproject.toml (backend never imports the console, the console reaches
the backend only through ``backend.schemas`` and HTTP) is enforced from day one.
"""
