"""The Performance page's words: the verdict of the newest window, the label delay, what the
calibration says and every warning; and a table of the windows with their numbers."""

from __future__ import annotations

import html

from PySide6.QtWidgets import QFrame, QHeaderView, QVBoxLayout, QWidget

from backend.schemas import PerformanceReport, PerformanceWindow, UserSignals
from console.resources import colour
from console.widgets.common import make_label
from console.widgets.performance_chart import metric_name, metric_value
from console.widgets.tables import Cell, ReadOnlyTable

WINDOW_COLUMNS = (
    ("Window", "When the predictions were made (your local time); “so far” marks the running one."),
    ("Predictions", "How many predictions this version made in the window."),
    ("Labelled", "How many of them have their true label yet, and which share."),
    (
        "Label delay",
        "How long after the prediction its label arrived: half came sooner than "
        "the median; 90% sooner than the second figure.",
    ),
    ("Realized", "The metric measured on the labelled predictions (blank: too few labels)."),
    (
        "Estimated",
        "The metric expected from the model's own confidence, before labels "
        "(classifiers; blank when it cannot be estimated).",
    ),
    ("Verdict", "Whether the window's quality is inside the range agreed for this version."),
    (
        "Undone",
        "How many of the window's answers their users undid (the application reported it), "
        "and which share: a share that rises after a new version went live points at it.",
    ),
    (
        "Complaints",
        "How many of the window's answers drew a user's complaint, and which share.",
    ),
)


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 36 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def value_text(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def _verdict_tone(window: PerformanceWindow) -> str:
    return {True: "ok", False: "bad"}.get(window.verdict.in_range, "muted")  # type: ignore[arg-type]


def _verdict_word(window: PerformanceWindow) -> str:
    verdict = window.verdict
    if verdict.in_range is None:
        return "not judged"
    where = "in range" if verdict.in_range else "OUT OF RANGE"
    return f"{where} ({verdict.source})" if verdict.source else where


class PerformanceNotes(QFrame):
    """The headline over the newest windows, the label delay, calibration and warnings."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("performanceNotes")
        self.setStyleSheet(
            f"QFrame#performanceNotes {{ background: {colour('panel')}; "
            f"border: 1px solid {colour('border')}; border-radius: 4px; }}"
        )
        self.headline = make_label("Not loaded yet.", scale=1.25, wrap=True)
        self.delay = make_label(wrap=True)
        self.estimate = make_label(wrap=True)
        self.calibration = make_label(name="muted", wrap=True)
        self.warnings = make_label(wrap=True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 6, 8, 6)
        layout.setSpacing(3)
        for label in (self.headline, self.delay, self.estimate, self.calibration, self.warnings):
            layout.addWidget(label)

    def show_message(self, headline: str, text: str = "", tone: str = "muted") -> None:
        self.headline.setText(f"<span style='color:{colour(tone)}'>{html.escape(headline)}</span>")
        self.headline.setToolTip("")
        for label in (self.delay, self.estimate, self.calibration, self.warnings):
            label.setText("")
        self.delay.setText(text)

    def show_report(self, report: PerformanceReport) -> None:
        name = metric_name(report.metric)
        low, high = report.acceptable_range
        judged = [w for w in report.windows if w.verdict.in_range is not None]
        newest = judged[-1] if judged else (report.windows[-1] if report.windows else None)
        if newest is None:
            self.show_message("No windows", "The backend returned no windows for this choice.")
            return
        verdict = newest.verdict
        if verdict.in_range is None:
            headline, tone = f"Version {report.version}: quality not judged yet", "muted"
        elif verdict.in_range:
            headline, tone = f"Version {report.version} performs as agreed", "ok"
        else:
            headline, tone = f"Version {report.version} performs below what was agreed", "bad"
        value = f"{name} {verdict.value:.3f}" if verdict.value is not None else name
        self.headline.setText(
            f"<span style='color:{colour(tone)}'>{html.escape(headline)}</span>"
            f"<span style='color:{colour('muted')}'> · {html.escape(value)}, acceptable "
            f"{low:g} to {high:g}</span>"
        )
        self.headline.setToolTip(verdict.explanation)
        out = [w for w in judged if w.verdict.in_range is False]
        self.delay.setText(
            verdict.explanation
            + (f" {len(out)} of {len(judged)} judged windows were out of range." if out else "")
            + " "
            + self._delay_text(report)
        )
        self.delay.setToolTip(newest.label_delay.explanation)
        self.estimate.setText(self._estimate_text(report))
        self.estimate.setToolTip(
            "An estimate from the model's own confidence works before labels arrive. It "
            "assumes the model's probabilities are honest (calibrated) and that the relation "
            "between inputs and outcome has not changed; labels, when they come, have the "
            "last word."
        )
        self.calibration.setText(self._calibration_text(report))
        self.calibration.setToolTip(report.calibration.explanation if report.calibration else "")
        warnings = sorted({text for w in report.windows for text in w.estimated.warnings})
        self.warnings.setText(
            "<span style='color:{}'>⚠ {}</span>".format(
                colour("warn"), html.escape(" · ".join(warnings))
            )
            if warnings
            else ""
        )
        self.warnings.setToolTip(
            "Reasons the estimate may be off. Where they apply, wait for labels before acting "
            "on the estimate."
        )

    @staticmethod
    def _delay_text(report: PerformanceReport) -> str:
        labelled = [w for w in report.windows if w.label_delay.labelled]
        if not labelled:
            return (
                "No labels have arrived for these windows yet: the realized quality will show "
                "as they come; until then only the estimate speaks."
            )
        latest = labelled[-1].label_delay
        share = f"{latest.share:.0%}" if latest.share is not None else "some"
        return (
            f"Labels: in the newest window with labels, {share} of the predictions have one; "
            f"they came a median {duration_text(latest.median_s)} after the prediction "
            f"(90% within {duration_text(latest.p90_s)})."
        )

    @staticmethod
    def _estimate_text(report: PerformanceReport) -> str:
        estimates = [w.estimated for w in report.windows]
        if not estimates:
            return ""
        supported = [e for e in estimates if e.supported]
        if not supported:
            return f"No estimate before labels: {estimates[-1].explanation}"
        # Windows without predictions have nothing to trust or distrust: not counted.
        busy = [w.estimated for w in report.windows if w.estimated.supported and w.predictions]
        untrusted = [e for e in busy if not e.trusted]
        trust = (
            f" In {len(untrusted)} of the {len(busy)} windows with predictions it cannot be "
            "trusted (see the warnings)."
            if untrusted
            else ""
        )
        return f"Estimate before labels: {supported[-1].explanation}{trust}"

    @staticmethod
    def _calibration_text(report: PerformanceReport) -> str:
        info = report.calibration
        if info is None:
            return ""
        before = value_text(info.error_before) or "unknown"
        after = value_text(info.error_after)
        method = (
            f"recalibrated (isotonic), error {before} → {after}"
            if info.method == "isotonic"
            else f"used as they are, error {before}"
        )
        poor = (info.error_after if info.method == "isotonic" else info.error_before) or 0.0
        verdict = (
            "poorly calibrated: the estimate may be off" if poor > info.error_limit else "honest"
        )
        note = info.note.strip()
        if note:
            # The backend's note is a clause; here it follows a sentence of its own.
            note = " " + note[0].upper() + note[1:] + ("" if note.endswith(".") else ".")
        return (
            f"Calibration: the model's probabilities, checked on {info.reference_rows:,} rows "
            f"of {info.reference}, are {verdict} ({method}; limit {info.error_limit:g})." + note
        )


class PerformanceWindows(ReadOnlyTable):
    """Every window's numbers, newest first, each cell explained in its tooltip."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(WINDOW_COLUMNS, parent)
        self.setToolTip("Each window's predictions, labels and quality, newest first.")
        # Short numbers in every column: on a narrow screen the table scrolls sideways
        # rather than squeezing the last one, which fills what room is left on a wide one.
        header = self.horizontalHeader()
        header.setSectionResizeMode(
            len(WINDOW_COLUMNS) - 1, QHeaderView.ResizeMode.ResizeToContents
        )
        header.setStretchLastSection(True)

    def show_report(self, report: PerformanceReport) -> None:
        rows = []
        for window in reversed(report.windows):
            delay = window.label_delay
            start = window.start.astimezone().strftime("%d %b %H:%M")
            realized = metric_value(window.realized, report.metric)
            reason = next(
                (v.reason for v in window.realized if v.metric == report.metric and v.reason), ""
            )
            estimated = (
                metric_value(window.estimated.metrics, report.metric)
                if window.estimated.supported
                else None
            )
            rows.append(
                (
                    Cell(start + (" (so far)" if window.partial else "")),
                    Cell(f"{window.predictions:,}", right=True),
                    Cell(
                        f"{delay.labelled:,}"
                        + (f" ({delay.share:.0%})" if delay.share is not None else ""),
                        delay.explanation,
                        right=True,
                    ),
                    Cell(
                        f"{duration_text(delay.median_s)} / {duration_text(delay.p90_s)}",
                        delay.explanation,
                        right=True,
                    ),
                    Cell(
                        value_text(realized),
                        reason or "Measured on the labelled predictions.",
                        right=True,
                    ),
                    Cell(
                        value_text(estimated),
                        window.estimated.explanation
                        + (
                            " " + " ".join(window.estimated.warnings)
                            if window.estimated.warnings
                            else ""
                        ),
                        tone="" if window.estimated.trusted else "warn",
                        right=True,
                    ),
                    Cell(
                        _verdict_word(window),
                        window.verdict.explanation,
                        tone=_verdict_tone(window),
                    ),
                    *(_signal_cell(window.user_signals, kind) for kind in ("undo", "complaint")),
                )
            )
        self.set_rows(rows, [w.start.timestamp() for w in reversed(report.windows)])


def _signal_cell(signals: UserSignals, kind: str) -> Cell:
    """A user-signal count with its share of the answers, the interval in the tooltip."""
    rate = next((r for r in signals.rates if r.kind == kind), None)
    if rate is None or rate.rate.value is None:
        return Cell("", signals.explanation, right=True)
    low, high = rate.rate.low or 0.0, rate.rate.high or 0.0
    return Cell(
        f"{rate.signals:,} ({rate.rate.value:.1%})",
        f"{rate.signals:,} of {signals.predictions:,} answers; with 95% confidence the share "
        f"is between {low:.1%} and {high:.1%}. {signals.explanation}",
        right=True,
    )
