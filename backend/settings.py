"""One settings object for the whole backend, read from arguments and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "ServeDeck"


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    # How often the writer drains the prediction spool into the store (how far the log lags).
    log_flush_interval_s: float = 0.2
    # "never": an answered prediction survives a kill of any process (the kernel holds it);
    # "always": also a machine crash (each answer waits for the disk).
    log_fsync: str = "never"
    # Micro-batching: a batch is dispatched as soon as the model is idle, so a lone request
    # never waits; under load, requests that arrive while the model is busy share one call.
    max_batch_size: int = 64
    max_batch_wait_ms: float = 0.0
    max_request_bytes: int = 8 * 1024 * 1024
    # The drift file report's upload (two data files in one request): 1,000,000 rows x 20
    # columns is about 90 MB of Parquet per file.
    max_drift_upload_bytes: int = 512 * 1024 * 1024
    max_rows_per_request: int = 10_000
    # How long a resolved token stays cached on the request path: a token revoked by another
    # process (the command line, another worker) is refused at most this long afterwards.
    token_cache_ttl_s: float = 1.0
    # How often a worker re-reads which version is active (multi-worker switch latency).
    state_poll_interval_s: float = 0.5
    # How often a worker judges the running rollouts' checks (and moves them on).
    rollout_check_interval_s: float = 2.0
    # How often a worker judges the alert rules on its live statistics (error rate, latency,
    # ...): how soon an alert is raised, and a third of how long it stays after it cleared.
    alert_interval_s: float = 5.0
    # How often the rules on stored counts (drift, feedback loops, user signals) are judged:
    # each round reads an hour of counts per model, so not as often as the live rules.
    stored_rule_interval_s: float = 30.0
    # "off": a serving-only worker: no drift-window counting in the log writer, no Prometheus
    # counters, no drift alerts (the live statistics and the log stay). For measuring what
    # monitoring costs, or a worker that only answers.
    monitoring: str = "on"
    # How long the log writer keeps drift-window counts per minute and per hour (windows
    # older than the minutes kept are read in whole hours).
    drift_minute_retention_s: float = 2 * 86_400
    drift_hour_retention_s: float = 90 * 86_400
    # The held-out review queue (feedback/review.py): how long an example handed to a reviewer
    # stays theirs, and the share of examples handed to a second reviewer on purpose (kappa).
    review_lease_s: float = 300.0
    review_agreement_share: float = 0.1

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def spool_dir(self) -> Path:
        return self.data_dir / "spool"

    @property
    def admin_token_file(self) -> Path:
        return self.data_dir / "admin.token"

    @property
    def drift_gauge_file(self) -> Path:
        """The drift gauges the watcher process hands to the workers (see gauge_file)."""
        return self.data_dir / "drift-gauges.json"

    @property
    def server_info_file(self) -> Path:
        return self.data_dir / "server.json"

    @property
    def server_lock_file(self) -> Path:
        return self.data_dir / "server.lock"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def load(cls, data_dir: str | Path | None = None, database_url: str | None = None) -> Settings:
        """Arguments win over the environment, the environment over defaults."""
        resolved_dir = Path(
            data_dir or os.environ.get("SERVEDECK_DATA_DIR") or default_data_dir()
        ).expanduser()
        resolved_dir = resolved_dir.resolve()
        url = database_url or os.environ.get("SERVEDECK_DATABASE_URL")
        if not url:
            url = f"sqlite:///{resolved_dir / 'servedeck.db'}"
        overrides: dict[str, float | int | str] = {}
        for env_name, attr, cast in (
            ("SERVEDECK_LOG_FLUSH_INTERVAL", "log_flush_interval_s", float),
            ("SERVEDECK_MAX_BATCH_SIZE", "max_batch_size", int),
            ("SERVEDECK_MAX_BATCH_WAIT_MS", "max_batch_wait_ms", float),
            ("SERVEDECK_MAX_REQUEST_BYTES", "max_request_bytes", int),
            ("SERVEDECK_MAX_DRIFT_UPLOAD_BYTES", "max_drift_upload_bytes", int),
            ("SERVEDECK_STATE_POLL_INTERVAL", "state_poll_interval_s", float),
            ("SERVEDECK_ROLLOUT_CHECK_INTERVAL", "rollout_check_interval_s", float),
            ("SERVEDECK_ALERT_INTERVAL", "alert_interval_s", float),
            ("SERVEDECK_STORED_RULE_INTERVAL", "stored_rule_interval_s", float),
            ("SERVEDECK_LOG_FSYNC", "log_fsync", str),
            ("SERVEDECK_DRIFT_MINUTE_RETENTION", "drift_minute_retention_s", float),
            ("SERVEDECK_DRIFT_HOUR_RETENTION", "drift_hour_retention_s", float),
            ("SERVEDECK_MONITORING", "monitoring", str),
            ("SERVEDECK_REVIEW_LEASE", "review_lease_s", float),
            ("SERVEDECK_REVIEW_AGREEMENT_SHARE", "review_agreement_share", float),
        ):
            raw = os.environ.get(env_name)
            if raw:
                overrides[attr] = cast(raw)
        if overrides.get("monitoring", "on") not in ("on", "off"):
            raise ValueError(
                f"SERVEDECK_MONITORING must be 'on' or 'off', not {overrides['monitoring']!r}"
            )
        if not 0.0 <= float(overrides.get("review_agreement_share", 0.1)) <= 1.0:
            raise ValueError("SERVEDECK_REVIEW_AGREEMENT_SHARE is a share between 0 and 1")
        return cls(data_dir=resolved_dir, database_url=url, **overrides)  # type: ignore[arg-type]

    @property
    def monitoring_on(self) -> bool:
        return self.monitoring != "off"

    def ensure_dirs(self) -> None:
        """The data directory holds tokens, predictions and models: its owner's only (0700)."""
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        if self.data_dir.stat().st_uid == os.getuid():
            # A directory made before this rule, or by mkdir under a loose umask, is tightened.
            self.data_dir.chmod(0o700)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
