"""Open Inference Protocol v2 REST, as kserve/open-inference-protocol specifies it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from backend import __version__
from backend.api.deps import CurrentPrincipal, CurrentServing
from backend.api.errors import ERRORS, body_error_response
from backend.api.openapi import hand_parsed_body
from backend.errors import InputError
from backend.schemas import (
    CONTROL_CHARACTER,
    MAX_ENTITY_ID,
    InferRequest,
    InferResponse,
    LiveResponse,
    ModelMetadata,
    ModelReadyResponse,
    ReadyResponse,
    ServerMetadata,
)
from backend.serving.oip import (
    check_requested_outputs,
    decode_request,
    encode_outputs,
    input_metadata,
    output_metadata,
    output_names,
)
from backend.serving.service import ServingService

router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])


@router.get("/health/live", response_model=LiveResponse)
async def live() -> LiveResponse:
    return LiveResponse(live=True)


@router.get("/health/ready", response_model=ReadyResponse)
async def ready(serving: CurrentServing) -> Response:
    body = ReadyResponse(ready=serving.ready)
    # Load balancers read the status code, OIP clients the body.
    return Response(
        body.model_dump_json(),
        status_code=200 if serving.ready else 503,
        media_type="application/json",
    )


@router.get("", response_model=ServerMetadata, responses=ERRORS)
async def server_metadata(_principal: CurrentPrincipal) -> ServerMetadata:
    return ServerMetadata(name="servedeck", version=__version__, extensions=[])


async def _metadata(
    serving: ServingService, principal: Any, name: str, version: str | None
) -> ModelMetadata:
    target = await serving.target(name, version, principal)
    loaded = target.loaded
    # A database read: in a thread, never on the event loop.
    info = await asyncio.to_thread(serving.registry.get_model, name)
    return ModelMetadata(
        name=name,
        versions=[v.version for v in info.versions],
        platform="sklearn",
        inputs=input_metadata(loaded.signature.specs),
        outputs=output_metadata(loaded.task, loaded.has_proba, loaded.class_labels),
        parameters={"version": target.version, "task": loaded.task},
    )


@router.get("/models/{name}", response_model=ModelMetadata, responses=ERRORS)
async def model_metadata(
    name: str, serving: CurrentServing, principal: CurrentPrincipal
) -> ModelMetadata:
    return await _metadata(serving, principal, name, None)


@router.get("/models/{name}/versions/{version}", response_model=ModelMetadata, responses=ERRORS)
async def model_version_metadata(
    name: str, version: str, serving: CurrentServing, principal: CurrentPrincipal
) -> ModelMetadata:
    return await _metadata(serving, principal, name, version)


async def _ready(
    serving: ServingService, principal: Any, name: str, version: str | None
) -> Response:
    # Readiness loads the version if needed: a model that cannot load is reported, not hidden.
    await serving.target(name, version, principal)
    return Response(
        ModelReadyResponse(name=name, ready=True).model_dump_json(), media_type="application/json"
    )


@router.get("/models/{name}/ready", response_model=ModelReadyResponse, responses=ERRORS)
async def model_ready(name: str, serving: CurrentServing, principal: CurrentPrincipal) -> Response:
    return await _ready(serving, principal, name, None)


@router.get(
    "/models/{name}/versions/{version}/ready", response_model=ModelReadyResponse, responses=ERRORS
)
async def model_version_ready(
    name: str, version: str, serving: CurrentServing, principal: CurrentPrincipal
) -> Response:
    return await _ready(serving, principal, name, version)


async def run_infer(
    request: Request,
    serving: ServingService,
    principal: Any,
    name: str,
    version: str | None,
) -> Response:
    started = time.perf_counter()
    body = await request.body()
    try:
        infer = InferRequest.model_validate_json(body)
    except ValueError as exc:
        return body_error_response(exc, status=400)
    parameters = infer.parameters or {}
    target = await serving.target(name, version, principal, _routing_entity(parameters))
    loaded = target.loaded
    available = output_names(loaded.task, loaded.has_proba)
    requested = check_requested_outputs(infer, available)
    rows = decode_request(infer, loaded.signature.specs, serving.settings.max_rows_per_request)
    result = await serving.predict(
        target,
        rows=rows,
        principal=principal,
        where="inputs.rows",
        request_id=infer.id,
        entity_ids=_entity_ids(parameters, len(rows)),
        started=started,
    )
    parameters_out: dict[str, Any] = {
        "serving_version": result.version,
        "request_id": result.request_id,
        "route": result.route,
    }
    payload = {
        "model_name": name,
        "model_version": result.version,
        # The client's id as sent, even "" (the spec echoes it); the log's id is a parameter.
        "id": infer.id if infer.id is not None else result.request_id,
        "parameters": parameters_out,
        "outputs": encode_outputs(result.prediction, requested, available),
    }
    if result.held_out_policy is not None:
        # Held out: the answer is the no-model policy's, not the model's; an application can
        # tell by the route and this.
        parameters_out["held_out_policy"] = result.held_out_policy
    return Response(orjson.dumps(payload), media_type="application/json")


def _routing_entity(parameters: dict[str, Any]) -> str | None:
    """The entity a canary is sticky to: entity_id, or the first of entity_ids (checked later)."""
    entity = parameters.get("entity_id")
    many = parameters.get("entity_ids")
    if entity is None and isinstance(many, list) and many:
        entity = many[0]
    # As the log will hold it (``_entity_id``): a number 42 is the entity "42", sticky too.
    return None if entity is None else str(entity)


def _entity_ids(parameters: dict[str, Any], n_rows: int) -> list[str | None]:
    many = parameters.get("entity_ids")
    if many is not None:
        if not isinstance(many, list) or len(many) != n_rows:
            raise InputError(
                f"entity_ids must be a list with one id per row ({n_rows})",
                "parameters.entity_ids",
                status=400,
            )
        return [_entity_id(e, f"parameters.entity_ids[{i}]") for i, e in enumerate(many)]
    return [_entity_id(parameters.get("entity_id"), "parameters.entity_id")] * n_rows


def _entity_id(value: Any, field: str) -> str | None:
    if value is None:
        return None
    text = str(value)
    if len(text) > MAX_ENTITY_ID:
        raise InputError(f"at most {MAX_ENTITY_ID} characters", field, status=400)
    if CONTROL_CHARACTER.search(text):
        raise InputError("an id is printable text (no control characters)", field, status=400)
    return text


@router.post(
    "/models/{name}/infer",
    response_model=InferResponse,
    responses=ERRORS,
    openapi_extra=hand_parsed_body(InferRequest),
)
async def infer(
    name: str, request: Request, serving: CurrentServing, principal: CurrentPrincipal
) -> Response:
    return await run_infer(request, serving, principal, name, None)


@router.post(
    "/models/{name}/versions/{version}/infer",
    response_model=InferResponse,
    responses=ERRORS,
    openapi_extra=hand_parsed_body(InferRequest),
)
async def infer_version(
    name: str, version: str, request: Request, serving: CurrentServing, principal: CurrentPrincipal
) -> Response:
    return await run_infer(request, serving, principal, name, version)
