"""A model's health at a glance, from what the backend answers: the Overview card's rows.

Plain Python (no Qt, no network): the Overview page reads a ``ModelSnapshot`` through the
client in a background task and turns it into indicator rows and one sentence here.

The latency and error-rate bands below are the console's own reading until the backend's
alert rules publish theirs: the error-rate band starts at the rollout checks' default
(``RolloutChecks.max_error_rate``, 1%); the latency band is wide on purpose (a model served
in process answers in milliseconds; a quarter of a second at p99 is worth a look).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backend.schemas import (
    Alert,
    LiveSeries,
    ModelInfo,
    PerformanceReport,
    RolloutChecks,
    RolloutStatus,
    WindowDrift,
)
from console.widgets.common import number_text
from console.widgets.model_card import Indicator, Status

# Seconds of one-second buckets the traffic, latency and error figures are read over.
RECENT_S = 60
P99_WARNING_MS = 250.0
P99_CRITICAL_MS = 1000.0
ERROR_RATE_WARNING = RolloutChecks().max_error_rate
ERROR_RATE_CRITICAL = 0.05


@dataclass
class ModelSnapshot:
    model: ModelInfo
    series: LiveSeries | None = None
    rollout: RolloutStatus | None = None
    alerts: list[Alert] = field(default_factory=list)  # its active alerts
    # The last quarter hour's drift (None: not read, or the token may not read it).
    drift: WindowDrift | None = None
    # The serving version's newest hour of quality (None: not read, or not allowed).
    performance: PerformanceReport | None = None


@dataclass(frozen=True)
class Traffic:
    seconds: int  # how many seconds the figures cover (0: no statistics yet)
    answered: int
    failed: int
    refused: int
    p99_ms: float | None  # the slowest second's p99 (None: no answers)

    @property
    def rate(self) -> float:
        return self.answered / self.seconds if self.seconds else 0.0

    @property
    def error_rate(self) -> float | None:
        total = self.answered + self.failed
        return self.failed / total if total else None


def traffic(series: LiveSeries | None) -> Traffic:
    if series is None or not series.starts:
        return Traffic(0, 0, 0, 0, None)
    p99s = [value for value in series.latency_p99_ms if value is not None]
    return Traffic(
        seconds=len(series.starts) * series.resolution_s,
        answered=sum(series.requests),
        failed=sum(series.failed),
        refused=sum(series.refused),
        # The buckets keep percentiles, not the histograms behind them: the slowest second's
        # p99 is an upper bound of the minute's, and errs on the side of looking.
        p99_ms=max(p99s) if p99s else None,
    )


def ms_text(ms: float) -> str:
    """A latency to the precision people compare: 0.42 ms, 4.2 ms, 289 ms."""
    return f"{ms:.2g} ms" if ms < 1 else f"{ms:.1f} ms" if ms < 10 else f"{ms:,.0f} ms"


def rate_text(rate: float) -> str:
    return f"{rate:.1f} requests/s" if 0 < rate < 10 else f"{rate:,.0f} requests/s"


def indicators(snapshot: ModelSnapshot) -> list[Indicator]:
    """The card's rows, in reading order; adding an indicator is one more entry here."""
    seen = traffic(snapshot.series)
    return [
        _serving(snapshot),
        _traffic(seen),
        _latency(seen),
        _errors(seen),
        _alerts(snapshot.alerts),
        _quality(snapshot),
        _drift(snapshot.drift),
    ]


def summary(snapshot: ModelSnapshot) -> str:
    """One sentence: "Serving v2 to all traffic; 12 requests/s, p99 4 ms, no errors, no open
    alerts." """
    model = snapshot.model
    rollout = model.rollout
    if model.active_version is None:
        head = "Not serving: no version is deployed"
    elif rollout is not None and rollout.phase == "shadow":
        head = (
            f"Serving v{model.active_version} to all traffic; v{rollout.candidate} scores in "
            "its shadow"
        )
    elif rollout is not None:
        head = (
            f"Serving v{model.active_version}; v{rollout.candidate} answers "
            f"{number_text(rollout.percent)}% of traffic"
        )
    else:
        head = f"Serving v{model.active_version} to all traffic"
    seen = traffic(snapshot.series)
    if seen.seconds == 0 or seen.answered + seen.failed == 0:
        parts = ["no traffic in the last minute"]
    else:
        parts = [rate_text(seen.rate)]
        if seen.p99_ms is not None:
            parts.append(f"p99 {ms_text(seen.p99_ms)}")
        parts.append("no errors" if not seen.failed else f"{seen.failed:,} failed ({_share(seen)})")
    unowned = [alert for alert in snapshot.alerts if alert.status == "open"]
    parts.append(
        "no open alerts"
        if not unowned
        else f"{len(unowned)} open alert{'s' if len(unowned) != 1 else ''}"
    )
    return f"{head}; {', '.join(parts)}."


# ---------------------------------------------------------------- rows


def _serving(snapshot: ModelSnapshot) -> Indicator:
    model = snapshot.model
    rollout = model.rollout
    if model.active_version is None:
        return Indicator(
            "Version serving",
            "none",
            "critical",
            "No version of this model is deployed: requests to it are refused. Deploy a "
            "version on the Deployments page.",
            "deploy",
        )
    if rollout is None:
        return Indicator(
            "Version serving",
            f"v{model.active_version}",
            "ok",
            f"Version {model.active_version} answers every request; no rollout is running.",
            "deploy",
        )
    stage = (
        "shadow (scores, does not answer)"
        if rollout.phase == "shadow"
        else f"{number_text(rollout.percent)}% of traffic"
    )
    verdict = snapshot.rollout.detail if snapshot.rollout is not None else ""
    status: Status = "warning" if rollout.paused else "ok"
    paused = " The rollout is paused: resume or abort it." if rollout.paused else ""
    return Indicator(
        "Version serving",
        f"v{model.active_version} → v{rollout.candidate}: {stage}",
        status,
        f"Version {model.active_version} serves while version {rollout.candidate} is rolled "
        f"out step by step.{paused} {verdict}".strip(),
        "deploy",
    )


def _traffic(seen: Traffic) -> Indicator:
    if seen.seconds == 0:
        return Indicator(
            "Traffic",
            "no statistics yet",
            "unknown",
            "Requests per second over the last minute. The backend has no statistics yet "
            "(it started moments ago).",
            "live",
        )
    refused = (
        f" {seen.refused:,} requests were refused (bad input or no permission: the callers' "
        "side) and are not counted."
        if seen.refused
        else ""
    )
    return Indicator(
        "Traffic",
        rate_text(seen.rate),
        "ok" if seen.answered else "unknown",
        f"Requests answered per second over the last {seen.seconds} s.{refused}"
        + ("" if seen.answered else " None arrived: check that clients are sending."),
        "live",
    )


def _latency(seen: Traffic) -> Indicator:
    if seen.p99_ms is None:
        return Indicator(
            "Latency p99",
            "no answers",
            "unknown",
            "How long the slowest 1% of answers took; measured once requests arrive.",
            "live",
        )
    p99 = seen.p99_ms
    status: Status = (
        "critical" if p99 > P99_CRITICAL_MS else "warning" if p99 > P99_WARNING_MS else "ok"
    )
    advice = {
        "ok": "Fine.",
        "warning": "Slower than usual for an in-process model: look at the Live page's "
        "latency chart for when it started.",
        "critical": "Callers are likely timing out: look at the Live page and the host's load; "
        "roll back if a new version is the cause.",
    }[status]
    return Indicator(
        "Latency p99",
        ms_text(p99),
        status,
        f"99 of 100 answers in the slowest second of the last minute took at most "
        f"{ms_text(p99)} (amber above {number_text(P99_WARNING_MS)} ms, red above "
        f"{number_text(P99_CRITICAL_MS)} ms). {advice}",
        "live",
    )


def _errors(seen: Traffic) -> Indicator:
    rate = seen.error_rate
    if rate is None:
        return Indicator(
            "Error rate",
            "no requests",
            "unknown",
            "The share of requests the backend failed to answer; measured once requests arrive.",
            "live",
        )
    status: Status = (
        "critical"
        if rate > ERROR_RATE_CRITICAL
        else "warning"
        if rate > ERROR_RATE_WARNING
        else "ok"
    )
    advice = (
        "None failed."
        if not seen.failed
        else "The model or the server failed on these requests (not the callers' input): "
        "look at the Live page for when it started and at the server's log."
    )
    return Indicator(
        "Error rate",
        _share(seen),
        status,
        f"{seen.failed:,} of {seen.answered + seen.failed:,} requests failed in the last "
        f"{seen.seconds} s (amber above {ERROR_RATE_WARNING:.0%}, red above "
        f"{ERROR_RATE_CRITICAL:.0%}). {advice}",
        "live",
    )


def _share(seen: Traffic) -> str:
    rate = seen.error_rate or 0.0
    return "0%" if not seen.failed else f"{rate:.2%}" if rate < 0.1 else f"{rate:.0%}"


def _alerts(alerts: list[Alert]) -> Indicator:
    unowned = [alert for alert in alerts if alert.status == "open"]
    owned = len(alerts) - len(unowned)
    if not alerts:
        return Indicator(
            "Open alerts",
            "none",
            "ok",
            "No check has found anything wrong with this model.",
            "alerts",
        )
    status: Status = (
        "critical"
        if any(alert.severity == "critical" for alert in unowned)
        else "warning"
        if unowned
        else "ok"
    )
    value = f"{len(unowned)} open" + (f", {owned} acknowledged" if owned else "")
    newest = max(alerts, key=lambda alert: alert.id)
    action = (
        "Open the Alerts page to read what they mean and acknowledge the ones you take on."
        if unowned
        else "Someone owns each of them."
    )
    return Indicator(
        "Open alerts",
        value,
        status,
        f"Newest: {newest.title}. {action}",
        "alerts",
    )


def _quality(snapshot: ModelSnapshot) -> Indicator:
    model = snapshot.model
    version = next((v for v in model.versions if v.version == model.active_version), None)
    if version is None:
        return Indicator(
            "Quality",
            "no version serving",
            "unknown",
            "Quality is judged on the serving version.",
            "deploy",
        )
    validity = version.validity
    low, high = validity.acceptable_range
    bounds = f"{number_text(low)} to {number_text(high)}"
    checks = snapshot.rollout.checks if snapshot.rollout else []
    check = next((c for c in checks if c.name == "live_metric"), None)
    if check is not None and check.value is not None:
        status: Status = (
            "ok" if check.passed else "critical" if check.passed is False else "unknown"
        )
        return Indicator(
            f"Quality ({validity.metric})",
            f"{number_text(round(check.value, 4))} (range {bounds})",
            status,
            f"The live {validity.metric} measured for the rollout; its checks accept {bounds}. "
            f"{check.detail}",
            "deploy",
        )
    report = snapshot.performance
    verdict = report.windows[-1].verdict if report is not None and report.windows else None
    if verdict is not None and verdict.value is not None:
        judged: Status = (
            "ok" if verdict.in_range else "critical" if verdict.in_range is False else "unknown"
        )
        how = "measured from labels" if verdict.source == "realized" else "estimated"
        return Indicator(
            f"Quality ({validity.metric})",
            f"{number_text(round(verdict.value, 4))} {how} (range {bounds})",
            judged,
            verdict.explanation,
            "performance",
        )
    return Indicator(
        f"Quality ({validity.metric})",
        f"range {bounds}",
        "unknown",
        (verdict.explanation + " " if verdict is not None else "")
        + f"Version {version.version} was accepted with a {validity.metric} between {bounds}. "
        "Its live value needs the true outcomes (labels) of its answers, or a trusted estimate; "
        "when it leaves this range an alert is raised and shows in this card.",
        "performance",
    )


def _drift(window: WindowDrift | None) -> Indicator:
    if window is None or window.report is None:
        note = (
            window.note if window is not None else "Not read (this token may not, or no traffic)."
        )
        return Indicator("Drift", "not judged", "unknown", note, "drift")
    report = window.report
    drifted = [f.name for f in report.features if f.drifted]
    outputs = [f.name for f in report.predictions if f.drifted]
    minutes = max(1, round(window.window_s / 60))
    if not drifted and not outputs:
        return Indicator(
            "Drift",
            "none",
            "ok",
            f"In the last {minutes} min ({window.rows:,} predictions) the inputs and answers look "
            "like the data the model was trained on.",
            "drift",
        )
    status: Status = "critical" if report.dataset_drift else "warning"
    shown = ", ".join(drifted[:3]) + (f" +{len(drifted) - 3}" if len(drifted) > 3 else "")
    value = (
        f"{len(drifted)} of {report.tested_features} inputs ({shown})"
        if drifted
        else "answers only"
    )
    return Indicator(
        "Drift",
        value,
        status,
        f"{report.summary} Open the Drift page to see how each feature moved and what to check.",
        "drift",
    )
