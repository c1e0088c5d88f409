"""Serving: which version answers, loading it once, and the validated, logged predict call."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from backend.auth.tokens import Principal, check_constraints, require
from backend.deploy.observe import CandidateFailures, step_key
from backend.errors import NotFound, ServeDeckError
from backend.monitoring.feed import MAX_ROWS_PER_REQUEST, PredictionFeed
from backend.monitoring.live_stats import LiveStats
from backend.predictions.log import PredictionLog
from backend.predictions.rows import log_row
from backend.predictions.spool import SpoolWriteError
from backend.registry import LoadedVersion, Prediction, Registry, parse_version
from backend.schemas import RolloutState
from backend.serving.batcher import MicroBatcher
from backend.serving.request_ids import new_request_id
from backend.serving.routing import ModelRouting, goes_to_canary
from backend.settings import Settings

log = logging.getLogger(__name__)


# A candidate slower than the traffic would pile up shadow calls on the model thread the
# callers' answers need: beyond this many in flight, requests are not shadowed.
MAX_SHADOWS_IN_FLIGHT = 64
# A request that seems alone still yields one turn of the loop now and then, so that a crowd
# arriving is seen (tasks that arrived with it only start when it yields); otherwise requests
# coming one at a time skip that turn (an extra system call, ~5% of a cheap model's request).
# Requests count as one at a time this long after two last overlapped.
CROWD_MEMORY_S = 1.0
CROWD_CHECK_INTERVAL_S = 0.01


@dataclass(frozen=True)
class Target:
    """Which version answers a request, resolved once so that decoding, validation and the
    prediction all use the same version even if the active one changes meanwhile."""

    model: str
    version: str
    route: str
    batcher: MicroBatcher
    # The rollout candidate scoring the same request unseen (shadow phase), or None.
    shadow: MicroBatcher | None = None

    @property
    def loaded(self) -> LoadedVersion:
        return self.batcher.loaded


@dataclass
class ServeResult:
    request_id: str
    model: str
    version: str
    route: str
    prediction: Prediction
    latency_ms: float


class ServingService:
    def __init__(self, settings: Settings, registry: Registry, prediction_log: PredictionLog):
        self.settings = settings
        self.registry = registry
        self.prediction_log = prediction_log
        self.feed = PredictionFeed()
        self.live_stats = LiveStats()
        # One model thread: sklearn calls hold the GIL for most of their time, so more threads
        # would only contend; batching is what raises throughput.
        self._model_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        self._load_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="load")
        self._batchers: dict[tuple[str, str], MicroBatcher] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[MicroBatcher]] = {}
        self._routing: dict[str, ModelRouting] = {}
        # Versions that served before the current one, per model: kept loaded so that a
        # rollback switches at once instead of loading first.
        self._previous: dict[str, str] = {}
        # Shadow predictions in flight: held so they are not garbage-collected mid-way.
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        self._refreshing = asyncio.Lock()
        self._rollouts: set[str] = set()
        # Calls to a rollout candidate and how many failed, per model and rollout step.
        self.candidate_failures = CandidateFailures()
        self._poll_task: asyncio.Task[None] | None = None
        # HTTP requests being handled right now, kept by the API's InFlightCounter: when a
        # request is alone, there is nothing to batch it with.
        self.http_in_flight = 0
        # When two requests were last handled at once (monotonic seconds).
        self.last_crowded = -CROWD_MEMORY_S
        self._last_crowd_check = -CROWD_CHECK_INTERVAL_S
        self.ready = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.prediction_log.start()
        await self.refresh_state()
        self._poll_task = asyncio.create_task(self._poll_state())
        self.ready = True

    async def stop(self) -> None:
        self.ready = False
        if self._poll_task is not None:
            self._poll_task.cancel()
        await asyncio.get_running_loop().run_in_executor(None, self.prediction_log.stop)
        self._model_executor.shutdown(wait=True)
        self._load_executor.shutdown(wait=False)

    async def refresh_state(self) -> None:
        """Re-read what every model serves; switch only once the new versions are loaded.

        Until the switch, requests keep going to the versions they went to: no request ever
        waits for a load or finds a half-switched state. A version that cannot load keeps
        its model on the state it had (a rollout candidate counts a failed call per try, so
        the rollout aborts by its error-rate check), and is tried again at the next poll.
        """
        # One refresh at a time: a slow one finishing last must not install an older state.
        async with self._refreshing:
            loop = asyncio.get_running_loop()
            states = await loop.run_in_executor(self._load_executor, self.registry.serving_states)
            routing: dict[str, ModelRouting] = {}
            # As the database says, even where a candidate that failed to load is not routed
            # to: those rollouts must still be judged (and aborted).
            self._rollouts = {name for name, (_, _, rollout) in states.items() if rollout}
            for name, (active, generation, rollout) in states.items():
                known = self._routing.get(name)
                if known is not None and known.generation >= generation:
                    routing[name] = known
                    continue
                state = ModelRouting(
                    active, generation, RolloutState(**rollout) if rollout else None
                )
                if not await self._load_all(name, state) and known is not None:
                    routing[name] = known
                    continue
                routing[name] = state
                if known is not None and known.active and known.active != active:
                    self._previous[name] = known.active
            self._routing = routing
            self._unload_unused()

    async def _load_all(self, model: str, state: ModelRouting) -> bool:
        loaded = True
        for version in state.versions_in_use:
            try:
                await self.runtime(model, version)
            except Exception:  # one broken version must not keep the others from serving
                log.exception("cannot load %s version %s", model, version)
                loaded = False
                if state.rollout is not None and version == state.rollout.candidate:
                    self.candidate_failures.record(model, step_key(state.rollout), failed=True)
        return loaded

    def _unload_unused(self) -> None:
        keep = {
            (name, version)
            for name, state in self._routing.items()
            for version in (*state.versions_in_use, self._previous.get(name))
            if version is not None
        }
        # Versions addressed explicitly (people testing them) load again on demand; requests
        # in flight hold their own reference, so dropping one here fails nothing.
        for key in [key for key in self._batchers if key not in keep]:
            del self._batchers[key]

    async def _poll_state(self) -> None:
        # Another worker (or the CLI) may change the active version: every worker re-reads it.
        while True:
            await asyncio.sleep(self.settings.state_poll_interval_s)
            try:
                await self.refresh_state()
            except Exception:
                log.exception("could not refresh the serving state")

    # ------------------------------------------------------------------ resolution

    def routing(self, model: str) -> ModelRouting | None:
        return self._routing.get(model)

    def models_serving(self) -> list[str]:
        return [name for name, state in self._routing.items() if state.active is not None]

    def models_in_rollout(self) -> list[str]:
        return sorted(self._rollouts)

    def _count_candidate_call(self, model: str, failed: bool) -> None:
        state = self._routing.get(model)
        if state is not None and state.rollout is not None:
            self.candidate_failures.record(model, step_key(state.rollout), failed)

    def active_version(self, model: str) -> str | None:
        state = self._routing.get(model)
        return state.active if state else None

    def resolve_version(
        self,
        model: str,
        version: str | None,
        principal: Principal,
        entity_id: str | None = None,
    ) -> tuple[str, str, str | None]:
        """(version, route, shadow version) for a request, enforcing who may address what."""
        state = self._routing.get(model)
        if state is None:
            raise NotFound(f"no model named {model!r}", "model")
        active = state.active
        if version is None:
            if active is None:
                raise ServeDeckError(
                    f"model {model!r} has no active version yet; deploy one first",
                    "model",
                    status=409,
                )
            if state.rollout is not None and goes_to_canary(state, model, entity_id):
                return state.rollout.candidate, "canary", None
            return active, "active", state.shadow
        # One spelling per version: "01" must not load, log and route as a second version.
        version = str(parse_version(version))
        if version == active:
            return version, "active", None
        # Addressing a version that is not being served is for people testing it.
        require(principal, "deploy", model)
        return version, "explicit", None

    async def runtime(self, model: str, version: str) -> MicroBatcher:
        key = (model, version)
        batcher = self._batchers.get(key)
        if batcher is not None:
            return batcher
        pending = self._loading.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.create_future()
            self._loading[key] = pending
            try:
                loaded = await loop.run_in_executor(
                    self._load_executor, self.registry.load, model, version
                )
                batcher = MicroBatcher(
                    loaded,
                    self._model_executor,
                    self.settings.max_batch_size,
                    self.settings.max_batch_wait_ms / 1000.0,
                )
                self._batchers[key] = batcher
                pending.set_result(batcher)
            except BaseException as exc:
                pending.set_exception(exc)
                # Mark retrieved so asyncio does not warn when no one else was waiting.
                pending.exception()
                raise
            finally:
                self._loading.pop(key, None)
            return batcher
        return await asyncio.shield(pending)

    async def target(
        self,
        model: str,
        version: str | None,
        principal: Principal,
        entity_id: str | None = None,
    ) -> Target:
        """Authorize, pick the version (and any shadow) and make sure they are loaded."""
        require(principal, "predict", model)
        resolved, route, shadow = self.resolve_version(model, version, principal, entity_id)
        shadow_batcher = await self.runtime(model, shadow) if shadow is not None else None
        return Target(model, resolved, route, await self.runtime(model, resolved), shadow_batcher)

    # ------------------------------------------------------------------ predict

    async def predict(
        self,
        target: Target,
        *,
        rows: list[dict[str, Any]],
        principal: Principal,
        where: str,
        request_id: str | None,
        entity_ids: list[str | None],
        started: float,
    ) -> ServeResult:
        clean = target.loaded.signature.validate_rows(rows, where)
        check_constraints(principal, clean, where)
        if not self.prediction_log.has_room(len(clean)):
            # Answering without logging would break the promise that every prediction is
            # logged: refuse instead, until the store takes the backlog.
            raise ServeDeckError(
                "the prediction log cannot be written (is the database reachable?); retry shortly",
                status=503,
            )
        if target.route == "canary":
            try:
                prediction = await self._predict(target.batcher, clean)
            except Exception:
                self._count_candidate_call(target.model, failed=True)
                raise
            self._count_candidate_call(target.model, failed=False)
        else:
            prediction = await self._predict(target.batcher, clean)
        finished = time.perf_counter()
        latency_ms = (finished - started) * 1000.0
        request_id = request_id or new_request_id()
        try:
            self._log(
                request_id,
                target.model,
                target.version,
                target.route,
                entity_ids,
                clean,
                prediction,
                latency_ms,
                principal.name,
            )
        except SpoolWriteError as exc:
            # Not kept, so not answered: the caller retries and nothing is half-logged.
            raise ServeDeckError(
                f"the prediction log cannot be written ({exc}); retry shortly", status=503
            ) from exc
        if target.shadow is not None and len(self._shadow_tasks) < MAX_SHADOWS_IN_FLIGHT:
            task = asyncio.create_task(
                self._shadow(
                    target.model, target.shadow, rows, where, request_id, entity_ids, principal
                )
            )
            self._shadow_tasks.add(task)
            task.add_done_callback(self._shadow_tasks.discard)
        return ServeResult(
            request_id, target.model, target.version, target.route, prediction, latency_ms
        )

    async def _shadow(
        self,
        model: str,
        batcher: MicroBatcher,
        rows: list[dict[str, Any]],
        where: str,
        request_id: str,
        entity_ids: list[str | None],
        principal: Principal,
    ) -> None:
        """Score the request with the candidate too, log it as "shadow", return it to no one."""
        started = time.perf_counter()
        version = batcher.loaded.version
        try:
            clean = batcher.loaded.signature.validate_rows(rows, where)
            prediction = await self._predict(batcher, clean)
        except Exception as exc:  # the candidate's failure must never reach the caller
            self._count_candidate_call(model, failed=True)
            log.debug("shadow %s version %s failed: %s", model, version, exc)
            return
        self._count_candidate_call(model, failed=False)
        latency_ms = (time.perf_counter() - started) * 1000.0
        self._log(
            request_id,
            model,
            version,
            "shadow",
            entity_ids,
            clean,
            prediction,
            latency_ms,
            principal.name,
        )

    async def _predict(self, batcher: MicroBatcher, rows: list[dict[str, Any]]) -> Prediction:
        if batcher.can_predict_now(len(rows)):
            now = time.monotonic()
            if (
                self.http_in_flight <= 1
                and now - self.last_crowded > CROWD_MEMORY_S
                and now - self._last_crowd_check < CROWD_CHECK_INTERVAL_S
            ):
                return batcher.predict_now(rows)
            self._last_crowd_check = now
            # Request tasks that arrived alongside this one start only when it yields: one
            # turn of the loop lets them be counted (InFlightCounter) before deciding.
            await asyncio.sleep(0)
            if self.http_in_flight <= 1 and batcher.can_predict_now(len(rows)):
                # Alone and cheap: skip the batch queue and its extra turns of the loop.
                return batcher.predict_now(rows)
        return await batcher.predict(rows)

    def _log(
        self,
        request_id: str,
        model: str,
        version: str,
        route: str,
        entity_ids: list[str | None],
        rows: list[dict[str, Any]],
        prediction: Prediction,
        latency_ms: float,
        token_name: str,
    ) -> None:
        now = time.time()
        labels = prediction.labels
        probabilities = prediction.probabilities
        n_ids = len(entity_ids)
        encoded = [
            log_row(
                request_id=request_id,
                row_index=i,
                created_at=now,
                model=model,
                version=version,
                route=route,
                entity_id=entity_ids[i] if i < n_ids else None,
                features=row,
                outputs={
                    "predict": labels[i],
                    "predict_proba": probabilities[i] if probabilities else None,
                },
                latency_ms=latency_ms,
                token_name=token_name,
            )
            for i, row in enumerate(rows)
        ]
        self.prediction_log.append(encoded)
        confidences = [max(p) for p in probabilities] if probabilities else [None] * len(rows)
        if route != "shadow":  # a shadow copy is not traffic: it must not double the rates
            self.live_stats.record(model, now, latency_ms, confidences)
        self.feed.publish(encoded[:MAX_ROWS_PER_REQUEST], labels, confidences)
