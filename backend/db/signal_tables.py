"""User signals (feedback): undo and complaint per prediction row, and their counts per
prediction minute (predictions/signal_counts.py keeps them)."""

from __future__ import annotations

from sqlalchemy import BigInteger, Float, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from backend.db.tables import Base


class UserSignalRow(Base):
    """A user's signal about one prediction row (stored by feedback/labels.py): "undo" (they
    undid what the model recommended) or "complaint". Apart from labels: a prediction may have
    a label and an undo. One per (model, request id, row, kind): sending it again changes
    nothing."""

    __tablename__ = "user_signals"
    __table_args__ = (
        UniqueConstraint(
            "model", "request_id", "row_index", "kind", name="uq_user_signals_prediction_kind"
        ),
        # The catch-up reads the signals still waiting for their prediction (minute -1).
        Index("ix_user_signals_minute", "minute"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str] = mapped_column(String(64))
    row_index: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    # Unix seconds.
    received_at: Mapped[float] = mapped_column(Float)
    source: Mapped[str] = mapped_column(String(128))
    # The logged prediction's version, route and minute once it is counted; minute -1 (and
    # version, route "") while the prediction is not in the log yet.
    version: Mapped[str] = mapped_column(String(32))
    route: Mapped[str] = mapped_column(String(16))
    minute: Mapped[int] = mapped_column(BigInteger)


class UserSignalCountRow(Base):
    """Signals of one kind about the predictions of one minute (by the prediction's time) of
    one (model, version, route), kept in the transaction that stores each signal."""

    __tablename__ = "user_signal_counts"

    model: Mapped[str] = mapped_column(String(128), primary_key=True)
    version: Mapped[str] = mapped_column(String(32), primary_key=True)
    route: Mapped[str] = mapped_column(String(16), primary_key=True)
    # The minute's start, Unix seconds.
    minute: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)
    signals: Mapped[int] = mapped_column(Integer, default=0)
