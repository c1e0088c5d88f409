"""Wire types of lineage: which models' outputs feed which models' inputs, and the loops.

A version declares, for some of its input features, the model whose output produces them
(``FeatureSource``). The graph joins every model's declarations (those of its serving version,
else of its newest) into model -> model edges; a cycle in it is a feedback loop.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from backend.schemas.common import RequestBody

# Which of the upstream model's outputs becomes the feature: its answer, or its probabilities.
# None: not said (the answer, as a rule).
FeatureOutput = Literal["predict", "predict_proba"]
# A registration may declare at most this many sources (a model has at most this many inputs
# worth tracing; a larger list is a mistake, not a lineage).
MAX_FEATURE_SOURCES = 256


class FeatureSource(RequestBody):
    """One input feature of a version that another model's output produces."""

    feature: str = Field(min_length=1, max_length=128, description="the input feature")
    model: str = Field(
        min_length=1,
        max_length=128,
        description="the model whose output it is (it may be registered later)",
    )
    output: FeatureOutput | None = None


class LineageNode(BaseModel):
    name: str
    # False: declared as a source by some version, but no model of that name is registered
    # (yet); lineage may be declared before the upstream model exists.
    registered: bool
    serving_version: str | None = None
    latest_version: str | None = None
    # The version whose declarations give this model's incoming edges: the serving one, else
    # the newest; None for a model that is not registered.
    declaring_version: str | None = None
    on_cycle: bool = False
    # False for an upstream model outside the token's scope: named (its consumer's
    # declaration names it), but nothing else about it is shown.
    in_scope: bool = True


class LineageEdge(BaseModel):
    """``from_model``'s output is ``to_model``'s input ``feature``."""

    from_model: str
    to_model: str
    feature: str
    output: FeatureOutput | None = None
    # The version of ``to_model`` that declared it.
    declared_by_version: str
    on_cycle: bool = False


class LineageCycle(BaseModel):
    # The models in order, the first repeated at the end: ["fraud", "risk", "fraud"];
    # a model fed by its own output: ["fraud", "fraud"].
    path: list[str]
    # The path as one line: "fraud -> risk -> fraud".
    text: str
    # What it means and what to do, in plain words.
    explanation: str


class LineageGraph(BaseModel):
    nodes: list[LineageNode] = Field(default_factory=list)
    edges: list[LineageEdge] = Field(default_factory=list)
    cycles: list[LineageCycle] = Field(default_factory=list)
