"""The shared base of the pages that read their data in the background and keep it fresh.

``RefreshingPage``: a timer that polls only while the page is shown, a status line with a tone,
an F5 refresh button, a reload when the page is opened or the backend comes back, and a word
when it goes away. ``ModelPage`` adds the model selector: the models read from the backend,
the one chosen kept across sessions, another page sending the user here about one model.

"One call in flight, drop a stale result" needs nothing here: the pages call the backend
through keyed tasks (``Page.call_backend``), where a newer question replaces an older one and
a poll (``replace=False``) keeps the answer already on its way.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QTimer
from PySide6.QtGui import QHideEvent, QKeySequence, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import ModelInfo
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.pages.base import Page
from console.resources import colour
from console.widgets.common import make_button, make_label
from console.widgets.version_choice import VersionChoice


class RefreshingPage(Page):
    """A page whose data is read by ``refresh`` when opened, on F5 and every ``refresh_ms``
    while shown (a hidden page polls nothing)."""

    refresh_ms: int = 30_000
    # What the page shows, in words, for "showing … as last loaded" when the backend goes away.
    shown_as: str = "the data"

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.status = make_label("Not loaded yet.", name="muted")
        # A long message must not widen the page: it wraps, and the full text is in the tooltip.
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.status.setWordWrap(True)
        self.timer = QTimer(self)
        self.timer.setInterval(self.refresh_ms)
        self.timer.timeout.connect(self.poll)

    # ---------------------------------------------------------------- what subclasses give

    def refresh(self, replace: bool = True) -> None:
        """Ask the backend for what the page shows (``replace=False``: a poll that keeps an
        answer already on its way)."""
        raise NotImplementedError(f"{type(self).__name__} reads nothing")

    def has_data(self) -> bool:
        """Whether something loaded earlier is shown (then a lost backend is only a note)."""
        return False

    def reload(self) -> None:
        """What the page reads when it is opened or the backend comes back."""
        self.refresh()

    def poll(self) -> None:
        """The timer's tick while the page is shown."""
        self.refresh(replace=False)

    # ---------------------------------------------------------------- lifecycle

    def page_shown(self) -> None:
        self.reload()

    def connection_changed(self, connected: bool) -> None:
        if connected and self.isVisible():
            self.reload()
        elif not connected and self.has_data():
            self.set_status(f"The backend is unreachable: showing {self.shown_as} as last loaded.")

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.timer.start()

    def hideEvent(self, event: QHideEvent) -> None:
        self.timer.stop()  # nothing to keep fresh while another page is shown
        super().hideEvent(event)

    def shutdown(self) -> None:
        super().shutdown()
        self.timer.stop()

    # ---------------------------------------------------------------- helpers

    def make_selector_row(
        self, choices: tuple[tuple[str, QWidget], ...], *extras: QWidget, with_status: bool = True
    ) -> QVBoxLayout:
        """The rows on top: each choice after its label (its tooltip), then ``extras``; under
        them the status line (``with_status``). Beside the selectors the status was squeezed
        to a few letters at 1024 px ("Update 12:56:0"): on its own line it always reads."""
        rows = QVBoxLayout()
        rows.setSpacing(2)
        row = QHBoxLayout()
        for label, widget in choices:
            row.addWidget(make_label(label, widget.toolTip()))
            row.addWidget(widget)
        for widget in extras:
            row.addWidget(widget)
        row.addStretch(1)
        rows.addLayout(row)
        if with_status:
            rows.addWidget(self.status)
        return rows

    def make_refresh_button(self, tip: str) -> QPushButton:
        """A Refresh button, also on F5: a fresh question that replaces one on its way."""
        button = make_button("Refresh", tip, lambda: self.refresh())
        button.setShortcut(QKeySequence("F5"))
        return button

    def set_status(self, text: str, tone: str = "muted") -> None:
        self.status.setText(text)
        self.status.setStyleSheet(f"color: {colour(tone)};")
        self.status.setToolTip(text)

    def updated_text(self) -> str:
        """The status after a good read: when, and how often it is read again."""
        every = self.refresh_ms // 1000
        period = f"{every} s" if every < 60 else f"{every // 60} min"
        return f"Updated {time.strftime('%H:%M:%S')}; refreshes every {period}."


class ModelPage(RefreshingPage):
    """A refreshing page about one model at a time, chosen in ``model_choice``.

    Subclasses say what to show without models (``show_no_models``) and what a newly chosen
    model changes (``model_changed``: clear what answered the old one, then refresh).
    """

    model_tip: str = "The model shown."

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.models: dict[str, ModelInfo] = {}
        # A page that asks about one version sets its selector here: refilled with the model.
        self.version_choice: VersionChoice | None = None
        self._wanted_model = str(context.settings.value(self._model_setting, "") or "")
        self.model_choice = QComboBox()
        self.model_choice.setToolTip(self.model_tip)
        self.model_choice.setMinimumContentsLength(12)
        self.model_choice.currentIndexChanged.connect(self._on_model_chosen)

    @property
    def _model_setting(self) -> str:
        return f"{self.key}/model"

    # ---------------------------------------------------------------- what subclasses give

    def show_no_models(self) -> None:
        """The backend has no model: say so where the data would be."""

    def models_loaded(self) -> None:
        """The list of models was read again, the same model still chosen: refresh it."""
        self.refresh()

    def model_changed(self) -> None:
        """Another model was chosen (by the user, or at the first read): show it."""
        self.refresh()

    # ---------------------------------------------------------------- the selector

    def current_model(self) -> str:
        return str(self.model_choice.currentData() or "")

    def current_model_info(self) -> ModelInfo | None:
        return self.models.get(self.current_model())

    def current_version(self) -> str:
        """The version chosen ("" for the page's default: all versions, or the serving one)."""
        return self.version_choice.current_version() if self.version_choice else ""

    def reload(self) -> None:
        self.fetch_models()

    def focus_model(self, model: str) -> None:
        """Another page sent the user here about ``model``."""
        self._wanted_model = model
        index = self.model_choice.findData(model)
        if index >= 0:
            self.model_choice.setCurrentIndex(index)

    def fetch_models(self) -> None:
        self.call_backend(
            "models", lambda client: client.models(), self._on_models, self._on_models_failed
        )

    def shutdown(self) -> None:
        super().shutdown()
        self.context.settings.setValue(
            self._model_setting, self.current_model() or self._wanted_model
        )

    def _on_models(self, models: list[ModelInfo]) -> None:
        before = self.current_model()
        self.models = {model.name: model for model in models}
        wanted = before or self._wanted_model
        box = self.model_choice
        box.blockSignals(True)
        try:
            box.clear()
            for name in sorted(self.models):
                box.addItem(name, name)
            box.setCurrentIndex(max(box.findData(wanted), 0))
        finally:
            box.blockSignals(False)
        if not self.models:
            self.show_no_models()
            self.set_status("")
            return
        if self.current_model() == before:
            self._fill_versions()
            self.models_loaded()
        else:
            self._on_model_chosen()

    def _on_models_failed(self, error: Exception) -> None:
        self.set_status(f"Could not load the models: {describe_error(error)}", "bad")

    def _on_model_chosen(self, _index: int = 0) -> None:
        self._wanted_model = self.current_model()
        self._fill_versions()
        self.model_changed()

    def _fill_versions(self) -> None:
        if self.version_choice is not None:
            self.version_choice.fill(self.current_model_info())
