"""Which version answers a request: the serving version, a canary share, or a shadow copy."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from backend.schemas import HeldOutSettings, RolloutState

# Canary shares are resolved to 1/100 of a percent.
BUCKETS = 10_000


@dataclass(frozen=True)
class ModelRouting:
    """One model's serving state as every worker polls it from the database."""

    active: str | None
    generation: int
    rollout: RolloutState | None = None
    # The held-out share and its no-model policy, or None (nothing held out).
    held_out: HeldOutSettings | None = None

    @property
    def versions_in_use(self) -> tuple[str, ...]:
        """The versions that may answer or shadow a request: keep them loaded."""
        versions = [self.active] if self.active else []
        if self.rollout is not None:
            versions.append(self.rollout.candidate)
        return tuple(versions)

    @property
    def pinned_fallback(self) -> tuple[str, str] | None:
        """The (model, version) a held-out fallback policy names, to keep loaded; None when
        there is none or it follows whatever that model serves (loaded for it already)."""
        policy = self.held_out.policy if self.held_out is not None else None
        if policy is None or policy.kind != "fallback" or policy.version is None:
            return None
        return policy.model, policy.version

    @property
    def shadow(self) -> str | None:
        """The candidate that scores every request in parallel, unseen, or None."""
        rollout = self.rollout
        return rollout.candidate if rollout is not None and rollout.phase == "shadow" else None


def entity_bucket(model: str, entity_id: str) -> int:
    """A stable bucket per (model, entity): the same entity always lands in the same one, and
    raising the canary share only adds entities to the canary, never moves them back."""
    digest = hashlib.blake2b(f"{model}\0{entity_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def request_bucket(model: str, entity_id: str | None) -> int:
    """The entity's bucket; without an entity there is nothing to be sticky to, and the
    request is drawn on its own (once: the held-out share and a canary split the same draw)."""
    return entity_bucket(model, entity_id) if entity_id else random.randrange(BUCKETS)


def goes_to_canary(
    routing: ModelRouting, model: str, entity_id: str | None, bucket: int | None = None
) -> bool:
    rollout = routing.rollout
    if rollout is None or rollout.phase != "canary" or rollout.percent <= 0:
        return False
    threshold = rollout.percent * BUCKETS / 100
    return (request_bucket(model, entity_id) if bucket is None else bucket) < threshold
