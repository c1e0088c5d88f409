"""Live demo traffic: real HTTP requests to a running server, with late-arriving labels.

Transactions come from the same generator as the training history (same card holders, a
different seed) and their features are computed online, one event at a time, by the same
`FraudFeatureState` that built the training frame. The stream's clock is simulated: it
advances by the generator's own inter-arrival times, not by wall time, so the live feature
distribution matches training (one simulated day passes in ~30 s at 20 requests/s).

Labels are sent `label_delay` seconds after each prediction, like chargebacks that arrive
after the fact, in one bulk feedback request per second.

With `feedback_loop`, the labels behave as in a real card-fraud loop: a transaction the model
blocks (answers fraud, on traffic it serves) never gets a chargeback, so it gets no label;
those it lets through get theirs with the true rate, and held-out transactions (answered by
the no-model policy) get a label whatever the model thought. The feedback-loop indicators
compare the two.
"""

from __future__ import annotations

import contextlib
import logging
import math
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import requests

from backend.demo.data import (
    DAY_S,
    TRAINING_START,
    TransactionStream,
    demo_population,
    generate_rides,
    plain_records,
)
from backend.features.fraud import NO_PRIOR_TXN_S, FraudFeatureState

log = logging.getLogger(__name__)

FRAUD_PATH = "/v1/models/fraud:predict"
RIDE_PRICE_PATH = "/v1/models/ride-price:predict"
FEEDBACK_PATH = "/api/v1/feedback"

RIDE_PRICE_SHARE = 0.10
LABEL_FLUSH_INTERVAL_S = 1.0
PROGRESS_INTERVAL_S = 10.0
# Further behind schedule than this, the sender skips the backlog rather than bursting it
# out (a burst after a stall would be traffic nobody asked for), and reports falling behind.
MAX_LAG_S = 1.0
MAX_LABELS_PER_POST = 5_000
# Labels kept for retry while the server is unreachable; older ones are dropped beyond this.
MAX_PENDING_LABELS = 200_000
# Live traffic continues the training calendar; unsent history first fills the per-user and
# per-card state, as far back as the longest look-back of any feature (the 30-day "time since
# the card's last transaction"), so live features start from the state training saw.
LIVE_START = TRAINING_START + 60 * DAY_S
WARMUP_DAYS = NO_PRIOR_TXN_S / DAY_S
# Back-off while the server is unreachable: 0.25 s doubling to at most 5 s.
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0, 5.0)
_TIMEOUT = (3.05, 10.0)  # (connect, read) seconds
_RIDE_CHUNK = 256


@dataclass
class SimulationStats:
    target_rate: float
    sent: int = 0
    ok: int = 0
    # HTTP status ("422", "503", ...) or "connection", "timeout", "bad_response" -> count
    errors: dict[str, int] = field(default_factory=dict)
    sent_by_model: dict[str, int] = field(default_factory=dict)
    fraud_flagged: int = 0
    labels_posted: int = 0
    labels_rejected: int = 0
    labels_unmatched: int = 0
    labels_unposted: int = 0
    # With feedback_loop: labels never sent because the model blocked the transaction.
    labels_withheld: int = 0
    held_out: int = 0
    elapsed_s: float = 0.0
    achieved_rate: float = 0.0
    mean_latency_ms: float = 0.0
    # False when the sender could not send as fast as asked (see `note`).
    kept_up: bool = True
    skipped_backlog_s: float = 0.0
    drift_started_s: float | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _PendingLabel:
    due: float  # time.monotonic() at which the label "arrives"
    request_id: str
    label: Any
    # Named in the feedback: the label may arrive before its prediction is in the log.
    model: str


class DemoTraffic:
    """The demo's prediction requests, in order: what the simulator sends, and what load
    tests replay. Deterministic for a seed; ``drift`` switches to the drifted distribution."""

    def __init__(self, seed: int):
        self.seed = seed
        self.rng = np.random.default_rng([seed, 101])
        self.stream = TransactionStream(
            demo_population(),
            seed=[seed, 100],
            start=LIVE_START - WARMUP_DAYS * DAY_S,
            id_prefix="live-",
        )
        self.state = FraudFeatureState()
        for event in self.stream.until(LIVE_START):
            self.state.observe(event)
        self.rides: deque[tuple[dict[str, Any], float]] = deque()
        self.ride_chunks = 0

    def start_drift(self) -> None:
        self.stream.drift = 1.0
        self.rides.clear()  # rides generated before the switch are undrifted

    def next_request(self) -> tuple[str, str, dict[str, Any], Any]:
        """(model, path, JSON body, the true label that arrives later) of the next request."""
        if self.rng.random() < RIDE_PRICE_SHARE:
            row, label = self._next_ride()
            return "ride-price", RIDE_PRICE_PATH, {"instances": [row]}, label
        event = next(self.stream)
        body = {"instances": [self.state.process(event)], "entity_id": event.card_id}
        return "fraud", FRAUD_PATH, body, event.is_fraud

    def _next_ride(self) -> tuple[dict[str, Any], float]:
        if not self.rides:
            self.ride_chunks += 1
            frame, target = generate_rides(
                _RIDE_CHUNK, seed=[self.seed, 102, self.ride_chunks], drift=self.stream.drift
            )
            self.rides.extend(zip(plain_records(frame), target.tolist(), strict=True))
        return self.rides.popleft()


class _Simulator:
    def __init__(
        self,
        base_url: str,
        token: str,
        rate: float,
        duration: float | None,
        drift_at: float | None,
        label_delay: float,
        seed: int,
        stop_event: threading.Event,
        feedback_loop: bool = False,
        session: Any = None,
    ):
        self.base_url = base_url.rstrip("/")
        self.feedback_loop = feedback_loop
        self.rate = rate
        self.duration = duration
        self.drift_at = drift_at
        self.label_delay = label_delay
        self.stop = stop_event
        self.stats = SimulationStats(target_rate=rate)
        # A requests.Session, or anything that posts like one (a test client of the app).
        self.session = requests.Session() if session is None else session
        self.session.headers["Authorization"] = f"Bearer {token}"
        self.traffic = DemoTraffic(seed)
        self.labels: deque[_PendingLabel] = deque()
        self.errors: Counter[str] = Counter()
        self.latency_total_s = 0.0
        self.failures_in_a_row = 0
        self.reported_statuses: set[str] = set()

    # ------------------------------------------------------------------ main loop

    def run(self) -> SimulationStats:
        start = time.monotonic()
        try:
            try:
                self._loop(start)
            except KeyboardInterrupt:
                # Ctrl-C in a foreground `simulate` is the normal way to stop: report, not crash.
                log.info("simulator: interrupted")
            # Labels still waiting for their delay are sent now rather than lost: otherwise
            # the last `label_delay` seconds of every run would stay unlabelled.
            self._post_labels(math.inf)
        finally:
            self.session.close()
        return self._finish(time.monotonic() - start)

    def _loop(self, start: float) -> None:
        interval = 1.0 / self.rate
        end = math.inf if self.duration is None else start + self.duration
        # Each send is scheduled at start + k * interval (not "sleep interval after the last
        # one"), so request latency and timer slack do not accumulate into a lower rate.
        next_send = start
        next_flush = start + LABEL_FLUSH_INTERVAL_S
        next_progress = start + PROGRESS_INTERVAL_S
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= end:
                return
            if (
                self.drift_at is not None
                and self.stats.drift_started_s is None
                and now - start >= self.drift_at
            ):
                self.traffic.start_drift()
                self.stats.drift_started_s = round(now - start, 2)
                log.info("simulator: drift on (larger amounts, travel, quiet fraud)")
            if now >= next_flush:
                self._post_labels(now)
                next_flush = now + LABEL_FLUSH_INTERVAL_S
            if now >= next_progress:
                self._log_progress(now - start)
                next_progress = now + PROGRESS_INTERVAL_S
            if now < next_send:
                self.stop.wait(min(next_send, next_flush, next_progress, end) - now)
                continue
            lag = now - next_send
            if lag > MAX_LAG_S:
                self._fell_behind(lag)
                next_send = now
            if self._send_one():
                next_send += interval
            else:
                # Server unreachable: back off, then resume the schedule from now.
                step = min(self.failures_in_a_row, len(_BACKOFF_S)) - 1
                self.stop.wait(_BACKOFF_S[step])
                next_send = time.monotonic()

    def _send_one(self) -> bool:
        """Send one prediction request; False only when the server could not be reached."""
        model, path, body, label = self.traffic.next_request()
        self.stats.sent += 1
        self.stats.sent_by_model[model] = self.stats.sent_by_model.get(model, 0) + 1
        began = time.monotonic()
        try:
            response = self.session.post(self.base_url + path, json=body, timeout=_TIMEOUT)
        except requests.ConnectTimeout as exc:
            # A subclass of Timeout, but it means unreachable, not slow: back off.
            self.failures_in_a_row += 1
            self._error("connection", str(exc))
            return False
        except requests.Timeout:
            self._error("timeout", "no answer in time")
            return True  # reachable but slow: keep the pace, do not back off
        except requests.RequestException as exc:
            self.failures_in_a_row += 1
            self._error("connection", str(exc))
            return False
        self.failures_in_a_row = 0
        self.latency_total_s += time.monotonic() - began
        self._take_answer(model, label, response)
        return True

    def _take_answer(self, model: str, label: Any, response: Any) -> None:
        """Count the answer and keep its label for later (none for a blocked transaction in
        a feedback loop)."""
        if response.status_code != 200:
            self._error(str(response.status_code), response.text[:300])
            return
        try:
            answer = response.json()
            request_id = str(answer["request_id"])
            prediction = answer["predictions"][0]["prediction"]
        except (ValueError, KeyError, IndexError, TypeError):
            self._error("bad_response", response.text[:300])
            return
        self.stats.ok += 1
        held_out = answer.get("route") == "held_out"
        self.stats.held_out += held_out
        if model == "fraud" and prediction == 1:
            self.stats.fraud_flagged += 1
            if self.feedback_loop and not held_out:
                # Blocked by the model: no chargeback can ever come.
                self.stats.labels_withheld += 1
                return
        self.labels.append(
            _PendingLabel(time.monotonic() + self.label_delay, request_id, label, model)
        )
        if len(self.labels) > MAX_PENDING_LABELS:
            self.labels.popleft()
            self.stats.labels_unposted += 1

    # ------------------------------------------------------------------ labels

    def _post_labels(self, now: float) -> None:
        """Post every label that is due (all of them when `now` is inf), in bulk."""
        while self.labels and self.labels[0].due <= now:
            batch: list[_PendingLabel] = []
            while self.labels and self.labels[0].due <= now and len(batch) < MAX_LABELS_PER_POST:
                batch.append(self.labels.popleft())
            body = {
                "labels": [
                    {
                        "request_id": item.request_id,
                        "row": 0,
                        "label": item.label,
                        "model": item.model,
                    }
                    for item in batch
                ]
            }
            try:
                response = self.session.post(
                    self.base_url + FEEDBACK_PATH, json=body, timeout=_TIMEOUT
                )
            except requests.RequestException as exc:
                # Keep them for the next flush: the server may be back by then.
                self.labels.extendleft(reversed(batch))
                self._note_once("labels", f"could not post labels: {exc}")
                return
            if response.status_code >= 500:
                self.labels.extendleft(reversed(batch))
                self._note_once("labels5xx", f"labels refused ({response.status_code})")
                return
            if response.status_code != 200:
                # A client error will not go away by retrying the same labels.
                self.stats.labels_rejected += len(batch)
                self._note_once(
                    f"labels{response.status_code}",
                    f"labels rejected ({response.status_code}): {response.text[:300]}",
                )
                continue
            self.stats.labels_posted += len(batch)
            # Labels for predictions not (yet) in the log are kept by the server; say how many.
            with contextlib.suppress(ValueError, AttributeError):
                self.stats.labels_unmatched += int(response.json().get("unmatched", 0))

    # ------------------------------------------------------------------ reporting

    def _error(self, key: str, detail: str) -> None:
        self.errors[key] += 1
        self._note_once(key, f"request failed ({key}): {detail}")

    def _note_once(self, key: str, message: str) -> None:
        # One warning per kind of failure: a wrong token would otherwise log at full rate.
        if key not in self.reported_statuses:
            self.reported_statuses.add(key)
            log.warning("simulator: %s", message)

    def _fell_behind(self, lag: float) -> None:
        if self.stats.kept_up:
            log.warning(
                "simulator: cannot keep up with %.1f requests/s (%.1f s behind); skipping the "
                "backlog",
                self.rate,
                lag,
            )
        self.stats.kept_up = False
        self.stats.skipped_backlog_s += lag

    def _log_progress(self, elapsed: float) -> None:
        stats = self.stats
        errors = ", ".join(f"{k}: {v}" for k, v in sorted(self.errors.items())) or "none"
        log.info(
            "simulator: %.0f s, %d sent (%.1f/s of %.1f), %d ok, errors %s, %d labels posted%s",
            elapsed,
            stats.sent,
            stats.sent / elapsed if elapsed > 0 else 0.0,
            self.rate,
            stats.ok,
            errors,
            stats.labels_posted,
            ", drifted" if stats.drift_started_s is not None else "",
        )

    def _finish(self, elapsed: float) -> SimulationStats:
        stats = self.stats
        stats.errors = dict(self.errors)
        stats.elapsed_s = round(elapsed, 3)
        stats.achieved_rate = round(stats.sent / elapsed, 2) if elapsed > 0 else 0.0
        answered = stats.sent - self.errors["connection"] - self.errors["timeout"]
        if answered > 0:
            stats.mean_latency_ms = round(1000 * self.latency_total_s / answered, 2)
        stats.labels_unposted += len(self.labels)
        if not stats.kept_up:
            stats.note = (
                f"could not keep up with {self.rate:g} requests/s: fell behind by "
                f"{stats.skipped_backlog_s:.1f} s in total, at {stats.mean_latency_ms:g} ms "
                "per request; lower the rate or run several simulators"
            )
        log.info(
            "simulator: done: %d sent in %.1f s (%.1f/s), %d ok, %d labels posted",
            stats.sent,
            elapsed,
            stats.achieved_rate,
            stats.ok,
            stats.labels_posted,
        )
        return stats


def run_simulator(
    base_url: str,
    token: str,
    rate: float,
    duration: float | None = None,
    drift_at: float | None = None,
    label_delay: float = 5.0,
    seed: int = 0,
    stop_event: threading.Event | None = None,
    feedback_loop: bool = False,
) -> SimulationStats:
    """Send fraud (~90%) and ride-price (~10%) predictions at `rate` requests/s, with labels
    (with `feedback_loop`: none for the transactions the model blocked, see the module).

    Runs until `duration` seconds have passed or `stop_event` is set (forever if neither).
    After `drift_at` seconds the generator switches to the drifted distribution. Connection
    errors are counted and backed off from, never raised. Blocks; run it in a thread to keep
    going alongside something else.
    """
    if not rate > 0:
        raise ValueError(f"rate must be a positive number of requests/s, got {rate!r}")
    if label_delay < 0:
        raise ValueError(f"label_delay must not be negative, got {label_delay!r}")
    simulator = _Simulator(
        base_url,
        token,
        rate,
        duration,
        drift_at,
        label_delay,
        seed,
        stop_event or threading.Event(),
        feedback_loop,
    )
    return simulator.run()


def send_requests(
    session: Any,
    token: str,
    count: int,
    *,
    seed: int = 0,
    feedback_loop: bool = False,
    concurrency: int = 8,
) -> SimulationStats:
    """The simulator's first ``count`` requests, then all their labels, without its clock:
    the same traffic, answers and labelling as ``run_simulator``, sent ``concurrency`` at a
    time (the server batches them) and taken in order. ``session``: a requests.Session whose
    URLs are relative to a server, or a test client of the app (tests drive the demo so)."""
    simulator = _Simulator(
        "", token, 1.0, None, None, 0.0, seed, threading.Event(), feedback_loop, session
    )
    planned = [simulator.traffic.next_request() for _ in range(count)]
    start = time.monotonic()

    def post(request: tuple[str, str, dict[str, Any], Any]) -> Any:
        return session.post(request[1], json=request[2])

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for (model, _path, _body, label), response in zip(
            planned, pool.map(post, planned), strict=True
        ):
            simulator.stats.sent += 1
            simulator.stats.sent_by_model[model] = simulator.stats.sent_by_model.get(model, 0) + 1
            simulator._take_answer(model, label, response)
    simulator._post_labels(math.inf)
    return simulator._finish(time.monotonic() - start)
