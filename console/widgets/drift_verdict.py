"""The top of the Drift page: the dataset verdict in plain words and the model's output drift."""

from __future__ import annotations

import html

from PySide6.QtWidgets import QFrame, QVBoxLayout, QWidget

from backend.schemas.drift import DriftReport, FeatureDrift
from console.resources import colour
from console.widgets.common import make_label
from console.widgets.drift_table import (
    DECIDED_HELP,
    DRIFTED,
    STATUS_TONE,
    TEST_NAMES,
    TOO_FEW,
    feature_status,
    score_text,
    threshold_text,
)

OUTPUT_NAMES = {
    "__prediction__": "predicted class",
    "__confidence__": "confidence",
    "prediction": "predicted class",
    "confidence": "confidence",
}
OUTPUTS_HELP = (
    "Whether the model's answers changed: the mix of predicted classes, and how sure the model "
    "is. A change here with no input drift can mean the world changed in a way the inputs do "
    "not show; a change here with input drift confirms the model reacts to it. These do not "
    "count towards the dataset verdict."
)


def output_name(name: str) -> str:
    return OUTPUT_NAMES.get(name, name.strip("_").replace("_", " "))


class DriftVerdict(QFrame):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("driftVerdict")
        self.setStyleSheet(
            f"QFrame#driftVerdict {{ background: {colour('panel')}; "
            f"border: 1px solid {colour('border')}; border-radius: 4px; }}"
        )
        self.headline = make_label("Not loaded yet.", scale=1.25, wrap=True)
        self.summary = make_label(wrap=True)
        self.outputs = make_label(tip=OUTPUTS_HELP, wrap=True)
        self.details = make_label(name="muted", wrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(3)
        for label in (self.headline, self.summary, self.outputs, self.details):
            layout.addWidget(label)

    def show_message(self, headline: str, text: str = "", tone: str = "muted") -> None:
        self.headline.setText(f"<span style='color:{colour(tone)}'>{html.escape(headline)}</span>")
        self.headline.setToolTip("")
        self.summary.setText(text)
        self.outputs.setText("")
        self.details.setText("")

    def show_report(self, report: DriftReport, window_text: str) -> None:
        too_few = all(feature_status(f) == TOO_FEW for f in report.features)
        answers_moved = any(feature_status(e) == DRIFTED for e in report.predictions)
        if report.tested_features == 0:
            headline, tone = "No feature could be compared", "warn"
        elif report.rows_current == 0:
            headline, tone = "No predictions in this window: nothing to compare yet", "muted"
        elif too_few and not report.drifted_features:
            headline, tone = "Too few predictions in this window to tell", "warn"
        elif report.dataset_drift:
            headline, tone = "The data has drifted", "bad"
        elif report.drifted_features:
            headline, tone = "Some features changed, not the data as a whole", "warn"
        elif answers_moved:
            headline, tone = "The model's answers changed, though its inputs did not", "warn"
        else:
            headline, tone = "No drift: the data looks like the training data", "ok"
        self.headline.setText(
            f"<span style='color:{colour(tone)}'>{html.escape(headline)}</span>"
            f" <span style='color:{colour('muted')}'>· {html.escape(window_text)}</span>"
        )
        self.headline.setToolTip(
            f"Dataset drift is declared when at least {report.dataset_share_threshold:.0%} of "
            f"the input features drifted; now {report.drifted_features} of "
            f"{report.tested_features} ({report.drifted_share:.0%}) did."
        )
        self.summary.setText(
            report.summary
            if not (too_few and not report.drifted_features)
            else "Drift shows once a window holds enough predictions to compare with the "
            "training data: wait for traffic, or choose a longer window."
        )
        self.summary.setToolTip(self.headline.toolTip())
        self.outputs.setText(
            self._outputs_text(report.predictions, answers_moved, report.drifted_features > 0)
        )
        self.outputs.setToolTip(outputs_tooltip(report.predictions))
        skipped = "; ".join(f"{s.name}: {s.reason}" for s in report.skipped)
        self.details.setText(
            f"{report.rows_current:,} predictions in the window against "
            f"{report.rows_reference:,} training rows. Testing many features at once: "
            f"{report.correction}." + (f" Left out: {skipped}." if skipped else "")
        )
        self.details.setToolTip(
            "Testing many features at once makes a chance alarm likely somewhere; the level "
            "each test uses is divided by the number of tests (Bonferroni), so that a report "
            "of unchanged data raises no alarm at all in most windows."
        )

    @staticmethod
    def _outputs_text(outputs: list[FeatureDrift], moved: bool, inputs_drifted: bool) -> str:
        if not outputs:
            return "Model outputs: not compared (no outputs were summarised for this model)."
        parts = []
        for entry in outputs:
            status = feature_status(entry)
            parts.append(
                f"<span style='color:{colour(STATUS_TONE[status])}'>"
                f"{html.escape(output_name(entry.name))}: {html.escape(status)}</span>"
                f" ({html.escape(TEST_NAMES.get(entry.test, entry.test))} "
                f"{score_text(entry.statistic)}, {html.escape(threshold_text(entry))})"
            )
        if not moved:
            advice = ""
        elif inputs_drifted:
            advice = (
                " The model answers differently than it did on its training data: look at the "
                "drifted inputs below for the cause."
            )
        else:
            # The headline and the summary above already say that no input changed on its own;
            # what this page adds is the version choice (its table and chart are the inputs').
            advice = " To see whether another version answered, choose one in Version."
        return "Model outputs: " + " · ".join(parts) + html.escape(advice)


def outputs_tooltip(outputs: list[FeatureDrift]) -> str:
    """Each output's explanation and how it was decided, under the general help."""
    lines = [OUTPUTS_HELP, ""]
    lines += [
        f"{output_name(e.name)}: {e.explanation} ({DECIDED_HELP[e.decided_by]})" for e in outputs
    ]
    return "\n".join(lines)
