"""What a reporter's application shows for each status: plain words for an end user, saying
what happened to the report and how it will be fixed. Never notes, assignee or severity."""

from __future__ import annotations

from backend.schemas.reports import ReportStatus

PUBLIC_WORDS: dict[ReportStatus, tuple[str, str]] = {
    "new": (
        "We received your report",
        "Thank you. Your report is waiting for a person to look at it. You do not need to "
        "do anything; this page shows when there is news.",
    ),
    "in_review": (
        "A person is looking at it",
        "Someone on our team is checking the answer you reported against the information it "
        "was based on. You do not need to do anything now.",
    ),
    "needs_info": (
        "We need more information — the app will ask you",
        "To understand what went wrong we need a few more details. The app will ask you for "
        "them; your report stays open until then.",
    ),
    "confirmed": (
        "You were right: the model was wrong. We will correct it",
        "We checked and the answer you got was wrong. We use your report to correct the "
        "model; this page says when an update with the correction is out.",
    ),
    "not_model_error": (
        "We checked: the answer was right for the information given",
        "The answer matched the information the app had when it answered. If something in "
        "that information was wrong or has changed, update it in the app and ask again.",
    ),
    "duplicate": (
        "Someone reported the same problem; we handle them together",
        "Another report describes the same problem. We work on them as one, so this page "
        "follows that report's progress from now on.",
    ),
    "resolved": (
        "Fixed in an update",
        "The problem you reported is fixed in an update that is now in use. Thank you for "
        "helping us improve the answers.",
    ),
}


def public_words(status: ReportStatus) -> tuple[str, str]:
    """(headline, explanation) for an end user."""
    return PUBLIC_WORDS[status]
