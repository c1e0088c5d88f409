"""The review page's widgets: one held-out example with its answers, and the queue's counters.

They only show and ask: a class button, skip, undo or a move is a signal to the page, which
makes the call. The keys (digits, S, U, arrows) are the page's shortcuts; the buttons say them.
"""

from __future__ import annotations

from datetime import UTC
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDoubleValidator
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from backend.schemas.review import ReviewItem, ReviewStats
from console.widgets.common import make_label
from console.widgets.tables import Cell, ReadOnlyTable
from console.widgets.values import ClassNames, readable

MAX_CLASS_KEYS = 9


class ReviewExampleView(QWidget):
    """One example: its input features, the model's unseen answer, what the policy did, and
    a button per class (1..9 in the model's order), skip, undo, previous and next."""

    answer_chosen = Signal(object)  # the class label (a number for a regression model)
    skip_requested = Signal()
    undo_requested = Signal()
    move_requested = Signal(int)  # -1: previous, +1: next

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.item: ReviewItem | None = None
        self.classes = ClassNames()
        self.heading = make_label(scale=1.15, wrap=True)
        self.where = make_label(name="muted", wrap=True)
        self.features = ReadOnlyTable(
            (("Feature", "The input the model saw"), ("Value", "As it was logged"))
        )
        # The keyboard stays with the page's keys (arrows move between examples).
        self.features.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.model_answer = make_label(wrap=True)
        self.policy_answer = make_label(wrap=True)
        self.class_box = QWidget()
        self.class_layout = QVBoxLayout(self.class_box)
        self.class_layout.setContentsMargins(0, 0, 0, 0)
        self.class_buttons: list[QPushButton] = []
        self.value = QLineEdit()
        self.value.setPlaceholderText("The correct value, then Enter")
        self.value.setToolTip("A regression model's correct answer: type it and press Enter.")
        self.value.setValidator(QDoubleValidator())
        self.value.returnPressed.connect(self._value_entered)
        self.value.hide()
        self.skip_button = self._button("S · Skip", "Cannot tell: skip this example (S).")
        self.skip_button.clicked.connect(self.skip_requested)
        self.undo_button = self._button("U · Undo", "Take back your last answer or skip (U).")
        self.undo_button.clicked.connect(self.undo_requested)
        self.previous_button = self._button("← Previous", "The previous example (Left).")
        self.previous_button.clicked.connect(lambda: self.move_requested.emit(-1))
        self.next_button = self._button("Next →", "The next example (Right).")
        self.next_button.clicked.connect(lambda: self.move_requested.emit(1))

        answers = QFrame()
        answers.setObjectName("review-answers")
        answers_layout = QVBoxLayout(answers)
        answers_layout.addWidget(make_label("<b>The model's answer</b> (the caller never saw it)"))
        answers_layout.addWidget(self.model_answer)
        answers_layout.addWidget(make_label("<b>What the held-out policy did</b>"))
        answers_layout.addWidget(self.policy_answer)
        answers_layout.addSpacing(8)
        answers_layout.addWidget(make_label("<b>The correct answer</b>"))
        answers_layout.addWidget(self.class_box)
        answers_layout.addWidget(self.value)
        moves = QGridLayout()
        moves.addWidget(self.skip_button, 0, 0)
        moves.addWidget(self.undo_button, 0, 1)
        moves.addWidget(self.previous_button, 1, 0)
        moves.addWidget(self.next_button, 1, 1)
        answers_layout.addLayout(moves)
        answers_layout.addStretch(1)
        answers.setMinimumWidth(300)
        answers.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

        body = QHBoxLayout()
        body.addWidget(self.features, 3)
        body.addWidget(answers, 2)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.heading)
        layout.addWidget(self.where)
        layout.addLayout(body, 1)

    @staticmethod
    def _button(text: str, tip: str) -> QPushButton:
        button = QPushButton(text)
        button.setToolTip(tip)
        return button

    # ---------------------------------------------------------------- showing

    def show_item(self, item: ReviewItem, position: int, count: int) -> None:
        self.item = item
        self.classes = ClassNames(item.classes, item.class_names)
        self.heading.setText(f"Example {position + 1} of {count} in your batch")
        predicted = item.predicted_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        entity = f" · entity {item.entity_id}" if item.entity_id else ""
        self.where.setText(
            f"Request {item.request_id} (row {item.row}){entity} · version {item.version} · "
            f"predicted {predicted}"
        )
        self.features.set_rows(
            [[Cell(name), Cell(readable(value))] for name, value in item.features.items()]
        )
        self.model_answer.setText(self._model_answer(item))
        self.policy_answer.setText(self._policy_answer(item))
        self._set_classes(item)
        self.previous_button.setEnabled(position > 0)
        self.next_button.setEnabled(position < count - 1)

    def _model_answer(self, item: ReviewItem) -> str:
        text = self.classes.described(item.model_answer)
        probabilities = item.outputs.get("predict_proba")
        if isinstance(probabilities, list):
            text += f" — {self.classes.probabilities(probabilities)}"
        return text

    def _policy_answer(self, item: ReviewItem) -> str:
        if item.held_out is None:
            return "Not recorded in the log for this example."
        policy = item.held_out.policy or "the held-out policy"
        return f"{policy} answered {self.classes.described(item.held_out.answer)}"

    def _set_classes(self, item: ReviewItem) -> None:
        labels = self.classes.labels if item.task == "classification" else []
        if [b.property("label") for b in self.class_buttons] != labels[:MAX_CLASS_KEYS]:
            for button in self.class_buttons:
                self.class_layout.removeWidget(button)
                button.deleteLater()
            self.class_buttons = []
            for key, (label, name) in enumerate(zip(labels, self.classes.names, strict=True), 1):
                if key > MAX_CLASS_KEYS:
                    break
                button = self._button(f"{key} · {name}", f"The correct answer is {name} ({key}).")
                button.setProperty("label", label)
                button.clicked.connect(
                    lambda _=False, chosen=label: self.answer_chosen.emit(chosen)
                )
                self.class_layout.addWidget(button)
                self.class_buttons.append(button)
        self.value.setVisible(item.task != "classification")
        if item.task != "classification":
            self.value.clear()

    def class_for_key(self, key: int) -> tuple[bool, Any]:
        """The class of digit ``key`` (1 is the first class): (found, label)."""
        if self.item is None or not 1 <= key <= len(self.class_buttons):
            return False, None
        return True, self.class_buttons[key - 1].property("label")

    def _value_entered(self) -> None:
        text = self.value.text().strip()
        if text:
            self.answer_chosen.emit(float(text))


class ReviewProgress(QWidget):
    """Done against the queue, the reviewer's pace, and the reviewers' agreement."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.bar = QProgressBar()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("%p % reviewed")
        self.bar.setToolTip("Held-out examples decided (answered or skipped) of all read so far.")
        self.counts = make_label("No statistics yet.", name="muted")
        self.counts.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.agreement = make_label("", name="muted", wrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.counts, 3)
        layout.addLayout(row)
        layout.addWidget(self.agreement)

    def show_stats(self, stats: ReviewStats, reviewer: str) -> None:
        decided = stats.done + stats.skipped
        self.bar.setRange(0, max(stats.total, 1))
        self.bar.setValue(decided)
        mine = next((r for r in stats.reviewers if r.reviewer == reviewer), None)
        pace = (
            f"you: {mine.per_minute:.1f} per minute"
            if mine is not None and mine.per_minute is not None
            else "you: — per minute"
        )
        kappa = (
            f"kappa {stats.agreement.kappa:.2f} (n={stats.agreement.examples})"
            if stats.agreement.kappa is not None
            else f"kappa — (n={stats.agreement.examples})"
        )
        self.counts.setText(
            f"Done {stats.done} · skipped {stats.skipped} · in queue {stats.in_queue} "
            f"(held now {stats.leased}) · {pace} · {kappa}"
        )
        self.counts.setToolTip(
            "\n".join(
                f"{r.reviewer}: {r.answered} answered, {r.skipped} skipped, "
                + (f"{r.per_minute:.1f} per minute" if r.per_minute is not None else "—")
                for r in stats.reviewers
            )
            or "Nobody has reviewed yet."
        )
        self.agreement.setText(stats.agreement.explanation)
