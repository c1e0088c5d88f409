"""The state of what serves: which versions answer each model, loaded once and kept warm.

Every worker re-reads the serving state from the store (another worker or the command line
may have changed it), loads what it needs before switching, and unloads what nobody uses.
The request path (``service``) reads ``routing`` and asks ``runtime`` for a loaded version.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import Session, sessionmaker

from backend.registry import Registry
from backend.schemas import HeldOutSettings, RolloutState
from backend.serving.batcher import MicroBatcher
from backend.serving.candidates import CandidateCalls
from backend.serving.routing import ModelRouting
from backend.settings import Settings

log = logging.getLogger(__name__)


class ServingState:
    def __init__(self, settings: Settings, registry: Registry, candidates: CandidateCalls):
        self.settings = settings
        self.registry = registry
        self.candidates = candidates
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
        self._refreshing = asyncio.Lock()
        self._rollouts: set[str] = set()
        self._poll_task: asyncio.Task[None] | None = None
        self.ready = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.refresh_state()
        self._poll_task = asyncio.create_task(self._poll_state())
        self.ready = True

    def stop_polling(self) -> None:
        self.ready = False
        if self._poll_task is not None:
            self._poll_task.cancel()

    def shutdown(self) -> None:
        """After the last request: finish the model calls under way, then stop."""
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
            self._rollouts = {name for name, (_, _, rollout, _) in states.items() if rollout}
            for name, (active, generation, rollout, held_out) in states.items():
                known = self._routing.get(name)
                if known is not None and known.generation >= generation:
                    routing[name] = known
                    continue
                state = ModelRouting(
                    active,
                    generation,
                    RolloutState(**rollout) if rollout else None,
                    _held_out_settings(name, held_out),
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
                    self.candidates.record(model, state.rollout, failed=True)
        fallback = state.pinned_fallback
        if fallback is not None:
            try:  # loaded ahead, so the first held-out request does not wait for it
                await self.runtime(*fallback)
            except Exception:  # the request path answers 503 naming it until it loads
                log.exception("cannot load the held-out fallback %s version %s", *fallback)
        return loaded

    def _unload_unused(self) -> None:
        keep = {
            (name, version)
            for name, state in self._routing.items()
            for version in (*state.versions_in_use, self._previous.get(name))
            if version is not None
        }
        keep |= {s.pinned_fallback for s in self._routing.values() if s.pinned_fallback}
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

    # ------------------------------------------------------------------ reading

    def routing(self, model: str) -> ModelRouting | None:
        return self._routing.get(model)

    def models_serving(self) -> list[str]:
        return [name for name, state in self._routing.items() if state.active is not None]

    def models_in_rollout(self) -> list[str]:
        return sorted(self._rollouts)

    def save_candidate_calls(self, sessions: sessionmaker[Session]) -> None:
        self.candidates.save(sessions)

    def loaded(self, model: str, version: str) -> MicroBatcher | None:
        """The version's runtime if it is loaded (None: not loaded here)."""
        return self._batchers.get((model, version))

    async def runtime(self, model: str, version: str) -> MicroBatcher:
        """The version's runtime, loaded once however many requests ask at the same time."""
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


def _held_out_settings(model: str, stored: dict[str, object] | None) -> HeldOutSettings | None:
    """The stored settings; None (nothing held out, logged) when they cannot be read, so one
    model's bad row never stops every model's state from refreshing."""
    if not stored:
        return None
    try:
        return HeldOutSettings.model_validate(stored)
    except ValueError:
        log.exception("the held-out settings of %s cannot be read; nothing is held out", model)
        return None
