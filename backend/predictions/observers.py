"""The observer seam: what the request path hands on for every answered batch.

In the spirit of MLServer's inference middlewares, but after the answer is decided and before it
leaves: the request path builds one ``AnsweredBatch`` per answered request (and per shadow
scoring) and gives it to each observer in turn, on the event loop. The durable log is the first
observer (its failure refuses the request: an answer that cannot be kept is not given); the live
statistics and the live feed follow. Drift summaries, decision counters, held-out bookkeeping
and Prometheus counters are added as observers too, without touching the request path.

An observer must be quick (microseconds per row): work that takes longer belongs on its own
thread or process, fed from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from backend.predictions.rows import LogRow, log_row


@dataclass(slots=True, kw_only=True)
class AnsweredBatch:
    """One request's answered rows, with what every observer may need; read-only."""

    request_id: str
    model: str
    version: str
    route: str
    entity_ids: Sequence[str | None]
    features: Sequence[dict[str, Any]]
    labels: Sequence[Any]
    probabilities: Sequence[Sequence[float]] | None
    latency_ms: float
    token_name: str
    answered_at: float
    # Route held_out: the policy's kind and its answers, which the caller got instead of the
    # model's (``labels`` stays the model's own, unseen answer).
    held_out_policy: str | None = None
    served_labels: Sequence[Any] | None = None
    # A fallback policy: the model and version that answered ("fraud-rules:3").
    held_out_by: str | None = None
    # Made once, by the first observer that asks (see ``log_rows`` and ``confidences``).
    _log_rows: list[LogRow] | None = field(default=None, init=False, repr=False)
    _confidences: list[float | None] | None = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.features)

    @property
    def counts_as_traffic(self) -> bool:
        """A shadow copy is scored unseen: it must not double the traffic's rates."""
        return self.route != "shadow"

    def confidences(self) -> list[float | None]:
        """The top class's probability per row (None for regressors)."""
        if self._confidences is None:
            if self.probabilities:
                self._confidences = [max(p) for p in self.probabilities]
            else:
                self._confidences = [None] * len(self.features)
        return self._confidences

    def log_rows(self) -> list[LogRow]:
        """The rows as the log stores them, encoded once for every observer that keeps them.
        A held-out row keeps the model's unseen answer and, under ``held_out``, what the
        policy answered instead (what the caller got)."""
        if self._log_rows is None:
            labels = self.labels
            probabilities = self.probabilities
            entity_ids = self.entity_ids
            n_ids = len(entity_ids)
            self._log_rows = [
                log_row(
                    request_id=self.request_id,
                    row_index=i,
                    created_at=self.answered_at,
                    model=self.model,
                    version=self.version,
                    route=self.route,
                    entity_id=entity_ids[i] if i < n_ids else None,
                    features=row,
                    outputs=self._outputs(i, labels[i], probabilities),
                    latency_ms=self.latency_ms,
                    token_name=self.token_name,
                )
                for i, row in enumerate(self.features)
            ]
        return self._log_rows

    def _outputs(
        self, i: int, label: Any, probabilities: Sequence[Sequence[float]] | None
    ) -> dict[str, Any]:
        outputs = {"predict": label, "predict_proba": probabilities[i] if probabilities else None}
        if self.held_out_policy is not None:
            served = self.served_labels or []
            outputs["held_out"] = {
                "policy": self.held_out_policy,
                "answer": served[i] if i < len(served) else None,
                **({"by": self.held_out_by} if self.held_out_by else {}),
            }
        return outputs


class PredictionObserver(Protocol):
    def observe(self, batch: AnsweredBatch) -> None:
        """Take note of an answered batch; called on the event loop, must be quick."""
        ...
