"""Drift of live traffic: a window (or a series of windows) of the counts the log writer keeps,
judged against the version's reference summary with the model's drift settings.

Nothing here reads the prediction log: a window costs the buckets it spans (predictions/
window_reads.py), and the report costs the bins of its features (report.py).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import DriftSettingsRow, ModelRow
from backend.errors import NotFound
from backend.monitoring.drift.references import ReferenceBook
from backend.monitoring.drift.report import drift_report
from backend.monitoring.drift.summaries import CurrentSummary
from backend.predictions.window_reads import WindowRead, read_series, read_window
from backend.schemas import (
    DriftReport,
    DriftSeries,
    DriftSettings,
    DriftTimings,
    FeatureDrift,
    FeaturePoint,
    SeriesWindow,
    WindowDrift,
)

# Below this many rows a window is not judged: every test's power is too low to say anything.
MIN_ROWS = 100


def _time(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def _point(entry: FeatureDrift) -> FeaturePoint:
    return FeaturePoint(statistic=entry.statistic, threshold=entry.threshold, drifted=entry.drifted)


class DriftWindows:
    def __init__(self, engine: Engine, sessions: sessionmaker[Session]):
        self.engine = engine
        self.sessions = sessions
        self.references = ReferenceBook(sessions)

    # ------------------------------------------------------------------ settings

    def settings(self, model: str) -> DriftSettings:
        """The model's drift settings (the defaults until someone stores their own)."""
        with self.sessions() as session:
            row = session.get(DriftSettingsRow, model)
            if row is None:
                return DriftSettings()
            return DriftSettings.model_validate(json.loads(row.settings))

    def store_settings(self, model: str, settings: DriftSettings, who: str) -> DriftSettings:
        with self.sessions.begin() as session:
            if session.scalar(select(ModelRow.id).where(ModelRow.name == model)) is None:
                raise NotFound(f"no model {model!r}", "model")
            row = session.get(DriftSettingsRow, model)
            text = settings.model_dump_json()
            if row is None:
                session.add(DriftSettingsRow(model=model, settings=text, updated_by=who))
            else:
                row.settings = text
                row.updated_by = who
                row.updated_at = datetime.now(UTC)
        return settings

    # ------------------------------------------------------------------ windows

    def window(
        self,
        model: str,
        serving_version: str | None,
        *,
        version: str | None,
        route: str | None,
        window_s: int,
        end: float | None = None,
        histograms: bool = False,
    ) -> WindowDrift:
        """The drift of [end - window_s, end) (end: now)."""
        started = time.perf_counter()
        stop = time.time() if end is None else end
        with self.engine.connect() as connection:
            read = read_window(connection, model, stop - window_s, stop, version, route)
        settings = self.settings(model)
        read_s = time.perf_counter() - started
        report, basis, source, note = self._judge(
            read, version, serving_version, settings, histograms
        )
        if report is not None:
            total_s = time.perf_counter() - started
            report.timings = DriftTimings(
                read_s=round(read_s, 4),
                score_s=round(total_s - read_s, 4),
                total_s=round(total_s, 4),
            )
        return WindowDrift(
            model=model,
            version=version,
            route=route,
            start=_time(read.start),
            end=_time(read.end),
            window_s=window_s,
            rows=read.rows,
            reference_version=basis,
            reference_source=source,
            report=report,
            note=note,
        )

    def series(
        self,
        model: str,
        serving_version: str | None,
        *,
        version: str | None,
        route: str | None,
        window_s: int,
        windows: int,
    ) -> DriftSeries:
        """``windows`` windows of ``window_s`` ending now, oldest first, scores only."""
        with self.engine.connect() as connection:
            reads = read_series(connection, model, windows, window_s, version, route)
        settings = self.settings(model)
        points = []
        for read in reads:
            report, *_ = self._judge(read, version, serving_version, settings, False)
            if report is None:
                points.append(
                    SeriesWindow(
                        start=_time(read.start),
                        end=_time(read.end),
                        rows=read.rows,
                        dataset_drift=None,
                        drifted_share=None,
                    )
                )
                continue
            points.append(
                SeriesWindow(
                    start=_time(read.start),
                    end=_time(read.end),
                    rows=read.rows,
                    dataset_drift=report.dataset_drift,
                    drifted_share=report.drifted_share,
                    features={entry.name: _point(entry) for entry in report.features},
                    predictions={entry.name: _point(entry) for entry in report.predictions},
                )
            )
        return DriftSeries(
            model=model,
            version=version,
            route=route,
            window_s=window_s,
            min_rows=MIN_ROWS,
            windows=points,
        )

    def _judge(
        self,
        read: WindowRead,
        version: str | None,
        serving_version: str | None,
        settings: DriftSettings,
        histograms: bool,
    ) -> tuple[DriftReport | None, str | None, str | None, str]:
        """(the report or None, the reference's version, its source, a note in words)."""
        basis = version or read.basis_version or serving_version
        if basis is None:
            return None, None, None, "No version serves this model yet: nothing to compare."
        try:
            reference, source = self.references.get(read.model, basis)
        except NotFound as exc:
            return None, basis, None, exc.reason
        if read.rows < MIN_ROWS:
            return (
                None,
                basis,
                source,
                f"{read.rows} predictions in this window; drift is judged from {MIN_ROWS} on "
                "(fewer say too little either way). Choose a longer window or wait for traffic.",
            )
        current = CurrentSummary.from_json(read.summary)
        skipped = {
            name: "counted on other bins by version(s) " + ", ".join(versions)
            for name, versions in read.skipped.items()
            if versions
        }
        # The asymptotic KS p-value (ks_2samp's "asymp"): the exact one costs ~n·m per feature.
        report = drift_report(
            reference, current, settings, include_histograms=histograms, exact_ks_max_n=0
        )
        return report, basis, source, _versions_note(read, skipped)


def _versions_note(read: WindowRead, skipped: dict[str, str]) -> str:
    if len(read.rows_by_version) <= 1 or not skipped:
        return ""
    return (
        "Several versions answered in this window; numerical features are compared only over "
        f"the predictions of version {read.basis_version} and those binned like it ("
        + "; ".join(f"{name}: {why}" for name, why in sorted(skipped.items()))
        + "). Choose one version for an exact comparison."
    )
