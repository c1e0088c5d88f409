"""Lineage: the graph of model -> model edges that versions declare, and its feedback loops.

A version may declare that some of its input features are other models' outputs
(``FeatureSource``). Each model contributes the declarations of one version, the one whose
inputs really flow: its serving version, else its newest. A cycle in that graph is a feedback
loop (a model that learns from data its own answers shaped), named as a path
("fraud -> risk -> fraud"; a model fed by its own output: "fraud -> fraud").

An upstream model that is not registered is allowed, with a warning: lineage is declared when
a consumer is registered, which may well be before its upstream model is. Such a name is a
node of the graph like any other, so registering the upstream model later with a declaration
that closes a loop is caught then.

The graph is tiny (one node per model, a few edges each), so a plain Tarjan and a bounded
search for the cycles serve; networkx would be a large dependency for twenty lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from sqlalchemy import func, select, tuple_
from sqlalchemy.orm import Session, sessionmaker

from backend.db.tables import AuditEventRow, FeatureSourceRow, ModelRow, ModelVersionRow
from backend.errors import Conflict, InputError
from backend.registry.names import MODEL_NAME_RULE, is_model_name
from backend.schemas import (
    MAX_FEATURE_SOURCES,
    FeatureSource,
    LineageCycle,
    LineageEdge,
    LineageGraph,
    LineageNode,
)

# At most this many cycles are named, and the search for them takes at most this many steps:
# a graph with more loops than anyone can read needs its loops broken, not listed.
MAX_CYCLES = 50
MAX_SEARCH_STEPS = 200_000
MAX_REASON_LENGTH = 2000
FORCED_ACTION = "lineage_cycle_forced"

Successors = Mapping[str, Collection[str]]


# ---------------------------------------------------------------- cycles


def _strongly_connected(graph: Mapping[str, Sequence[str]]) -> list[list[str]]:
    """Tarjan's components, iteratively (no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> tuple[str, Iterator[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return node, iter(graph[node])

    for root in sorted(graph):
        if root in index:
            continue
        work = [visit(root)]
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    work.append(visit(child))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def find_cycles(successors: Successors, through: str | None = None) -> list[list[str]]:
    """Every elementary cycle once (those through ``through`` only, when given), each as a
    path from its alphabetically first model back to it: [["fraud", "risk", "fraud"]]."""
    graph: dict[str, list[str]] = {node: sorted(set(nexts)) for node, nexts in successors.items()}
    for nexts in list(graph.values()):
        for node in nexts:
            graph.setdefault(node, [])
    cycles: list[list[str]] = []
    steps = 0
    for component in _strongly_connected(graph):
        members = set(component)
        if through is not None and through not in members:
            continue
        if len(members) == 1 and component[0] not in graph[component[0]]:
            continue  # a lone model that does not feed itself
        for start in component:
            # Only models after ``start`` besides it: a cycle is found once, from its first.
            allowed = {member for member in members if member >= start}
            path = [start]
            pending = [iter([n for n in graph[start] if n in allowed])]
            while pending:
                steps += 1
                if steps > MAX_SEARCH_STEPS:
                    return cycles
                step_to = next(pending[-1], None)
                if step_to is None:
                    pending.pop()
                    path.pop()
                elif step_to == start:
                    if through is None or through in path:
                        cycles.append([*path, start])
                        if len(cycles) >= MAX_CYCLES:
                            return cycles
                elif step_to not in path:
                    path.append(step_to)
                    pending.append(iter([n for n in graph[step_to] if n in allowed]))
    return sorted(cycles, key=lambda cycle: (len(cycle), cycle))


def cycle_text(path: Sequence[str]) -> str:
    return " -> ".join(path)


def explain_cycle(path: Sequence[str], features: Mapping[tuple[str, str], Sequence[str]]) -> str:
    """The loop in plain words, with the features that carry it and what to do about it."""

    def carried(source: str, target: str) -> str:
        names = [f"'{name}'" for name in features.get((source, target), ())]
        if not names:
            return ""
        joined = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
        return f" (as {joined})"

    advice = (
        "measured performance can fool you, because it is judged on data that its own "
        "answers shaped; break the loop or keep held-out traffic that the loop does not touch."
    )
    if len(path) == 2:
        model = path[0]
        return (
            f"{model}'s own output comes back as its input{carried(model, model)}: a feedback "
            f"loop — its {advice}"
        )
    steps = [
        f"{source}'s output feeds {target}{carried(source, target)}"
        for source, target in pairwise(path)
    ]
    said = ", ".join(steps[:-1]) + f", and {steps[-1]}"
    # Model names keep their case, even at the start of the sentence: they are names.
    return f"{said}: a feedback loop — each model's {advice}"


# ---------------------------------------------------------------- what versions declared


@dataclass(frozen=True)
class _ModelState:
    name: str
    serving: str | None
    latest: str | None

    @property
    def declaring(self) -> str | None:
        return self.serving or self.latest


def _declared(session: Session) -> tuple[dict[str, _ModelState], list[LineageEdge]]:
    """Every registered model, and the edges their declaring versions declare."""
    rows = session.execute(
        select(
            ModelRow.id, ModelRow.name, ModelRow.active_version, func.max(ModelVersionRow.number)
        )
        .join(ModelVersionRow, ModelVersionRow.model_id == ModelRow.id, isouter=True)
        .group_by(ModelRow.id, ModelRow.name, ModelRow.active_version)
    ).all()
    models: dict[str, _ModelState] = {}
    declaring: dict[tuple[int, int], str] = {}
    for model_id, name, active, latest in rows:
        state = _ModelState(name, active, str(latest) if latest is not None else None)
        models[name] = state
        if state.declaring is not None and state.declaring.isdigit():
            declaring[(model_id, int(state.declaring))] = name
    edges: list[LineageEdge] = []
    if declaring:
        sources = session.execute(
            select(
                ModelVersionRow.model_id,
                ModelVersionRow.number,
                FeatureSourceRow.feature,
                FeatureSourceRow.source_model,
                FeatureSourceRow.source_output,
            )
            .join(FeatureSourceRow, FeatureSourceRow.version_id == ModelVersionRow.id)
            .where(tuple_(ModelVersionRow.model_id, ModelVersionRow.number).in_(list(declaring)))
            .order_by(FeatureSourceRow.id)
        ).all()
        for model_id, number, feature, source_model, output in sources:
            edges.append(
                LineageEdge(
                    from_model=source_model,
                    to_model=declaring[(model_id, number)],
                    feature=feature,
                    output=output,  # type: ignore[arg-type]  # written from a FeatureOutput
                    declared_by_version=str(number),
                )
            )
    return models, edges


def _successors(edges: Sequence[LineageEdge]) -> dict[str, set[str]]:
    successors: dict[str, set[str]] = defaultdict(set)
    for edge in edges:
        successors[edge.from_model].add(edge.to_model)
    return successors


def _features_by_pair(edges: Sequence[LineageEdge]) -> dict[tuple[str, str], list[str]]:
    features: dict[tuple[str, str], list[str]] = defaultdict(list)
    for edge in edges:
        features[(edge.from_model, edge.to_model)].append(edge.feature)
    return features


def _cycle(path: list[str], edges: Sequence[LineageEdge]) -> LineageCycle:
    return LineageCycle(
        path=path, text=cycle_text(path), explanation=explain_cycle(path, _features_by_pair(edges))
    )


# ---------------------------------------------------------------- the graph, as read


def lineage_graph(sessions: sessionmaker[Session], visible: Collection[str] | None) -> LineageGraph:
    """The graph as it stands, for a reader who may see the models ``visible`` (None: all).

    A scoped reader sees the edges its own models declared (their version info names the
    upstream models anyway), upstream models outside its scope only by name, and the cycles
    whose every model it may see.
    """
    with sessions() as session:
        models, edges = _declared(session)
    cycles = find_cycles(_successors(edges))

    def shown(name: str) -> bool:
        return visible is None or name in visible

    edges = [edge for edge in edges if shown(edge.to_model)]
    cycles = [path for path in cycles if all(shown(name) for name in path)]
    on_cycle = {(a, b) for path in cycles for a, b in pairwise(path)}
    cycle_models = {name for path in cycles for name in path}
    names = {name for name in models if shown(name)}
    names |= {edge.from_model for edge in edges}
    nodes = []
    for name in sorted(names):
        state = models.get(name)
        in_scope = shown(name)
        nodes.append(
            LineageNode(
                name=name,
                registered=state is not None,
                serving_version=state.serving if state and in_scope else None,
                latest_version=state.latest if state and in_scope else None,
                declaring_version=state.declaring if state and in_scope else None,
                on_cycle=name in cycle_models,
                in_scope=in_scope,
            )
        )
    return LineageGraph(
        nodes=nodes,
        edges=[
            edge.model_copy(update={"on_cycle": (edge.from_model, edge.to_model) in on_cycle})
            for edge in edges
        ],
        cycles=[_cycle(path, edges) for path in cycles],
    )


# ---------------------------------------------------------------- a registration's declaration


@dataclass(frozen=True)
class LineageDeclaration:
    """A registration's feature sources, and whether a feedback loop they close is accepted
    (``force`` with a ``reason``, kept in the audit trail)."""

    sources: tuple[FeatureSource, ...] = ()
    force: bool = False
    reason: str = ""

    def __post_init__(self) -> None:
        if len(self.sources) > MAX_FEATURE_SOURCES:
            raise InputError(
                f"at most {MAX_FEATURE_SOURCES} feature sources; got {len(self.sources)}",
                "feature_sources",
            )
        seen: set[str] = set()
        for i, source in enumerate(self.sources):
            if not is_model_name(source.model):
                raise InputError(MODEL_NAME_RULE, f"feature_sources[{i}].model")
            if source.feature in seen:
                raise InputError(
                    f"feature {source.feature!r} is declared twice: a feature comes from one model",
                    f"feature_sources[{i}].feature",
                )
            seen.add(source.feature)
        if self.force and not self.reason.strip():
            raise InputError(
                "registering a feedback loop anyway needs a reason (why the loop is acceptable), "
                "kept in the audit trail",
                "lineage_reason",
            )
        if len(self.reason) > MAX_REASON_LENGTH:
            raise InputError(
                f"at most {MAX_REASON_LENGTH} characters; got {len(self.reason)}", "lineage_reason"
            )

    def check_features(self, signature: Sequence[Mapping[str, Any]]) -> None:
        """Each declared feature is one of the version's inputs."""
        names = [str(spec["name"]) for spec in signature]
        for i, source in enumerate(self.sources):
            if source.feature not in names:
                raise InputError(
                    f"{source.feature!r} is not an input of this version; its inputs are "
                    f"{', '.join(names)}"[:500],
                    f"feature_sources[{i}].feature",
                )

    def check(self, session: Session, model: str) -> LineageOutcome:
        """What declaring these sources for ``model`` would do to the graph: the loops it
        closes (refused, 409, unless forced) and the upstream models not registered yet."""
        if not self.sources:
            return LineageOutcome()
        models, edges = _declared(session)
        proposed = [edge for edge in edges if edge.to_model != model] + [
            LineageEdge(
                from_model=source.model,
                to_model=model,
                feature=source.feature,
                output=source.output,
                declared_by_version="new",
            )
            for source in self.sources
        ]
        cycles = [_cycle(path, proposed) for path in find_cycles(_successors(proposed), model)]
        if cycles and not self.force:
            named = "; ".join(cycle.text for cycle in cycles)
            raise Conflict(
                f"these feature sources close a feedback loop: {named}. "
                f"{cycles[0].explanation} To register anyway, pass force_lineage with a "
                "lineage_reason (CLI: --force-lineage --lineage-reason)",
                "feature_sources",
                details={"cycles": [cycle.model_dump(mode="json") for cycle in cycles]},
            )
        warnings = [
            f"model {name!r} is not registered (yet): the lineage names it, and its loops are "
            "checked when it is registered"
            for name in sorted({source.model for source in self.sources} - set(models) - {model})
        ]
        warnings += [
            f"registered with a feedback loop, by force: {cycle.text} ({self.reason.strip()})"
            for cycle in cycles
        ]
        return LineageOutcome(cycles=cycles, warnings=warnings)

    def rows(self) -> list[FeatureSourceRow]:
        return [
            FeatureSourceRow(
                feature=source.feature, source_model=source.model, source_output=source.output
            )
            for source in self.sources
        ]


@dataclass(frozen=True)
class LineageOutcome:
    cycles: list[LineageCycle] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def audit_event(
        self, model: str, version: str, actor: str, role: str, reason: str
    ) -> AuditEventRow | None:
        """The record of a loop registered by force: which loops, why, by whom."""
        if not self.cycles:
            return None
        return AuditEventRow(
            actor=actor,
            role=role,
            model=model,
            action=FORCED_ACTION,
            to_version=version,
            reason=reason.strip(),
            details={
                "cycles": [cycle.text for cycle in self.cycles],
                "paths": [cycle.path for cycle in self.cycles],
            },
        )
