"""The lineage graph: models as boxes, an arrow from the model whose output is used to the
model that uses it, labelled with the input feature it becomes; feedback loops in red, and
written out in words beneath.

Drawn on a QGraphicsScene: a dozen boxes and arrows need no graph-layout library. Models are
placed in columns by how far downstream they are (upstream on the left); an arrow that goes
back upstream (closing a loop) is routed beneath the boxes, and a model fed by its own output
gets a loop over its box.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QPainter,
    QPainterPath,
    QPalette,
    QPen,
    QPolygonF,
    QResizeEvent,
)
from PySide6.QtWidgets import (
    QFrame,
    QGraphicsPathItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QLabel,
    QScrollArea,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from backend.schemas import LineageEdge, LineageGraph, LineageNode
from console.resources import colour
from console.widgets.common import make_label

BOX_WIDTH = 180.0
BOX_HEIGHT = 56.0
COLUMN_GAP = 150.0  # room for an arrow's label between two columns
ROW_GAP = 46.0
ARROW_SIZE = 9.0
MARGIN = 24.0
LOOPS_MAX_HEIGHT = 150

EMPTY_TITLE = "No lineage declared yet"
EMPTY_TEXT = (
    "When a model version is registered with feature sources (the inputs that other models' "
    "outputs produce), this page draws which model feeds which, and shows feedback loops in "
    "red. Declare them at registration: --feature-source FEATURE=MODEL on the command line, "
    "or feature_sources in the registration's metadata over HTTP."
)
LEGEND = (
    "An arrow goes from the model whose output is used to the model that uses it, labelled "
    "with the input it becomes. Red: a feedback loop."
)


# ---------------------------------------------------------------- layout (plain Python)


@dataclass(frozen=True)
class Placement:
    column: int
    row: int


def waypoint(source: str, target: str, column: int) -> str:
    """The name of the empty slot an arrow passes through in a column it skips (no model
    name holds a NUL)."""
    return f"\0{source}\0{target}\0{column}"


def place_nodes(names: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, Placement]:
    """Columns by the longest path from an upstream model, once the arrows that close loops
    are set aside (a depth-first search finds them); rows within a column near the models
    that feed them. An arrow that skips columns gets an empty slot (``waypoint``) in each, so
    that it passes between boxes, never through one."""
    successors: dict[str, list[str]] = defaultdict(list)
    for source, target in edges:
        if source != target:
            successors[source].append(target)
    # Arrows into a model still on the search path close a loop: they do not place models.
    backward: set[tuple[str, str]] = set()
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for root in sorted(names):
        if root in state:
            continue
        state[root] = 1
        stack = [(root, iter(sorted(set(successors[root]))))]
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                backward.add((node, child))
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(sorted(set(successors[child])))))
    forward = [
        (s, t) for s, t in edges if s != t and (s, t) not in backward and s in state and t in state
    ]
    column = {name: 0 for name in names}
    # Longest path on what is now acyclic: relax as often as there are models (tiny graphs).
    for _ in range(len(names)):
        changed = False
        for source, target in forward:
            if column[target] < column[source] + 1:
                column[target] = column[source] + 1
                changed = True
        if not changed:
            break
    # Within a column: a model fed by itself first (its loop is drawn above it), then the rest
    # near the models that feed them, and the ends of a loop's closing arrow last (that arrow
    # runs beneath the boxes, so nothing may sit below its ends).
    looping = {source for source, target in edges if source == target}
    closing = {name for pair in backward for name in pair}
    predecessors: dict[str, list[str]] = defaultdict(list)
    for source, target in forward:
        if column[target] - column[source] == 1:
            predecessors[target].append(source)
    slots = list(names)
    for source, target in list(forward):
        if column[target] - column[source] > 1:
            hops = [waypoint(source, target, c) for c in range(column[source] + 1, column[target])]
            for hop in hops:
                column[hop] = column[source] + 1 + hops.index(hop)
            slots += hops
            for before, after in pairwise([source, *hops, target]):
                predecessors[after].append(before)
    placements: dict[str, Placement] = {}
    for current in sorted(set(column.values())):

        def order(name: str) -> tuple[int, float, str]:
            group = 0 if name in looping else 2 if name in closing else 1
            rows = [placements[p].row for p in predecessors[name] if p in placements]
            return group, sum(rows) / len(rows) if rows else -1.0, name

        members = sorted((n for n in slots if column[n] == current), key=order)
        for row, name in enumerate(members):
            placements[name] = Placement(current, row)
    return placements


# ---------------------------------------------------------------- drawing


def _ports(
    other_ends: dict[tuple[str, str], str], boxes: dict[str, QRectF], *, outgoing: bool
) -> dict[tuple[str, str], float]:
    """The height at which each arrow leaves (or enters) its box, spread over the box's side
    in the order of the slots at the arrows' other ends (``other_ends``)."""
    by_box: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for pair in other_ends:
        by_box[pair[0] if outgoing else pair[1]].append(pair)
    heights = {}
    for name, mine in by_box.items():
        box = boxes[name]
        mine.sort(key=lambda pair: boxes[other_ends[pair]].center().y())
        for index, pair in enumerate(mine):
            heights[pair] = box.top() + box.height() * (index + 1) / (len(mine) + 1)
    return heights


def _arrow_head(path: QPainterPath) -> QPolygonF:
    tip = path.pointAtPercent(1.0)
    angle = math.radians(path.angleAtPercent(1.0))
    # Qt's angles turn counter-clockwise on a y-down scene.
    direction = QPointF(math.cos(angle), -math.sin(angle))
    normal = QPointF(-direction.y(), direction.x())
    base = tip - direction * ARROW_SIZE * 1.6
    return QPolygonF([tip, base + normal * ARROW_SIZE * 0.7, base - normal * ARROW_SIZE * 0.7])


class LineageScene(QGraphicsScene):
    """The boxes and arrows of one graph."""

    def show_graph(self, graph: LineageGraph) -> None:
        self.clear()
        names = [node.name for node in graph.nodes]
        pairs: dict[tuple[str, str], list[LineageEdge]] = defaultdict(list)
        for edge in graph.edges:
            pairs[(edge.from_model, edge.to_model)].append(edge)
        placed = place_nodes(names, list(pairs))
        rows_per_column: dict[int, int] = defaultdict(int)
        for place in placed.values():
            rows_per_column[place.column] = max(rows_per_column[place.column], place.row + 1)
        tallest = max(rows_per_column.values(), default=1)
        boxes: dict[str, QRectF] = {}
        for name, place in placed.items():
            # Each column centred on the tallest one.
            offset = (tallest - rows_per_column[place.column]) * (BOX_HEIGHT + ROW_GAP) / 2
            boxes[name] = QRectF(
                place.column * (BOX_WIDTH + COLUMN_GAP),
                offset + place.row * (BOX_HEIGHT + ROW_GAP),
                BOX_WIDTH,
                BOX_HEIGHT,
            )
        bottom = max((box.bottom() for box in boxes.values()), default=0.0)
        below = 0
        drawn = [pair for pair in sorted(pairs) if pair[0] in boxes and pair[1] in boxes]
        hops = {
            (s, t): [waypoint(s, t, c) for c in range(placed[s].column + 1, placed[t].column)]
            for s, t in drawn
            if placed[t].column > placed[s].column
        }
        # Arrows leave and enter a box at separate heights, in the order of what is at their
        # other ends: arrows into one model do not meet in one point, nor do their labels.
        out_y = _ports({p: [*h, p[1]][0] for p, h in hops.items()}, boxes, outgoing=True)
        in_y = _ports({p: [p[0], *h][-1] for p, h in hops.items()}, boxes, outgoing=False)
        for source, target in drawn:
            edges = pairs[(source, target)]
            anchor = None
            if source == target:
                path = self._self_loop(boxes[source])
            elif (source, target) in hops:
                points = [QPointF(boxes[source].right(), out_y[(source, target)])]
                for hop in hops[(source, target)]:
                    slot = boxes[hop]
                    points += [QPointF(slot.left(), slot.center().y()), slot.center()]
                    points.append(QPointF(slot.right(), slot.center().y()))
                points.append(QPointF(boxes[target].left(), in_y[(source, target)]))
                path = self._forward(points)
                # Labelled in the last gap, next to the model it feeds: the middles of long
                # arrows meet where other arrows cross.
                anchor = (points[-2] + points[-1]) / 2
            else:
                below += 1
                path = self._backward(boxes[source], boxes[target], bottom + 40.0 * below)
            self._draw_edge(path, edges, anchor)
        for node in graph.nodes:
            self._draw_node(node, boxes[node.name])
        self.setSceneRect(self.itemsBoundingRect().adjusted(-MARGIN, -MARGIN, MARGIN, MARGIN))

    @staticmethod
    def _forward(points: list[QPointF]) -> QPainterPath:
        """Through the points: curves across the gaps between columns, straight across the
        empty slots of the columns it skips."""
        path = QPainterPath(points[0])
        for index, (start, end) in enumerate(pairwise(points)):
            if index % 3 == 0:  # a gap between two columns
                bend = (end.x() - start.x()) / 2
                path.cubicTo(start + QPointF(bend, 0), end - QPointF(bend, 0), end)
            else:
                path.lineTo(end)
        return path

    @staticmethod
    def _backward(source: QRectF, target: QRectF, depth: float) -> QPainterPath:
        """Back upstream, beneath the boxes: out of the source's bottom, into the target's."""
        start = QPointF(source.center().x() + 20, source.bottom())
        end = QPointF(target.center().x() + 20, target.bottom())
        path = QPainterPath(start)
        path.cubicTo(QPointF(start.x(), depth), QPointF(end.x(), depth), end)
        return path

    @staticmethod
    def _self_loop(box: QRectF) -> QPainterPath:
        start = QPointF(box.center().x() - 28, box.top())
        end = QPointF(box.center().x() + 28, box.top())
        path = QPainterPath(start)
        path.cubicTo(start + QPointF(-40, -70), end + QPointF(40, -70), end)
        return path

    def _draw_edge(
        self, path: QPainterPath, edges: list[LineageEdge], anchor: QPointF | None
    ) -> None:
        looped = any(edge.on_cycle for edge in edges)
        tone = QColor(colour("bad" if looped else "muted"))
        item = QGraphicsPathItem(path)
        item.setPen(QPen(tone, 3.0 if looped else 1.6))
        tip = "\n".join(
            f"{edge.to_model}'s input '{edge.feature}' is {edge.from_model}'s "
            f"{edge.output or 'output'} (declared by {edge.to_model} version "
            f"{edge.declared_by_version})"
            for edge in edges
        )
        item.setToolTip(tip + ("\nPart of a feedback loop." if looped else ""))
        item.setData(0, "loop-edge" if looped else "edge")
        self.addItem(item)
        head = self.addPolygon(_arrow_head(path), QPen(tone), QBrush(tone))
        head.setToolTip(item.toolTip())
        label = QGraphicsSimpleTextItem(", ".join(edge.feature for edge in edges))
        label.setBrush(tone)
        label.setToolTip(item.toolTip())
        middle = anchor if anchor is not None else path.pointAtPercent(0.5)
        bounds = label.boundingRect()
        label.setPos(middle.x() - bounds.width() / 2, middle.y() - bounds.height() - 3)
        # A backdrop keeps the label readable where it crosses another arrow.
        backdrop = self.addRect(
            label.mapRectToScene(bounds).adjusted(-3, -1, 3, 1),
            QPen(Qt.PenStyle.NoPen),
            QBrush(self.palette().color(QPalette.ColorRole.Base)),
        )
        backdrop.setOpacity(0.85)
        self.addItem(label)

    def _draw_node(self, node: LineageNode, box: QRectF) -> None:
        outline = QPainterPath()
        outline.addRoundedRect(box, 8, 8)
        tone = QColor(colour("bad" if node.on_cycle else "accent"))
        pen = QPen(tone, 2.6 if node.on_cycle else 1.6)
        if not node.registered or not node.in_scope:
            pen.setStyle(Qt.PenStyle.DashLine)
        fill = QColor(colour("error_bg" if node.on_cycle else "panel"))
        item = self.addPath(outline, pen, QBrush(fill))
        item.setData(0, "loop-node" if node.on_cycle else "node")
        item.setData(1, node.name)
        if not node.registered:
            detail = "not registered yet"
        elif not node.in_scope:
            detail = "outside your token's models"
        elif node.serving_version:
            detail = f"serving version {node.serving_version}"
        else:
            detail = f"not serving (newest: {node.latest_version or '-'})"
        declared = (
            f"\nIts inputs as declared by version {node.declaring_version}."
            if node.declaring_version
            else ""
        )
        looped = "\nOn a feedback loop." if node.on_cycle else ""
        item.setToolTip(f"{node.name}: {detail}{declared}{looped}")
        text_colour = self.palette().color(QPalette.ColorRole.Text)
        name = QGraphicsSimpleTextItem(node.name, item)
        font = QFont(name.font())
        font.setBold(True)
        font.setPointSizeF(font.pointSizeF() * 1.1)
        name.setFont(font)
        name.setBrush(tone if node.on_cycle else text_colour)
        self._fit_text(name, box, box.top() + 8)
        sub = QGraphicsSimpleTextItem(detail, item)
        sub.setBrush(QColor(colour("muted")))
        self._fit_text(sub, box, box.bottom() - sub.boundingRect().height() - 8)

    @staticmethod
    def _fit_text(text: QGraphicsSimpleTextItem, box: QRectF, top: float) -> None:
        """Centred in the box; a long name is shortened with an ellipsis (its tooltip says it)."""
        full = text.text()
        while text.boundingRect().width() > box.width() - 14 and len(text.text()) > 4:
            text.setText(text.text()[:-2] + "…")
        if text.text() != full:
            text.setToolTip(full)
        text.setPos(box.center().x() - text.boundingRect().width() / 2, top)


class LineageCanvas(QGraphicsView):
    """Shows the whole graph, scaled down to fit but never up (boxes stay a readable size)."""

    def __init__(self, scene: LineageScene):
        super().__init__(scene)
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)

    def fit(self) -> None:
        self.resetTransform()
        rect = self.sceneRect()
        if rect.isEmpty():
            return
        view = self.viewport().rect()
        scale = min(1.0, view.width() / rect.width(), view.height() / rect.height())
        if scale < 1.0:
            self.scale(scale, scale)
        self.centerOn(rect.center())

    def resizeEvent(self, event: QResizeEvent) -> None:
        super().resizeEvent(event)
        self.fit()


def loops_html(graph: LineageGraph) -> str:
    """The loops in words: each path, then what it means and what to do."""
    if not graph.cycles:
        return (
            f"<span style='color:{colour('ok')}'>No feedback loop:</span> no model's output "
            "comes back, directly or through other models, as its own input."
        )
    bad = colour("bad")
    parts = [
        f"<p><b style='color:{bad}'>Feedback loop: {html.escape(cycle.text, quote=False)}</b><br>"
        f"{html.escape(cycle.explanation, quote=False)}</p>"
        for cycle in graph.cycles
    ]
    return "".join(parts)


class LineageView(QWidget):
    """The graph (or why there is none) above its loops in words."""

    def __init__(self) -> None:
        super().__init__()
        self.scene = LineageScene()
        self.canvas = LineageCanvas(self.scene)
        self.canvas.setObjectName("lineage-canvas")
        self.empty_title = make_label(EMPTY_TITLE, name="heading")
        self.empty_text = make_label(EMPTY_TEXT, name="muted", wrap=True)
        empty = QWidget()
        empty_layout = QVBoxLayout(empty)
        empty_layout.addStretch(1)
        for label in (self.empty_title, self.empty_text):
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            empty_layout.addWidget(label)
        empty_layout.addStretch(2)
        self.stack = QStackedWidget()
        self.stack.addWidget(empty)
        self.stack.addWidget(self.canvas)
        self.legend = make_label(LEGEND, name="muted", wrap=True)
        self.loops = QLabel()
        self.loops.setObjectName("lineage-loops")
        self.loops.setWordWrap(True)
        self.loops.setTextFormat(Qt.TextFormat.RichText)
        self.loops.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.loops.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        # Many loops scroll in their own strip: the graph keeps most of a small screen.
        self.loops_area = QScrollArea()
        self.loops_area.setWidget(self.loops)
        self.loops_area.setWidgetResizable(True)
        self.loops_area.setFrameShape(QFrame.Shape.NoFrame)
        self.loops_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.loops_area.setMaximumHeight(LOOPS_MAX_HEIGHT)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack, 1)
        layout.addWidget(self.legend)
        layout.addWidget(self.loops_area)
        self.show_message(EMPTY_TITLE, EMPTY_TEXT)

    @property
    def showing_graph(self) -> bool:
        return self.stack.currentWidget() is self.canvas

    def show_graph(self, graph: LineageGraph) -> None:
        if not graph.edges:
            self.show_message(EMPTY_TITLE, EMPTY_TEXT)
            return
        self.scene.show_graph(graph)
        self.stack.setCurrentWidget(self.canvas)
        self.legend.show()
        self.loops.setText(loops_html(graph))
        self.loops_area.show()
        self.canvas.fit()

    def show_message(self, title: str, text: str) -> None:
        self.scene.clear()
        self.empty_title.setText(title)
        self.empty_text.setText(text)
        self.stack.setCurrentIndex(0)
        self.legend.hide()
        self.loops_area.hide()
