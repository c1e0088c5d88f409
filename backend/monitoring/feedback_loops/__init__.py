"""Feedback-loop indicators: served traffic against held-out traffic (see ``report``)."""
