"""A version selector: one entry for no version in particular, then each version, newest first."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QComboBox

from backend.schemas import ModelInfo

# The data of the first entry: all versions, or the serving one, as the page means it.
NO_VERSION = ""


def serving_label(model: ModelInfo | None) -> str:
    """The first entry of a page that asks about the serving version by default."""
    active = model.active_version if model else None
    return f"Serving version ({active})" if active else "Serving version"


class VersionChoice(QComboBox):
    """The versions of one model; ``fill`` keeps the version chosen when the model still has it."""

    def __init__(
        self, tip: str, first_label: Callable[[ModelInfo | None], str], mark_serving: bool
    ):
        super().__init__()
        self._first_label = first_label
        self._mark_serving = mark_serving
        self.setToolTip(tip)
        self.setMinimumContentsLength(10)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)

    def current_version(self) -> str:
        return str(self.currentData() or "")

    def fill(self, model: ModelInfo | None) -> None:
        """Show ``model``'s versions without announcing a change (the page asks anew itself)."""
        wanted = self.current_version()
        self.blockSignals(True)
        try:
            self.clear()
            self.addItem(self._first_label(model), NO_VERSION)
            for version in reversed(model.versions if model else []):
                serving = model is not None and version.version == model.active_version
                mark = " (serving)" if serving and self._mark_serving else ""
                self.addItem(f"Version {version.version}{mark}", version.version)
            self.setCurrentIndex(max(self.findData(wanted), 0))
        finally:
            self.blockSignals(False)
