"""Review: people label the held-out examples, the traffic the model was not allowed to steer.

Keyboard first, for an hour at a time: the digits answer with a class (in the model's order),
S skips, U takes back the last decision, Left and Right move within the batch. A decision
moves on at once: its call runs in the background, one after the other in the order made (an
undo never overtakes the answer it takes back), and the next batch is fetched before the
current one runs out, so the reviewer never waits on the network.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QStackedWidget, QVBoxLayout

from backend.schemas.review import ReviewBatch, ReviewDecision, ReviewItem, ReviewStats
from console.client import ApiClient, ApiError
from console.context import ConsoleContext
from console.dialogs.errors import describe_error
from console.pages.base import ALL_ROLES
from console.pages.refreshing import ModelPage
from console.widgets.common import make_label
from console.widgets.review_example import MAX_CLASS_KEYS, ReviewExampleView, ReviewProgress
from console.widgets.values import ClassNames

BATCH = 10
# Fetch the next batch when this few examples are left in the current one.
PREFETCH_WHEN_LEFT = 3
STATS_MS = 5_000
HELP = (
    "Keys: <b>1</b>–<b>9</b> answer with that class · <b>S</b> skip (cannot tell) · "
    "<b>U</b> undo your last answer or skip · <b>←</b> <b>→</b> move within the batch. "
    "Each example is yours for a few minutes; one you leave returns to the queue."
)
EMPTY_TITLE = "No held-out examples to review"

Call = Callable[[ApiClient], Any]


class ReviewPage(ModelPage):
    key = "review"
    title = "Review"
    icon = "review"
    tooltip = (
        "Label held-out examples (traffic the model did not steer) with the correct answer; "
        "the labels train the next version without the model's own influence."
    )
    roles = ALL_ROLES
    # The stats (throughput, agreement) move while people review; new examples appear.
    refresh_ms = STATS_MS
    model_tip = "The model whose held-out examples you review."

    def __init__(self, context: ConsoleContext):
        super().__init__(context)
        self.model = ""
        self.items: list[ReviewItem] = []
        self.position = 0
        # Items decided here (their call may still be on its way): a fetch never brings back.
        self.decided: set[int] = set()
        self.pending: deque[tuple[Call, Callable[[Any], None], Callable[[Exception], None]]] = (
            deque()
        )
        self.deciding = False
        self.last_batch: ReviewBatch | None = None
        self.stats: ReviewStats | None = None
        self.status.setText("")
        self.help = make_label(HELP, wrap=True)
        self.progress = ReviewProgress()
        self.example = ReviewExampleView()
        self.empty = make_label("", wrap=True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.stack = QStackedWidget()
        self.stack.addWidget(self.empty)
        self.stack.addWidget(self.example)

        top = QHBoxLayout()
        top.addWidget(make_label("Model", self.model_choice.toolTip()))
        top.addWidget(self.model_choice)
        top.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.help)
        layout.addWidget(self.progress)
        layout.addWidget(self.stack, 1)

        self.example.answer_chosen.connect(self.answer)
        self.example.skip_requested.connect(self.skip)
        self.example.undo_requested.connect(self.undo)
        self.example.move_requested.connect(self.move)
        # Window-wide while this page shows (and off while it does not): the keys work
        # wherever the focus is, the navigation list included; a text field keeps its keys.
        for digit in range(1, MAX_CLASS_KEYS + 1):
            self.add_shortcut(str(digit), lambda d=digit: self.answer_key(d))
        self.add_shortcut("S", self.skip)
        self.add_shortcut("U", self.undo)
        self.add_shortcut("Left", lambda: self.move(-1))
        self.add_shortcut("Right", lambda: self.move(1))
        self._show_empty("Loading the models…")

    # ---------------------------------------------------------------- lifecycle

    def shutdown(self) -> None:
        self.pending.clear()
        super().shutdown()

    def refresh(self, replace: bool = True) -> None:
        """The stats again, and the queue when nothing is left to review (new held-out traffic
        appears without a key press); a batch on its way is never replaced by a poll."""
        if not self.model:
            return
        self.fetch_stats()
        if not self.items:
            self.fetch_batch()

    # ---------------------------------------------------------------- models and batches

    def show_no_models(self) -> None:
        self._show_empty("There are no models yet: register one on the Models page.")

    def model_changed(self) -> None:
        model = self.current_model()
        if model == self.model:
            return
        self.model = model
        self.items, self.position, self.decided = [], 0, set()
        self._show_empty(f"Reading the held-out examples of {model}…")
        self.fetch_batch()
        self.fetch_stats()

    def fetch_batch(self) -> None:
        model = self.model
        if not model:
            return
        self.call_backend(
            "next",
            lambda client: client.review_next(model, BATCH),
            self._take_batch,
            lambda error: self.set_status(
                f"Could not read the next examples: {describe_error(error)}"
            ),
        )

    def _take_batch(self, batch: ReviewBatch) -> None:
        if batch.model != self.model:
            return
        self.last_batch = batch
        known = {item.item for item in self.items} | self.decided
        # Oldest first after the one shown (two fetches may each have claimed a part).
        later = self.items[self.position + 1 :] + [
            item for item in batch.items if item.item not in known
        ]
        self.items = self.items[: self.position + 1] + sorted(later, key=lambda i: i.item)
        self._show_current()

    def fetch_stats(self) -> None:
        model = self.model
        if not model:
            return
        self.call_backend("stats", lambda client: client.review_stats(model), self._take_stats)

    def _take_stats(self, stats: ReviewStats) -> None:
        if stats.model != self.model:
            return
        self.stats = stats
        me = self.context.identity.name if self.context.identity else ""
        self.progress.show_stats(stats, me)

    # ---------------------------------------------------------------- showing

    def current(self) -> ReviewItem | None:
        return self.items[self.position] if 0 <= self.position < len(self.items) else None

    def _show_current(self) -> None:
        self.position = min(self.position, max(len(self.items) - 1, 0))
        item = self.current()
        if item is None:
            note = self.last_batch.note if self.last_batch is not None else ""
            self._show_empty(f"<h3>{EMPTY_TITLE}</h3>{note}")
            return
        self.example.show_item(item, self.position, len(self.items))
        self.stack.setCurrentWidget(self.example)
        if len(self.items) - self.position <= PREFETCH_WHEN_LEFT and not self.task_running("next"):
            self.fetch_batch()

    def _show_empty(self, text: str) -> None:
        self.empty.setText(text)
        self.stack.setCurrentWidget(self.empty)

    def move(self, step: int) -> None:
        if self.items:
            self.position = max(0, min(self.position + step, len(self.items) - 1))
            self._show_current()

    # ---------------------------------------------------------------- deciding

    def answer_key(self, digit: int) -> None:
        found, label = self.example.class_for_key(digit)
        if found:
            self.answer(label)
        elif self.current() is not None:
            count = len(self.example.class_buttons)
            self.set_status(f"{digit} is no class of this model: use 1 to {count}.")

    def answer(self, label: Any) -> None:
        item = self._take_current()
        if item is None:
            return
        model = item.model
        name = ClassNames(item.classes, item.class_names).name(label)
        self._decide(
            lambda client: client.review_answer(model, item.item, label),
            item,
            f"Answered {name}",
        )

    def skip(self) -> None:
        item = self._take_current()
        if item is not None:
            model = item.model
            self._decide(lambda client: client.review_skip(model, item.item), item, "Skipped")

    def undo(self) -> None:
        model = self.model
        if not model:
            return

        def undone(result: Any) -> None:
            item = result.item
            self.decided.discard(item.item)
            if item.model == self.model and all(i.item != item.item for i in self.items):
                self.items.insert(self.position, item)
            self.position = next(i for i, shown in enumerate(self.items) if shown.item == item.item)
            verb = "answer" if result.undone.decision == "answer" else "skip"
            self.set_status(f"Took back your {verb} on request {item.request_id}.")
            self._show_current()
            self.fetch_stats()

        self._enqueue(lambda client: client.review_undo(model), undone, self._undo_failed)

    def _undo_failed(self, error: Exception) -> None:
        self.set_status(f"Nothing undone: {describe_error(error)}.")

    def _take_current(self) -> ReviewItem | None:
        """The example shown, taken out of the batch (the next one shows at once)."""
        item = self.current()
        if item is None:
            return None
        del self.items[self.position]
        self.decided.add(item.item)
        self._show_current()
        return item

    def _decide(self, call: Call, item: ReviewItem, done_text: str) -> None:
        position = self.position

        def decided(result: ReviewDecision) -> None:
            extra = f" ({result.note})" if result.note else ""
            self.set_status(f"{done_text}: request {item.request_id}.{extra}")
            self.fetch_stats()

        def failed(error: Exception) -> None:
            self.set_status(f"Request {item.request_id} not recorded: {describe_error(error)}.")
            if isinstance(error, ApiError) and error.status in (404, 409):
                return  # not this reviewer's any more (taken over, or gone): leave it out
            # No answer from the backend: the example comes back to be decided again.
            self.decided.discard(item.item)
            if item.model == self.model:
                self.items.insert(min(position, len(self.items)), item)
                self._show_current()

        self._enqueue(call, decided, failed)

    def _enqueue(
        self, call: Call, on_done: Callable[[Any], None], on_error: Callable[[Exception], None]
    ) -> None:
        """Run decision calls one at a time, in the order they were made."""
        self.pending.append((call, on_done, on_error))
        self._run_next()

    def _run_next(self) -> None:
        if self.deciding or not self.pending:
            return
        call, on_done, on_error = self.pending.popleft()
        self.deciding = True

        def finished(result: Any) -> None:
            self.deciding = False
            on_done(result)
            self._run_next()

        def failed(error: Exception) -> None:
            self.deciding = False
            on_error(error)
            self._run_next()

        self.call_backend("decide", call, finished, failed)
