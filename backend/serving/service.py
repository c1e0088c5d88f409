"""The request path: authorize, resolve the version, validate, predict, hand to the observers.

Authorization is decided once, in ``target``: the token's role and model scope, and whether it
may address a version that is not being served (people testing it). Value constraints of a
client token are checked in ``predict`` once the rows are validated, since they are about the
values. Every answered batch goes to the observers (the durable log first) before the answer
leaves; what keeps aggregates, logs or counts is an observer, not part of this path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from backend.auth.tokens import Principal, check_constraints, require
from backend.errors import NotFound, ServeDeckError
from backend.predictions.log import PredictionLog
from backend.predictions.observers import AnsweredBatch, PredictionObserver
from backend.predictions.spool import SpoolWriteError
from backend.registry import LoadedVersion, Prediction, Registry, parse_version
from backend.schemas import HeldOutPolicy
from backend.serving.batcher import MicroBatcher
from backend.serving.crowd import CrowdGauge
from backend.serving.held_out import (
    HELD_OUT_ROUTE,
    declared_answers,
    goes_to_held_out,
    is_held_out,
)
from backend.serving.request_ids import log_request_id
from backend.serving.routing import ModelRouting, goes_to_canary, request_bucket
from backend.serving.state import ServingState
from backend.settings import Settings

log = logging.getLogger(__name__)


# A candidate slower than the traffic would pile up shadow calls on the model thread the
# callers' answers need: beyond this many in flight, requests are not shadowed.
MAX_SHADOWS_IN_FLIGHT = 64


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
    # Route held_out: the policy whose answer the caller gets (the model answers unseen),
    # and the version answering for it when the policy is a fallback.
    held_out_policy: HeldOutPolicy | None = None
    fallback: MicroBatcher | None = None

    @property
    def loaded(self) -> LoadedVersion:
        return self.batcher.loaded


@dataclass
class ServeResult:
    request_id: str
    model: str
    version: str
    route: str
    prediction: Prediction  # what the caller gets (on route held_out, the policy's answer)
    latency_ms: float
    held_out_policy: str | None = None  # the policy's kind on route held_out


class ServingService:
    def __init__(
        self,
        state: ServingState,
        prediction_log: PredictionLog,
        # Those after the log (live statistics, the feed, ...).
        observers: Sequence[PredictionObserver],
        crowd: CrowdGauge,
    ):
        self.state = state
        self.prediction_log = prediction_log
        # The log first: if it cannot keep a batch, the request is refused and the other
        # observers never see it.
        self.observers: list[PredictionObserver] = [prediction_log, *observers]
        self.crowd = crowd
        # Shadow predictions in flight: held so they are not garbage-collected mid-way.
        self._shadow_tasks: set[asyncio.Task[None]] = set()

    @property
    def settings(self) -> Settings:
        return self.state.settings

    @property
    def registry(self) -> Registry:
        return self.state.registry

    @property
    def ready(self) -> bool:
        return self.state.ready

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.prediction_log.start()
        await self.state.start()

    async def stop(self) -> None:
        self.state.stop_polling()
        await asyncio.get_running_loop().run_in_executor(None, self.prediction_log.stop)
        self.state.shutdown()

    # ------------------------------------------------------------------ resolution

    async def target(
        self,
        model: str,
        version: str | None,
        principal: Principal,
        entity_id: str | None = None,
    ) -> Target:
        """Authorize, pick the version (and any shadow) and make sure they are loaded."""
        # One spelling per version: "01" must not load, log and route as a second version.
        addressed = None if version is None else str(parse_version(version))
        routing = self.state.routing(model)
        self._authorize(principal, model, addressed, routing)
        if routing is None:
            raise NotFound(f"no model named {model!r}", "model")
        resolved, route, shadow = _resolve(routing, model, addressed, entity_id)
        runtime = self.state.runtime
        if route == HELD_OUT_ROUTE and routing.held_out is not None:
            policy = routing.held_out.policy
            fallback = await self._fallback(policy) if policy.kind == "fallback" else None
            return Target(
                model, resolved, route, await runtime(model, resolved), None, policy, fallback
            )
        shadow_batcher = await runtime(model, shadow) if shadow is not None else None
        return Target(model, resolved, route, await runtime(model, resolved), shadow_batcher)

    async def _fallback(self, policy: HeldOutPolicy) -> MicroBatcher:
        """The version answering held-out requests for a fallback policy: a pinned version,
        or whatever the named model serves now."""
        assert policy.kind == "fallback"
        version = policy.version
        if version is None:
            other = self.state.routing(policy.model)
            version = other.active if other is not None else None
        if version is None:
            raise ServeDeckError(
                f"the held-out policy's fallback model {policy.model!r} serves no version; "
                "deploy one or change the held-out policy",
                "held_out.policy",
                status=503,
            )
        try:
            return await self.state.runtime(policy.model, version)
        except Exception as exc:
            raise ServeDeckError(
                f"the held-out policy's fallback {policy.model!r} version {version} cannot be "
                f"loaded ({type(exc).__name__}); change the held-out policy",
                "held_out.policy",
                status=503,
            ) from exc

    @staticmethod
    def _authorize(
        principal: Principal, model: str, addressed: str | None, routing: ModelRouting | None
    ) -> None:
        """Who may ask what of a model: the one place the request path decides it.

        Checked before the model's existence is revealed: an unknown model and a model the
        token may not use answer alike (403) to a token without the scope.
        """
        require(principal, "predict", model)
        if addressed is not None and (routing is None or addressed != routing.active):
            # Addressing a version that is not being served is for people testing it.
            require(principal, "deploy", model)

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
        self._check_one_route(target, entity_ids)
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
        served = prediction
        if target.held_out_policy is not None:
            served = await self._held_out_answer(target, rows, clean, where)
        finished = time.perf_counter()
        latency_ms = (finished - started) * 1000.0
        request_id = log_request_id(request_id)
        batch = AnsweredBatch(
            request_id=request_id,
            model=target.model,
            version=target.version,
            route=target.route,
            entity_ids=entity_ids,
            features=clean,
            labels=prediction.labels,
            probabilities=prediction.probabilities,
            latency_ms=latency_ms,
            token_name=principal.name,
            answered_at=time.time(),
            held_out_policy=target.held_out_policy.kind if target.held_out_policy else None,
            served_labels=served.labels if target.held_out_policy is not None else None,
            held_out_by=(
                f"{target.fallback.loaded.model}:{target.fallback.loaded.version}"
                if target.fallback is not None
                else None
            ),
        )
        try:
            self._hand_over(batch)
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
            request_id,
            target.model,
            target.version,
            target.route,
            served,
            latency_ms,
            target.held_out_policy.kind if target.held_out_policy is not None else None,
        )

    async def _held_out_answer(
        self, target: Target, rows: list[dict[str, Any]], clean: list[dict[str, Any]], where: str
    ) -> Prediction:
        """What the held-out policy answers: declared, by rule, or by the fallback version
        (which validates the rows against its own signature)."""
        policy = target.held_out_policy
        assert policy is not None
        if policy.kind != "fallback":
            return Prediction(declared_answers(policy, clean), None)
        assert target.fallback is not None
        loaded = target.fallback.loaded
        try:
            fallback_rows = loaded.signature.validate_rows(rows, where)
            return await self._predict(target.fallback, fallback_rows)
        except Exception as exc:
            # The caller's rows fit the model; the policy's fallback failing is the policy's
            # problem, and says so (never the model's failure, never a bare 500).
            reason = exc.reason if isinstance(exc, ServeDeckError) else type(exc).__name__
            raise ServeDeckError(
                f"the held-out policy's fallback {loaded.model!r} version {loaded.version} "
                f"could not answer ({reason}); change the held-out policy",
                "held_out.policy",
                status=503,
            ) from exc

    def _check_one_route(self, target: Target, entity_ids: list[str | None]) -> None:
        """A request is routed by its first entity: one whose entities are not all held out,
        or all served, would give a held-out entity the model's answer (or the reverse)."""
        routing = self.state.routing(target.model)
        settings = routing.held_out if routing is not None else None
        if settings is None or settings.share_percent <= 0 or target.route == "explicit":
            return
        held_out = target.route == HELD_OUT_ROUTE
        for entity in set(entity_ids):
            if entity is not None and is_held_out(settings, target.model, entity) != held_out:
                raise ServeDeckError(
                    f"entity {entity!r} is {'not ' if held_out else ''}in the held-out share "
                    f"and the request's first entity is{'' if held_out else ' not'}: send "
                    "held-out and served entities in separate requests",
                    "entity_ids",
                    status=400,
                )

    def _count_candidate_call(self, model: str, failed: bool) -> None:
        routing = self.state.routing(model)
        if routing is not None:
            self.state.candidates.record(model, routing.rollout, failed)

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
        batch = AnsweredBatch(
            request_id=request_id,
            model=model,
            version=version,
            route="shadow",
            entity_ids=entity_ids,
            features=clean,
            labels=prediction.labels,
            probabilities=prediction.probabilities,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            token_name=principal.name,
            answered_at=time.time(),
        )
        try:
            self._hand_over(batch)
        except SpoolWriteError as exc:
            log.error("shadow prediction of %s version %s not logged: %s", model, version, exc)

    async def _predict(self, batcher: MicroBatcher, rows: list[dict[str, Any]]) -> Prediction:
        if batcher.can_predict_now(len(rows)):
            crowd = self.crowd
            if crowd.surely_alone():
                return batcher.predict_now(rows)
            # Request tasks that arrived alongside this one start only when it yields: one
            # turn of the loop lets them be counted (InFlightCounter) before deciding.
            await asyncio.sleep(0)
            if crowd.alone and batcher.can_predict_now(len(rows)):
                # Alone and cheap: skip the batch queue and its extra turns of the loop.
                return batcher.predict_now(rows)
        return await batcher.predict(rows)

    def _hand_over(self, batch: AnsweredBatch) -> None:
        for observer in self.observers:
            observer.observe(batch)


def _resolve(
    routing: ModelRouting, model: str, addressed: str | None, entity_id: str | None
) -> tuple[str, str, str | None]:
    """(version, route, shadow version) for a request already authorized. A held-out entity is
    decided first: it never reaches a canary or a shadow (see ``held_out``)."""
    active = routing.active
    if addressed is None:
        if active is None:
            raise ServeDeckError(
                f"model {model!r} has no active version yet; deploy one first",
                "model",
                status=409,
            )
        if routing.held_out is None and routing.rollout is None:
            return active, "active", None
        # One draw for both, so requests without an entity split as the shares say.
        bucket = request_bucket(model, entity_id)
        if goes_to_held_out(routing.held_out, model, entity_id, bucket):
            return active, HELD_OUT_ROUTE, None
        if routing.rollout is not None and goes_to_canary(routing, model, entity_id, bucket):
            return routing.rollout.candidate, "canary", None
        return active, "active", routing.shadow
    if addressed == active:
        # Naming the serving version is no way around the held-out share.
        if goes_to_held_out(routing.held_out, model, entity_id):
            return active, HELD_OUT_ROUTE, None
        return addressed, "active", None
    return addressed, "explicit", None
