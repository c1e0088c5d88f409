"""The Feedback loops page's widgets, handed a report as the backend's wire types hold it: the
cards' statuses, colours and words, the charts' data and their empty states, and the held-out
control's request. No network: widgets only show (their page makes the calls)."""

from __future__ import annotations

import numpy as np
import pytest
from pytestqt.qtbot import QtBot

from backend.schemas.held_out import HeldOutRequest
from console.loop_words import comparison_text, gap_text, status_text
from console.resources import colour
from console.widgets.held_out_panel import NOT_ALLOWED, HeldOutPanel
from console.widgets.loop_cards import LoopCards
from console.widgets.loop_charts import LoopTrendChart, SliceBiasChart
from tests.console.loop_reports import WINDOWS, loop_report


def test_the_words_give_each_number_with_its_range() -> None:
    report = loop_report()
    assert comparison_text(report.outcome_rate_gap) == (
        "Fraud rate: held out 4.1% (3.2–5.0%) vs served 1.2% (1.0–1.4%)"
    )
    assert gap_text(report.outcome_rate_gap).startswith(
        "Served minus held out: -2.9 points (-3.9 to -1.9); warns from a gap of 5 points, "
        "alerts from 10 points"
    )
    assert "0.03 (0.01–0.05), where 0 is the same mix" in comparison_text(report.label_drift)
    assert status_text(report.outcome_rate_gap) == ("a feedback loop: act on it", "bad")
    assert status_text(report.performance_gap) == ("a loop may be forming: watch it", "warn")
    assert status_text(report.selective_labels) == ("not enough data yet", "muted")


def test_one_card_per_indicator_coloured_by_its_status(qtbot: QtBot) -> None:
    cards = LoopCards()
    qtbot.addWidget(cards)
    cards.resize(1200, 800)
    cards.show()
    cards.show_report(loop_report(), "version 1")
    assert "A feedback loop is shaping" in cards.headline.text()
    assert colour("bad") in cards.headline.text()
    tones = {name: card.tone for name, card in cards.cards.items()}
    assert tones == {
        "outcome_rate_gap": "bad",
        "performance_gap": "warn",
        "label_drift": "ok",
        "selective_labels": "muted",
        "prediction_bias": "ok",
        "exposure_concentration": "ok",
    }
    outcome = cards.cards["outcome_rate_gap"]
    assert colour("bad") in outcome.styleSheet()
    assert "Fraud rate: held out 4.1% (3.2–5.0%) vs served 1.2% (1.0–1.4%)" in (
        outcome.comparison.text()
    )
    assert "Blocked transactions never get a chargeback" in outcome.explanation.text()
    assert "12,000 served and 250 held-out predictions" in outcome.basis.text()
    # An indicator without enough data says so, and shows no gap it cannot judge.
    selective = cards.cards["selective_labels"]
    assert "Not enough data yet" in selective.status.text() and selective.gap.isHidden()
    # Per answer: how many predictions got a label, served against held out.
    assert selective.details.text().startswith(
        "Answered fraud: 3.0% (2.0–4.0%) of served vs 90.0% (85.0–95.0%) of held-out "
        "predictions got a label. 40% of the served labels (the retraining data) exist "
        "because of the model's own answer."
    )
    # The worst first, three columns at this width, one at a narrow one.
    assert cards.order[:2] == ["outcome_rate_gap", "performance_gap"]
    assert cards.order[-1] == "selective_labels"
    assert cards.grid.getItemPosition(cards.grid.indexOf(cards.cards["label_drift"]))[:2] == (0, 2)
    cards.resize(400, 800)
    qtbot.waitUntil(lambda: cards._columns == 1)


def test_the_trend_chart_draws_served_and_held_out_or_says_why_not(qtbot: QtBot) -> None:
    chart = LoopTrendChart((("Outcome rate", "outcome_rate_gap"), ("Label mix", "label_drift")), "")
    qtbot.addWidget(chart)
    chart.show_report(loop_report())
    assert chart.area.showing_chart
    assert len(chart.middles) == WINDOWS
    # Percent on the axis; a window without a value is a gap, never a zero.
    assert chart.served[:5] == pytest.approx([2.0, 1.8, 1.5, 1.3, 1.2])
    assert np.isnan(chart.served[5])
    assert chart.held_out[5] == pytest.approx(4.2)
    _x, y = chart.held_out_curve.getData()
    assert y is not None and y[-1] == pytest.approx(4.2)
    assert chart.plot.getAxis("left").labelText == "percent"
    assert chart.measure.text() == "Plotted: fraud rate."
    chart.choice.setCurrentIndex(1)  # label drift: no window has a value
    assert not chart.area.showing_chart
    assert "Nothing to draw for label drift yet" in chart.area.note.text()


def test_the_slice_chart_draws_each_slice_and_asks_for_another_feature(qtbot: QtBot) -> None:
    chart = SliceBiasChart()
    qtbot.addWidget(chart)
    chart.show_bias(loop_report().prediction_bias)
    assert chart.area.showing_chart
    assert chart.slices == ["<= 10", "> 10"]
    assert chart.served == pytest.approx([1.0, 3.0])
    assert chart.held_out == pytest.approx([0.0, -2.0])
    assert [chart.feature_choice.itemData(i) for i in range(2)] == ["amount", "age"]
    with qtbot.waitSignal(chart.feature_chosen) as chosen:
        chart.feature_choice.setCurrentIndex(1)
    assert chosen.args == ["age"]


def test_the_held_out_control_asks_for_the_share_with_its_reason(qtbot: QtBot) -> None:
    panel = HeldOutPanel()
    qtbot.addWidget(panel)
    panel.show()
    report = loop_report()
    panel.show_status(report.held_out, [(0, "legit"), (1, "fraud")])
    # Only a role that may change it sees the control.
    assert panel.not_allowed.isVisible() and panel.not_allowed.text() == NOT_ALLOWED
    assert not panel.editor.isVisible()
    panel.set_may_edit(True)
    assert panel.editor.isVisible()
    assert panel.policy.text() == (
        "2% of the entities are held out and answered by the declared default answer legit (0)."
    )
    assert "250 held-out requests (2.0% of 12,250) from 200 entities" in panel.coverage.text()
    # A reason first (it is audited); the policy kept, only the share changes.
    assert not panel.apply_button.isEnabled()
    panel.share.setValue(5.0)
    panel.reason.setText("more held-out labels")
    # The page's refresh brings the same status again: the edit in progress is kept.
    panel.show_status(report.held_out, [(0, "legit"), (1, "fraud")])
    assert panel.share.value() == 5.0
    with qtbot.waitSignal(panel.set_requested) as asked:
        panel.apply_button.click()
    request = asked.args[0]
    assert isinstance(request, HeldOutRequest)
    assert (request.share_percent, request.reason) == (5.0, "more held-out labels")
    assert request.policy == report.held_out.settings.policy  # type: ignore[union-attr]
    with qtbot.waitSignal(panel.stop_requested) as stopped:
        panel.stop_button.click()
    assert stopped.args == ["more held-out labels"]
