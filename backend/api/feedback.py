"""Ground-truth labels for logged predictions, posted in bulk."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.auth.tokens import require
from backend.feedback import store_labels
from backend.schemas import FeedbackRequest, FeedbackResponse

router = APIRouter(prefix="/api/v1", tags=["Feedback"], responses=ERRORS)


@router.post("/feedback", response_model=FeedbackResponse)
def post_feedback(
    body: FeedbackRequest, workspace: CurrentWorkspace, principal: CurrentPrincipal
) -> FeedbackResponse:
    require(principal, "feedback")
    accepted, unmatched = store_labels(workspace.sessions, body.labels, principal)
    return FeedbackResponse(accepted=accepted, unmatched=unmatched)
