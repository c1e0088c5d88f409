"""The console's pages, in navigation order; each is one module."""

from __future__ import annotations

from console.pages.base import Page
from console.pages.deployments import DeploymentsPage
from console.pages.drift import DriftPage
from console.pages.live import LivePage
from console.pages.models import ModelsPage
from console.pages.performance import PerformancePage

PAGES: tuple[type[Page], ...] = (LivePage, ModelsPage, DeploymentsPage)
PAGES += (DriftPage, PerformancePage)


def pages_for(role: str) -> list[type[Page]]:
    return [page for page in PAGES if role in page.roles]
