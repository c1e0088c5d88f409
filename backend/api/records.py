"""The record form for application developers: named features in, labelled answers out."""

from __future__ import annotations

import time

import orjson
from fastapi import APIRouter, Request, Response

from backend.api.deps import CurrentPrincipal, CurrentServing
from backend.api.errors import ERRORS, body_error_response
from backend.api.openapi import hand_parsed_body
from backend.errors import InputError
from backend.schemas import RecordPredictRequest, RecordPredictResponse

router = APIRouter(tags=["Record predictions"])


@router.post(
    "/v1/models/{name}:predict",
    response_model=RecordPredictResponse,
    responses=ERRORS,
    openapi_extra=hand_parsed_body(RecordPredictRequest),
)
async def predict_records(
    name: str, request: Request, serving: CurrentServing, principal: CurrentPrincipal
) -> Response:
    started = time.perf_counter()
    try:
        body = RecordPredictRequest.model_validate_json(await request.body())
    except ValueError as exc:
        return body_error_response(exc)
    n_rows = len(body.instances)
    if n_rows > serving.settings.max_rows_per_request:
        raise InputError(
            f"{n_rows} instances in one request; the limit is "
            f"{serving.settings.max_rows_per_request}",
            "instances",
            status=413,
        )
    if body.entity_ids is not None and len(body.entity_ids) != n_rows:
        raise InputError(f"give one entity id per instance ({n_rows})", "entity_ids")
    entity_ids: list[str | None] = (
        list(body.entity_ids) if body.entity_ids is not None else [body.entity_id] * n_rows
    )
    # A canary is sticky per entity; a request with several goes where its first one goes.
    target = await serving.target(name, None, principal, entity_ids[0] if entity_ids else None)
    result = await serving.predict(
        target,
        rows=body.instances,
        principal=principal,
        where="instances",
        request_id=body.id,
        entity_ids=entity_ids,
        started=started,
    )
    labels = result.prediction.labels
    probabilities = result.prediction.probabilities
    # On route held_out with a fallback policy, the fallback's probabilities over its classes.
    answered_by = target.fallback.loaded if target.fallback is not None else target.loaded
    classes = [str(c) for c in answered_by.class_labels or []]
    predictions = [
        {
            "prediction": label,
            "probabilities": dict(zip(classes, probabilities[i], strict=True))
            if probabilities
            else None,
        }
        for i, label in enumerate(labels)
    ]
    payload = {
        "model_name": name,
        "model_version": result.version,
        "request_id": result.request_id,
        "id": body.id,
        "route": result.route,
        "predictions": predictions,
    }
    if result.held_out_policy is not None:
        payload["held_out_policy"] = result.held_out_policy  # the policy answered, not the model
    return Response(orjson.dumps(payload), media_type="application/json")
