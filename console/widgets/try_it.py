"""The "Try it" panel: a form built from a version's signature, one OIP request, the answer.

Numeric editors accept values outside a feature's declared range on purpose: the backend
validates, and the panel is there to show what it says; the range is shown beside instead.
The panel makes no call: it asks for one (``send_requested``) and the page hands back the
answer or the backend's objection.
"""

from __future__ import annotations

import html
import itertools
import json
import shlex
import time
from typing import Any

from PySide6.QtCore import QEvent, QObject, QSize, Qt, Signal
from PySide6.QtGui import (
    QGuiApplication,
    QKeySequence,
)
from PySide6.QtWidgets import (
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import InferResponse, ModelVersionInfo
from console.resources import colour
from console.widgets.common import make_button, make_label
from console.widgets.feature_editor import (
    FeatureEditor,
    feature_of,
)
from console.widgets.values import ClassNames


class _FitScroll(QScrollArea):
    """As tall as the form it holds when there is room (so the buttons stay right under it);
    it scrolls when there is not."""

    def sizeHint(self) -> QSize:
        inner = self.widget()
        return super().sizeHint() if inner is None else inner.sizeHint() + QSize(4, 4)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        # The form's rows changed: the size wanted follows (the viewport has no layout to tell).
        if watched is self.widget() and event.type() == QEvent.Type.LayoutRequest:
            self.updateGeometry()
        return super().eventFilter(watched, event)


class TryItPanel(QWidget):
    """Send one row to one version and show its answer, or the backend's objection."""

    # model, version, OIP input tensors: the user asked to send them, or to copy the request.
    send_requested = Signal(str, str, list)
    copy_requested = Signal(str, str, list)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.model_name = ""
        self.version: ModelVersionInfo | None = None
        self.editors: dict[str, FeatureEditor] = {}
        self.highlighted_feature: str | None = None
        self.last_response: InferResponse | None = None
        self.last_error: str | None = None  # the objection shown, as plain text
        self._sent_at = 0.0

        self.title = make_label(
            "Try it",
            "Send one made-up input to this exact version and see what it answers. "
            "The request is real: it is served and logged like any other.",
            scale=1.15,
        )

        self.form_box = QWidget()
        self.form = QFormLayout(self.form_box)
        self.form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        self.form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.form_scroll = _FitScroll()
        self.form_scroll.setWidgetResizable(True)
        self.form_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.form_scroll.setWidget(self.form_box)
        self.form_scroll.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.form_scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Tab goes to the editors

        self.send_button = make_button(
            "Send", "Send these values to this version and show its answer (Ctrl+Enter).", self.send
        )
        self.send_button.setDefault(True)
        self.send_button.setShortcut(QKeySequence("Ctrl+Return"))
        self.reset_button = make_button(
            "Reset to example",
            "Put back the example input stored with this version when it was registered.",
            self.reset_to_example,
        )
        self.copy_button = make_button(
            "Copy as curl",
            "Copy this request as a curl command, to reproduce it from a terminal. "
            "The token is left out: set SERVEDECK_TOKEN first.",
            self.copy_as_curl,
        )
        buttons = QHBoxLayout()
        for button in (self.send_button, self.reset_button, self.copy_button):
            buttons.addWidget(button)
        buttons.addStretch(1)

        self.status = make_label(name="muted", wrap=True)
        self.error_label = make_label(name="error", wrap=True)
        self.error_label.setStyleSheet(
            f"background: {colour('error_bg')}; color: {colour('bad')}; "
            f"border: 1px solid {colour('bad')}; border-radius: 4px; padding: 6px;"
        )
        self.error_label.hide()

        self.result_box = QGroupBox("Answer")
        self.result_box.setToolTip("What the version answered to the last input sent.")
        self.result_title = make_label(scale=1.3)
        self.result_meta = make_label(
            tip="Which version answered, how long the round trip took, and the request id: "
            "look the request up in the prediction log with it, or attach a label to it later.",
            name="muted",
            wrap=True,
        )
        self.probabilities = make_label(
            tip="How likely the model thinks each class is, for this input. They add up to "
            "100%; the predicted class is the most likely one."
        )
        result_layout = QVBoxLayout(self.result_box)
        for part in (self.result_title, self.result_meta, self.probabilities):
            result_layout.addWidget(part)
        self.result_box.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.form_scroll)
        layout.addLayout(buttons)
        for widget in (self.status, self.error_label, self.result_box):
            layout.addWidget(widget)
        layout.addStretch(1)
        self.set_version("", None)

    # ---------------------------------------------------------------- version and form

    def is_showing(self, model_name: str, version: ModelVersionInfo | None) -> bool:
        """Whether the form is already the one of ``version`` (what was typed stays)."""
        return (
            version is not None
            and self.version is not None
            and model_name == self.model_name
            and version.version == self.version.version
            and version.signature == self.version.signature
        )

    def set_version(self, model_name: str, version: ModelVersionInfo | None) -> None:
        """Build the form for ``version``; the same version again keeps what the user typed."""
        if self.is_showing(model_name, version):
            self.version = version
            return
        self.model_name = model_name
        self.version = version
        while self.form.rowCount():
            self.form.removeRow(0)
        self.editors, self.highlighted_feature = {}, None
        self._clear_result()
        has_version = version is not None
        for button in (self.send_button, self.reset_button, self.copy_button):
            button.setEnabled(has_version)
        if version is None:
            self.title.setText("Try it")
            self.status.setText("Select a model version to try it.")
            return
        self.title.setText(f"Try it: {model_name}, version {version.version}")
        for spec in version.signature:
            editor = FeatureEditor(spec, self._on_edit)
            self.editors[spec.name] = editor
            self.form.addRow(editor.label, editor.container)
        # The editors are created last, so they end the focus chain: move the buttons after
        # them, so Tab goes through the form first, then Send, Reset, Copy.
        last = [e.include or e.editor for e in self.editors.values()][-1:]
        chain = [*last, self.send_button, self.reset_button, self.copy_button]
        for first, second in itertools.pairwise(chain):
            QWidget.setTabOrder(first, second)
        self.reset_to_example()
        self.status.setText(
            "Edit the values and press Send. Hover over a name to see what it means."
        )

    def reset_to_example(self) -> None:
        if self.version is None:
            return
        example = self.version.example_input
        for name, editor in self.editors.items():
            editor.set_value(example.get(name))
        self._clear_error()

    def build_inputs(self) -> list[dict[str, Any]]:
        tensors = (editor.tensor() for editor in self.editors.values())
        return [tensor for tensor in tensors if tensor is not None]

    def _on_edit(self) -> None:
        highlighted = self.editors.get(self.highlighted_feature or "")
        if highlighted is not None and not highlighted.frame.invalid:
            self.highlighted_feature = None
        if self.result_box.isVisible():
            # The answer shown is for other values now: dim it until the next Send.
            self.result_box.setEnabled(False)
            self.result_box.setTitle("Answer to the previous values (press Send to update)")

    # ---------------------------------------------------------------- sending

    def send(self) -> None:
        if self.version is None:
            return
        model, version = self.model_name, self.version.version
        self.send_button.setEnabled(False)  # until the answer is shown
        self._clear_error()
        self.status.setText(f"Sending to {model} version {version}…")
        self._sent_at = time.perf_counter()
        self.send_requested.emit(model, version, self.build_inputs())

    def show_response(self, response: InferResponse) -> None:
        self.last_response, self.last_error = response, None
        self.send_button.setEnabled(True)
        elapsed_ms = (time.perf_counter() - self._sent_at) * 1000
        outputs = {output.name: output.data for output in response.outputs}
        predicted = (outputs.get("predict") or [None])[0]
        parameters = response.parameters or {}
        serving = parameters.get("serving_version", response.model_version)
        request_id = parameters.get("request_id", response.id)
        probabilities = outputs.get("predict_proba")
        classes = ClassNames.of_version(self.version)
        labels = classes.names
        self.probabilities.hide()
        if probabilities and labels and len(probabilities) == len(labels):
            best = max(range(len(labels)), key=lambda i: probabilities[i])
            self.result_title.setText(
                f"Predicted class: {classes.described(predicted)}  "
                f"({float(probabilities[best]):.1%} probability)"
            )
            self._fill_probabilities(labels, probabilities, best)
        elif isinstance(predicted, float):
            self.result_title.setText(f"Predicted value: {predicted:,.6g}")
        else:
            self.result_title.setText(f"Prediction: {predicted}")
        self.result_meta.setText(
            f"Answered by version <b>{serving}</b> in {elapsed_ms:,.0f} ms · "
            f"request id <code>{request_id}</code>"
        )
        self.status.setText("")
        self.result_box.setEnabled(True)
        self.result_box.setTitle("Answer")
        self.result_box.show()

    def _fill_probabilities(self, labels: list[Any], probabilities: list[Any], best: int) -> None:
        """One row per class: its name, its probability, and a bar as long as the probability."""
        rows = []
        for row, (label, probability) in enumerate(zip(labels, probabilities, strict=True)):
            value, name = float(probability), html.escape(str(label))
            filled = min(max(round(value * 100), 1), 99)
            bar = (
                "<table width='100%' cellspacing=0 cellpadding=0><tr>"
                f"<td width='{filled}%' height=10 bgcolor='{colour('accent')}'></td>"
                f"<td width='{100 - filled}%' bgcolor='{colour('border')}'></td></tr></table>"
            )
            name = f"<b>{name}</b> ← predicted" if row == best else name
            cells = f"<td>{name}</td><td align=right>{value:.1%}</td>"
            rows.append(f"<tr>{cells}<td width='60%'>{bar}</td></tr>")
        self.probabilities.setText(
            "<table width='100%' cellspacing=0 cellpadding=4><tr><th align=left>Class</th>"
            f"<th align=right>Probability</th><th></th></tr>{''.join(rows)}</table>"
        )
        self.probabilities.show()

    def show_unreachable(self, reason: str) -> None:
        """No answer came back at all."""
        self._show_error(
            f"<b>No answer from the backend</b> ({html.escape(reason)}). Check that the server "
            "is running and reachable; the console reconnects by itself."
        )

    def show_refused(self, status: int, message: str, field: str | None) -> None:
        """The backend answered with an error; ``field`` names the input it objects to."""
        feature = feature_of(field, self.editors)
        subject = f"the value of “{feature}”" if feature else "the request"
        where = f", field {field}" if field and not feature else ""
        self._show_error(
            f"<b>The backend refused {subject}</b> (HTTP {status}{where}):<br>"
            + html.escape(message)
        )
        if feature is not None:
            self._highlight(feature)

    def show_unexpected(self, description: str) -> None:
        self._show_error(f"<b>Unexpected error:</b> {html.escape(description)}")

    def _show_error(self, text: str) -> None:
        self._clear_result()
        self.error_label.setText(text)
        self.last_response, self.last_error = None, self.error_label.text()
        self.send_button.setEnabled(True)
        self.status.setText("")
        self.error_label.show()

    def _highlight(self, feature: str) -> None:
        self.highlighted_feature = feature
        editor = self.editors[feature]
        editor.set_invalid(True)
        self.form_scroll.ensureWidgetVisible(editor.container)
        editor.editor.setFocus(Qt.FocusReason.OtherFocusReason)

    def _clear_error(self) -> None:
        self.error_label.hide()
        self.error_label.clear()
        for editor in self.editors.values():
            editor.set_invalid(False)
        self.highlighted_feature = None

    def _clear_result(self) -> None:
        self.result_box.hide()
        self.result_title.clear()
        self.result_meta.clear()

    def copy_as_curl(self) -> None:
        if self.version is not None:
            self.copy_requested.emit(self.model_name, self.version.version, self.build_inputs())

    def copy_command(self, url: str, body: dict[str, Any]) -> None:
        """Put the request to ``url`` with ``body`` on the clipboard as a curl command."""
        QGuiApplication.clipboard().setText(
            f"curl -X POST {shlex.quote(url)} -H "
            f"'Content-Type: application/json' -H \"Authorization: Bearer $SERVEDECK_TOKEN\" "
            f"-d {shlex.quote(json.dumps(body))}"
        )
        self.status.setText("Copied the request as a curl command.")
