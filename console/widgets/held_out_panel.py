"""A model's held-out share and its no-model policy, with the control to change the share.

Shows the share, what answers held-out requests and how much recent traffic that covered;
to the roles that may change it, a share, a reason (kept in the audit trail) and two actions:
apply the share (keeping the policy; a model without one gets a declared default answer
chosen here) or stop holding out. The panel asks its page by signals; it calls nothing.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLineEdit,
    QVBoxLayout,
    QWidget,
)

from backend.schemas.held_out import (
    DEFAULT_HELD_OUT_PERCENT,
    MAX_HELD_OUT_PERCENT,
    DefaultPolicy,
    HeldOutRequest,
    HeldOutStatus,
)
from console.dialogs.messages import input_problem, show_error
from console.loop_words import coverage_text, policy_text
from console.resources import colour
from console.widgets.common import make_button, make_label

WHY = (
    "Held-out traffic is a control group: a sticky share of entities the model does not "
    "answer (its answer is logged, not returned), so that their outcomes and labels are not "
    "shaped by it. The indicators compare served with held-out traffic; a larger share makes "
    "them surer sooner, at the cost of serving more requests by the no-model policy."
)
NOT_ALLOWED = "Only engineers and admins may change the held-out share."


class HeldOutPanel(QFrame):
    set_requested = Signal(object)  # HeldOutRequest
    stop_requested = Signal(str)  # the reason

    def __init__(self) -> None:
        super().__init__()
        self.setObjectName("heldOutPanel")
        self.status: HeldOutStatus | None = None
        self.heading = make_label("Held-out traffic", name="heading")
        self.why = make_label(WHY, name="muted", wrap=True)
        self.policy = make_label("Not loaded yet.", wrap=True)
        self.coverage = make_label(name="muted", wrap=True)
        self.explanation = make_label(wrap=True)
        for label in (self.policy, self.coverage, self.explanation):
            label.setTextFormat(Qt.TextFormat.PlainText)  # the backend's words, shown as is

        self.share = QDoubleSpinBox()
        self.share.setRange(0.0, MAX_HELD_OUT_PERCENT)
        self.share.setDecimals(1)
        self.share.setSingleStep(0.5)
        self.share.setSuffix(" %")
        self.share.setValue(DEFAULT_HELD_OUT_PERCENT)
        self.share.setMaximumWidth(140)
        self.share.setToolTip(
            "The share of entities held out. A change only adds or removes the entities at its "
            "edge: the rest stay where they were."
        )
        self.answer = QComboBox()
        self.answer.setMaximumWidth(260)
        self.answer.setToolTip(
            "This model has no held-out policy yet: held-out requests get this declared answer "
            "(choose the one the business gives without a model, e.g. approve)."
        )
        self.reason = QLineEdit()
        self.reason.setMaximumWidth(520)
        self.reason.setPlaceholderText("Why? (kept in the audit trail)")
        self.reason.setToolTip("Your reason is recorded with your name in the audit trail.")
        self.apply_button = make_button(
            "Apply share",
            "Hold this share of the entities out of the model's influence.",
            self._apply,
        )
        self.stop_button = make_button(
            "Stop holding out",
            "Every request is answered by the model again (the indicators lose their control "
            "group).",
            self._stop,
        )
        self.editor = QWidget()
        form = QFormLayout(self.editor)
        form.setContentsMargins(0, 0, 0, 0)
        form.addRow("Share held out", self.share)
        self.answer_row_label = make_label("Held-out answer", self.answer.toolTip())
        form.addRow(self.answer_row_label, self.answer)
        form.addRow("Reason", self.reason)
        buttons = QHBoxLayout()
        buttons.addWidget(self.apply_button)
        buttons.addWidget(self.stop_button)
        buttons.addStretch(1)
        form.addRow(buttons)
        self.not_allowed = make_label(NOT_ALLOWED, name="muted", wrap=True)

        layout = QVBoxLayout(self)
        for widget in (
            self.heading,
            self.policy,
            self.coverage,
            self.explanation,
            self.editor,
            self.not_allowed,
            self.why,
        ):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.reason.textChanged.connect(self._update_buttons)
        self.error_dialog: QWidget | None = None
        # What the editor was last filled from: (settings, class values).
        self._editor_shows: tuple[Any, list[Any]] | None = None
        self.set_may_edit(False)

    def set_may_edit(self, may: bool) -> None:
        """Only the roles that may change it see the control."""
        self.editor.setVisible(may)
        self.not_allowed.setVisible(not may)

    @property
    def may_edit(self) -> bool:
        return not self.editor.isHidden()

    def show_status(self, status: HeldOutStatus, answers: list[tuple[Any, str]]) -> None:
        """``answers``: the serving version's classes (label, name), offered as a default."""
        self.status = status
        self.policy.setStyleSheet("")
        names = {str(value): name for value, name in answers}
        self.policy.setText(policy_text(status.settings, names))
        self.coverage.setText(coverage_text(status))
        self.explanation.setText(status.explanation)
        # The backend's explanation already counts the coverage: say it once.
        self.coverage.setVisible(not status.explanation)
        settings = status.settings
        shown = (settings, [value for value, _ in answers])
        # A refresh (every 30 s) must not undo what someone is typing: the editor is refilled
        # only when the stored settings or the classes changed, never while a reason is typed.
        if shown != self._editor_shows and not self.reason.text().strip():
            self._editor_shows = shown
            self.share.setValue(settings.share_percent if settings else DEFAULT_HELD_OUT_PERCENT)
            self.answer.clear()
            for value, name in answers:
                self.answer.addItem(name if name == str(value) else f"{name} ({value})", value)
        needs_answer = settings is None
        self.answer.setVisible(needs_answer)
        self.answer_row_label.setVisible(needs_answer)
        self._update_buttons()

    def show_message(self, text: str, tone: str = "muted") -> None:
        self.status = None
        self.policy.setStyleSheet(f"color: {colour(tone)};")
        self.policy.setText(text)
        self.coverage.setText("")
        self.explanation.setText("")
        self._update_buttons()

    def action_done(self) -> None:
        self.reason.clear()
        self._editor_shows = None  # the next status fills the editor with what is stored

    def _update_buttons(self) -> None:
        has_reason = bool(self.reason.text().strip())
        self.apply_button.setEnabled(self.status is not None and has_reason)
        self.stop_button.setEnabled(
            self.status is not None and self.status.settings is not None and has_reason
        )

    def _apply(self) -> None:
        if self.status is None:
            return
        settings = self.status.settings
        try:
            if settings is not None:
                policy: Any = settings.policy
            elif self.answer.count():
                policy = DefaultPolicy(kind="default", answer=self.answer.currentData())
            else:
                show_error(self, "Cannot hold out", "This model has no answer to declare.")
                return
            request = HeldOutRequest(
                share_percent=self.share.value(), policy=policy, reason=self.reason.text().strip()
            )
        except ValidationError as exc:
            self.error_dialog = show_error(self, "Cannot hold out", input_problem(exc))
            return
        self.set_requested.emit(request)

    def _stop(self) -> None:
        self.stop_requested.emit(self.reason.text().strip())
