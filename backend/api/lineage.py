"""Lineage: which models' outputs feed which models' inputs, and the feedback loops."""

from __future__ import annotations

from fastapi import APIRouter

from backend.api.deps import CurrentPrincipal, CurrentWorkspace
from backend.api.errors import ERRORS
from backend.auth import read_scope
from backend.registry.lineage import lineage_graph
from backend.schemas import LineageGraph

router = APIRouter(prefix="/api/v1", tags=["Management"], responses=ERRORS)


@router.get("/lineage", response_model=LineageGraph)
def get_lineage(workspace: CurrentWorkspace, principal: CurrentPrincipal) -> LineageGraph:
    """The models (with their serving version), the edges their versions declare (from the
    serving version of each model, else its newest) and every feedback loop as a path. A
    token scoped to some models sees what those models declare and the loops among them."""
    scope = read_scope(principal, "read")
    return lineage_graph(workspace.sessions, scope.models)
