"""Held-out rows in the prediction log, as the serving path logs them, for review tests."""

from __future__ import annotations

import time
from typing import Any

from backend.db.tables import PredictionRow
from backend.workspace import Workspace
from tests.helpers import TOY_ROW


def add_held_out_rows(
    workspace: Workspace,
    count: int,
    *,
    model: str = "toy",
    prefix: str = "held",
    start: float | None = None,
    policy: dict[str, Any] | None = None,
    route: str = "held_out",
) -> list[str]:
    """``count`` logged rows of ``model`` on ``route`` (one request each, one second apart);
    each records what the held-out policy answered when ``policy`` is given. Their ids."""
    start = time.time() - count if start is None else start
    request_ids = [f"{prefix}-{i}" for i in range(count)]
    with workspace.sessions.begin() as session:
        for i, request_id in enumerate(request_ids):
            answer = i % 2
            outputs: dict[str, Any] = {"predict": answer, "predict_proba": [0.3, 0.7]}
            if policy is not None:
                outputs["held_out"] = policy
            session.add(
                PredictionRow(
                    request_id=request_id,
                    row_index=0,
                    created_at=start + i,
                    model=model,
                    version="1",
                    route=route,
                    entity_id=f"card-{i}",
                    features={**TOY_ROW, "amount": 10.0 + i},
                    outputs=outputs,
                    latency_ms=1.0,
                    token_name="shop",
                )
            )
    return request_ids
