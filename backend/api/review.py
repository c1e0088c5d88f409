"""The held-out review queue: reviewers label what the model was not allowed to influence.

Support staff, engineers and admins review (the ``feedback`` and ``read_predictions``
permissions: a reviewer reads logged inputs and writes labels); client tokens may not.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.auth import Principal, read_scope
from backend.auth.tokens import require
from backend.feedback.review import MAX_BATCH, ReviewQueue
from backend.schemas.review import (
    ReviewAnswer,
    ReviewBatch,
    ReviewDecision,
    ReviewStats,
    ReviewUndone,
)
from backend.workspace import Workspace

router = APIRouter(prefix="/api/v1/models/{name}/review", tags=["Feedback"], responses=ERRORS)

ModelName = Annotated[str, Path(min_length=1, max_length=128, description="the model")]
ItemId = Annotated[int, Path(ge=1, le=2**31 - 1, description="the review item")]


def _queue(request: Request, workspace: Workspace) -> ReviewQueue:
    # One queue per app (per workspace): it remembers when it last read the log.
    queue: ReviewQueue | None = getattr(request.app.state, "review_queue", None)
    if queue is None:
        settings = workspace.settings
        queue = request.app.state.review_queue = ReviewQueue(
            workspace.sessions,
            workspace.registry,
            lease_s=settings.review_lease_s,
            agreement_share=settings.review_agreement_share,
        )
    return queue


def _may_review(principal: Principal, model: str) -> None:
    read_scope(principal, "read_predictions", model)
    require(principal, "feedback", model)


@router.get("/next", response_model=ReviewBatch)
def next_examples(
    name: ModelName,
    request: Request,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
    limit: Annotated[
        int, Query(ge=1, le=MAX_BATCH, description="examples wanted (those you hold first)")
    ] = 10,
) -> ReviewBatch:
    """Your next held-out examples, each yours for the lease time: those you hold already,
    then new ones from the queue, oldest first. Two reviewers never hold the same example,
    except the agreement samples handed to a second reviewer on purpose."""
    _may_review(principal, name)
    return _queue(request, workspace).next(name, principal.name, limit)


@router.post("/{item}/answer", response_model=ReviewDecision)
def answer_example(
    name: ModelName,
    item: ItemId,
    body: ReviewAnswer,
    request: Request,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
) -> ReviewDecision:
    """The correct answer for an example you hold: one of the model's classes. The first
    answer becomes the example's label (source "review", not influenced by the model)."""
    _may_review(principal, name)
    return _queue(request, workspace).answer(name, item, principal.name, body.label)


@router.post("/{item}/skip", response_model=ReviewDecision)
def skip_example(
    name: ModelName,
    item: ItemId,
    request: Request,
    workspace: CurrentWorkspace,
    principal: CurrentPrincipal,
) -> ReviewDecision:
    """You cannot tell: the example leaves your queue without an answer from you."""
    _may_review(principal, name)
    return _queue(request, workspace).skip(name, item, principal.name)


@router.post("/undo", response_model=ReviewUndone)
def undo_decision(
    name: ModelName, request: Request, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> ReviewUndone:
    """Take back your last answer or skip on this model; the example is yours again."""
    _may_review(principal, name)
    return _queue(request, workspace).undo(name, principal.name)


@router.get("/stats", response_model=ReviewStats)
def review_stats(
    name: ModelName, request: Request, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> ReviewStats:
    """Progress of the model's queue, each reviewer's pace (examples per minute over their
    last active period) and agreement (Cohen's kappa over examples answered twice)."""
    _may_review(principal, name)
    return _queue(request, workspace).stats(name)
