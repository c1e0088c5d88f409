"""A gate report as people read it: failed gates first in red, then the rows that differed."""

from __future__ import annotations

from PySide6.QtWidgets import QVBoxLayout, QWidget

from backend.schemas import GateReport, GateResult
from console.widgets.common import make_label, plain_text
from console.widgets.tables import Cell, ReadOnlyTable

GATE_WORDS = {
    "artifact_hash": "File unchanged",
    "load": "Loads",
    "signature": "Inputs compatible",
    "end_to_end": "Known answers",
    "metric": "Quality metric",
    "held_out_policy": "Held-out policy fits",
}
GATE_HELP = {
    "artifact_hash": "The model file still has the fingerprint recorded when it was registered.",
    "load": "The model file can be opened and used.",
    "signature": "Applications calling the model today can still call this version.",
    "end_to_end": "Known inputs give exactly the answers recorded with the version.",
    "metric": "The quality score on labelled examples lies in its acceptable range.",
    "held_out_policy": (
        "The answer given to held-out traffic (kept away from the model to measure feedback "
        "loops) is one this version could give, and does not come from this version itself."
    ),
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
        self.gates = ReadOnlyTable(GATE_COLUMNS)
        self.gates.setToolTip("Each check the version went through, failures first.")
        self.mismatches = ReadOnlyTable(MISMATCH_COLUMNS)
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
        mismatches = report.end_to_end_mismatches if report is not None else []
        self.mismatch_title.setVisible(bool(mismatches))
        self.mismatches.setVisible(bool(mismatches))
        if report is None:
            self.gates.set_rows([])
            self.mismatches.set_rows([])
            self.summary.setText("No checks run yet for this version.")
            return
        verdict = "passed every check" if report.passed else "was REFUSED"
        when = report.checked_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        self.summary.setText(
            f"Version {report.version} {verdict} ({report.purpose}, by {report.checked_by}, "
            f"{when})."
        )
        gates = sorted(report.gates, key=lambda g: OUTCOME_ORDER[g.outcome])
        self.gates.set_rows([_gate_row(gate) for gate in gates])
        self.mismatches.set_rows(
            [
                (
                    Cell(str(mismatch.index)),
                    Cell(plain_text(mismatch.expected)),
                    Cell(plain_text(mismatch.actual), tone="bad"),
                    Cell(plain_text(mismatch.inputs)),
                )
                for mismatch in mismatches
            ]
        )

    def failed_rows(self) -> list[str]:
        """The checks shown in red, top to bottom (for tests and screen readers)."""
        return [
            self.gates.text(row, 0)
            for row in range(self.gates.row_count())
            if self.gates.text(row, 1) == "failed"
        ]


def _gate_row(gate: GateResult) -> tuple[Cell, ...]:
    tone = "bad" if gate.outcome == "failed" else ""  # a failed check is red all along
    return (
        Cell(GATE_WORDS[gate.gate], GATE_HELP[gate.gate], tone),
        Cell(gate.outcome, tone=tone),
        Cell(gate.detail, tone=tone),
    )
