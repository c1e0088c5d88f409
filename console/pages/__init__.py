"""The console's pages, in navigation order; each is one module."""

from __future__ import annotations

from console.pages.alerts import AlertsPage
from console.pages.base import Page
from console.pages.deployments import DeploymentsPage
from console.pages.drift import DriftPage
from console.pages.feedback_loops import FeedbackLoopsPage
from console.pages.lineage import LineagePage
from console.pages.live import LivePage
from console.pages.models import ModelsPage
from console.pages.overview import OverviewPage
from console.pages.performance import PerformancePage
from console.pages.reports import ReportsPage
from console.pages.review import ReviewPage

# The Overview first: the page an operator opens to see whether all is well; then what watches
# the models (alerts, live traffic, drift, quality, feedback loops), then what changes them;
# then the review of held-out examples.
PAGES: tuple[type[Page], ...] = (
    OverviewPage,
    AlertsPage,
    LivePage,
    DriftPage,
    PerformancePage,
    FeedbackLoopsPage,
    LineagePage,
    ModelsPage,
    DeploymentsPage,
    # What end users reported, triaged by support staff beside the review queue.
    ReportsPage,
    # Last, so that the pages before it keep their Ctrl+number.
    ReviewPage,
)


def pages_for(role: str) -> list[type[Page]]:
    return [page for page in PAGES if role in page.roles]
