"""How far back a report looks: the length of each window and how many windows (the newest
last), as the performance and feedback-loop reports ask for them; kept across sessions."""

from __future__ import annotations

from PySide6.QtCore import QSettings, Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QSpinBox, QWidget

MAX_WINDOWS = 48  # the reports' bound
DEFAULT_WINDOWS = 24


class WindowSpan(QWidget):
    changed = Signal()

    def __init__(
        self,
        sizes: tuple[tuple[str, int], ...],
        size_tip: str,
        count_tip: str,
        default_size: int = 0,
        max_span_s: int | None = None,
    ):
        super().__init__()
        self.default_size = default_size
        # A report may bound its whole span: fewer windows are offered for longer ones.
        self.max_span_s = max_span_s
        self.size_choice = QComboBox()
        self.size_choice.setToolTip(size_tip)
        for label, seconds in sizes:
            self.size_choice.addItem(label, seconds)
        self.size_choice.setCurrentIndex(default_size)
        self.count_choice = QSpinBox()
        self.count_choice.setRange(1, MAX_WINDOWS)
        self.count_choice.setValue(DEFAULT_WINDOWS)
        self.count_choice.setSuffix(" windows")
        self.count_choice.setToolTip(count_tip)
        self.setToolTip(size_tip)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.size_choice)
        layout.addWidget(self.count_choice)
        self._bound_count()
        self.size_choice.currentIndexChanged.connect(self._size_changed)
        self.count_choice.valueChanged.connect(lambda _v: self.changed.emit())

    def _size_changed(self) -> None:
        self._bound_count()
        self.changed.emit()

    def _bound_count(self) -> None:
        most = MAX_WINDOWS
        if self.max_span_s is not None:
            most = max(1, min(MAX_WINDOWS, self.max_span_s // max(1, self.window_s())))
        self.count_choice.setMaximum(most)

    def window_s(self) -> int:
        return int(self.size_choice.currentData())

    def windows(self) -> int:
        return self.count_choice.value()

    def restore(self, settings: QSettings, prefix: str) -> None:
        """The span last used on this page (``prefix``/size and ``prefix``/count)."""
        self.blockSignals(True)
        try:
            size = int(settings.value(f"{prefix}/size", self.default_size) or 0)
            self.size_choice.setCurrentIndex(min(size, self.size_choice.count() - 1))
            self._bound_count()
            self.count_choice.setValue(int(settings.value(f"{prefix}/count", DEFAULT_WINDOWS) or 1))
        finally:
            self.blockSignals(False)

    def save(self, settings: QSettings, prefix: str) -> None:
        settings.setValue(f"{prefix}/size", self.size_choice.currentIndex())
        settings.setValue(f"{prefix}/count", self.count_choice.value())
