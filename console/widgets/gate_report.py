"""A gate report as people read it: failed gates first in red, then the rows that differed."""

from __future__ import annotations

from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import QVBoxLayout, QWidget

from backend.schemas import GateReport
from console.resources import colour
from console.widgets.common import make_label, plain_text, read_only_table, table_item

GATE_WORDS = {
    "artifact_hash": "File unchanged",
    "load": "Loads",
    "signature": "Inputs compatible",
    "end_to_end": "Known answers",
    "metric": "Quality metric",
}
GATE_HELP = {
    "artifact_hash": "The model file still has the fingerprint recorded when it was registered.",
    "load": "The model file can be opened and used.",
    "signature": "Applications calling the model today can still call this version.",
    "end_to_end": "Known inputs give exactly the answers recorded with the version.",
    "metric": "The quality score on labelled examples lies in its acceptable range.",
}
OUTCOME_ORDER = {"failed": 0, "forced": 1, "skipped": 2, "passed": 3}
GATE_COLUMNS = (
    ("Check", "What was checked before the version may serve."),
    ("Result", "passed, failed, skipped (an earlier check failed) or forced (accepted anyway)."),
    ("Details", "What was found."),
)
MISMATCH_COLUMNS = (
    ("Example", "The number of the known example in the version's end-to-end set."),
    ("Expected", "The answer recorded with the version."),
    ("Got", "The answer the version gave now."),
    ("Inputs", "The example's inputs."),
)


class GateReportView(QWidget):
    def __init__(self) -> None:
        super().__init__()
        self.summary = make_label("No checks run yet.", name="muted", wrap=True)
        self.gates = read_only_table(GATE_COLUMNS)
        self.gates.setToolTip("Each check the version went through, failures first.")
        self.mismatches = read_only_table(MISMATCH_COLUMNS)
        self.mismatches.setToolTip("Known examples the version answered differently.")
        self.mismatch_title = make_label("Known examples answered differently", name="heading")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.summary)
        layout.addWidget(self.gates, 2)
        layout.addWidget(self.mismatch_title)
        layout.addWidget(self.mismatches, 1)
        self.show_report(None)

    def show_report(self, report: GateReport | None) -> None:
        self.gates.setRowCount(0)
        self.mismatches.setRowCount(0)
        self.mismatch_title.setVisible(False)
        self.mismatches.setVisible(False)
        if report is None:
            self.summary.setText("No checks run yet for this version.")
            return
        verdict = "passed every check" if report.passed else "was REFUSED"
        when = report.checked_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        self.summary.setText(
            f"Version {report.version} {verdict} ({report.purpose}, by {report.checked_by}, "
            f"{when})."
        )
        gates = sorted(report.gates, key=lambda g: OUTCOME_ORDER[g.outcome])
        self.gates.setRowCount(len(gates))
        red = QBrush(QColor(colour("bad")))
        for row, gate in enumerate(gates):
            cells = (
                table_item(GATE_WORDS[gate.gate], GATE_HELP[gate.gate]),
                table_item(gate.outcome),
                table_item(gate.detail, gate.detail),
            )
            for column, cell in enumerate(cells):
                if gate.outcome == "failed":
                    cell.setForeground(red)
                self.gates.setItem(row, column, cell)
        if report.end_to_end_mismatches:
            self.mismatch_title.setVisible(True)
            self.mismatches.setVisible(True)
            self.mismatches.setRowCount(len(report.end_to_end_mismatches))
            for row, mismatch in enumerate(report.end_to_end_mismatches):
                inputs = plain_text(mismatch.inputs)
                for column, cell in enumerate(
                    (
                        table_item(str(mismatch.index)),
                        table_item(plain_text(mismatch.expected)),
                        table_item(plain_text(mismatch.actual)),
                        table_item(inputs, inputs),
                    )
                ):
                    if column == 2:
                        cell.setForeground(red)
                    self.mismatches.setItem(row, column, cell)

    def failed_rows(self) -> list[str]:
        """The checks shown in red, top to bottom (for tests and screen readers)."""
        return [
            self.gates.item(row, 0).text()
            for row in range(self.gates.rowCount())
            if self.gates.item(row, 1).text() == "failed"
        ]
