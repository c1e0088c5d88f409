"""Management API: models and versions, tokens, identity, the prediction log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, UploadFile
from pydantic import Field, ValidationError

from backend import __version__
from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.auth import read_scope
from backend.auth.tokens import require, require_unscoped
from backend.errors import InputError
from backend.predictions.reads import read_predictions
from backend.registry.lineage import LineageDeclaration
from backend.registry.reference import read_table_file
from backend.schemas import (
    MAX_FEATURE_SOURCES,
    PRINTABLE,
    FeatureSource,
    FeatureSpec,
    ModelInfo,
    ModelList,
    ModelVersionInfo,
    PredictionPage,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    ValidityAssets,
    WhoAmI,
)
from backend.schemas.common import RequestBody

router = APIRouter(prefix="/api/v1", tags=["Management"], responses=ERRORS)


class RegistrationMetadata(RequestBody):
    """The JSON 'metadata' part of a multipart registration."""

    validity: ValidityAssets
    signature: list[FeatureSpec] | None = None
    task: str | None = None
    description: str = ""
    trust_pickle: bool = False
    # Required with trust_pickle: why this file is safe to run (kept in the audit trail).
    trust_reason: str = Field(default="", max_length=2000)
    trusted_types: list[str] = Field(default_factory=list)
    example_input: dict[str, Any] | None = None
    # Classifiers: a name people read per class, keyed by the class as text ({"1": "fraud"}).
    class_names: dict[str, str] | None = None
    # The label column of the 'reference' file, if it has one (not a feature).
    reference_target: str | None = Field(default=None, min_length=1, max_length=200)
    # Inputs that other models' outputs produce. A feedback loop they close is refused (409
    # naming it) unless force_lineage comes with a lineage_reason (kept in the audit trail).
    feature_sources: list[FeatureSource] = Field(
        default_factory=list, max_length=MAX_FEATURE_SOURCES
    )
    force_lineage: bool = False
    lineage_reason: str = Field(default="", max_length=2000)


@router.get("/whoami", response_model=WhoAmI)
async def whoami(principal: CurrentPrincipal) -> WhoAmI:
    return WhoAmI(
        name=principal.name,
        role=principal.role,  # type: ignore[arg-type]
        models=sorted(principal.models) if principal.models is not None else None,
        server_version=__version__,
    )


@router.get("/models", response_model=ModelList)
def list_models(workspace: CurrentWorkspace, principal: CurrentPrincipal) -> ModelList:
    require(principal, "read")
    models = [m for m in workspace.registry.list_models() if principal.may_use_model(m.name)]
    return ModelList(models=models)


@router.get("/models/{name}", response_model=ModelInfo)
def get_model(name: str, workspace: CurrentWorkspace, principal: CurrentPrincipal) -> ModelInfo:
    require(principal, "read", name)
    return workspace.deploy.model_info(name)


@router.get("/models/{name}/versions/{version}", response_model=ModelVersionInfo)
def get_version(
    name: str, version: str, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> ModelVersionInfo:
    require(principal, "read", name)
    return workspace.registry.get_version(name, version)


@router.post("/models/{name}/versions", response_model=ModelVersionInfo, status_code=201)
def register_version(
    name: str,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    artifact: Annotated[
        UploadFile, File(description="the model file (.skops; .pkl/.joblib only with trust_pickle)")
    ],
    metadata: Annotated[str, Form(description="JSON: validity, signature, task, ...")],
    reference: Annotated[
        UploadFile | None,
        File(
            description="optional Parquet or CSV: the training (or held-out) data drift is "
            "measured against; without it the validity confidence set stands in"
        ),
    ] = None,
) -> ModelVersionInfo:
    require(principal, "register", name)
    try:
        meta = RegistrationMetadata.model_validate_json(metadata)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first.get("loc", ()))
        if first.get("type") == "json_invalid":
            raise InputError("not valid JSON", "metadata") from None
        raise InputError(str(first.get("msg")), f"metadata.{loc}" if loc else "metadata") from None
    if meta.trust_pickle:
        # A pickle runs its code in the server once deployed: only an admin of every model
        # may vouch for that.
        require_unscoped(principal, "trust_pickle")
    lineage = LineageDeclaration(
        tuple(meta.feature_sources), meta.force_lineage, meta.lineage_reason
    )
    data = artifact.file.read()
    if not data:
        raise InputError("the artifact file is empty", "artifact")
    reference_frame = None
    if reference is not None:
        reference_frame = read_table_file(reference.file.read(), "reference")
    elif meta.reference_target is not None:
        raise InputError(
            "names a column of a 'reference' file, but none was sent", "reference_target"
        )
    return workspace.registry.register_version(
        name,
        data,
        filename=artifact.filename or "artifact",
        validity=meta.validity,
        registered_by=principal.name,
        registered_role=principal.role,
        signature=meta.signature,
        task=meta.task,
        description=meta.description,
        trust_pickle=meta.trust_pickle,
        trust_reason=meta.trust_reason,
        trusted_types=meta.trusted_types,
        example_input=meta.example_input,
        class_names=meta.class_names,
        training_frame=reference_frame,
        training_target=meta.reference_target,
        lineage=lineage,
    )


@router.get("/predictions", response_model=PredictionPage)
def list_predictions(
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    model: str | None = None,
    # Checked as a request's own id is: an id no request can have (a NUL, which PostgreSQL
    # cannot even compare) is a 422 naming it, not a failed query.
    request_id: Annotated[
        str | None,
        Query(max_length=64, pattern=PRINTABLE, description="the id of one request"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> PredictionPage:
    scope = read_scope(principal, "read_predictions", model)
    return PredictionPage(
        predictions=read_predictions(
            workspace.sessions,
            model=scope.model,
            request_id=request_id,
            visible_models=scope.models,
            limit=limit,
        )
    )


@router.get("/tokens", response_model=list[TokenInfo])
def list_tokens(workspace: CurrentWorkspace, principal: CurrentPrincipal) -> list[TokenInfo]:
    require_unscoped(principal, "tokens")
    return workspace.tokens.list()


@router.post("/tokens", response_model=TokenCreated, status_code=201)
def create_token(
    body: TokenCreate, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> TokenCreated:
    require_unscoped(principal, "tokens")
    constraints = workspace.registry.token_constraints(body.models, body.constraints)
    secret = workspace.tokens.create(body.name, body.role, body.models, constraints)
    info = next(t for t in workspace.tokens.list() if t.name == body.name)
    return TokenCreated(token=secret, **info.model_dump())


@router.delete("/tokens/{name}", status_code=204)
def revoke_token(name: str, workspace: CurrentWorkspace, principal: CurrentPrincipal) -> None:
    require_unscoped(principal, "tokens")
    workspace.tokens.revoke(name)
