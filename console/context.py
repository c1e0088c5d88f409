"""What every page gets: the API client, the background-work helper, who is signed in."""

from __future__ import annotations

from dataclasses import dataclass, field

from PySide6.QtCore import QSettings

from backend.schemas import WhoAmI
from console.client import ApiClient
from console.tasks import TaskRunner


@dataclass
class ConsoleContext:
    client: ApiClient
    tasks: TaskRunner
    settings: QSettings
    identity: WhoAmI | None = None
    # Human-readable description of where the backend is ("local backend", a URL).
    origin: str = field(default="")
