"""Recent connections (QSettings) and their tokens (the system keyring, where one exists).

Without a usable keyring a token is not stored at all, unless the user agrees to keep it in
the console's settings file (readable by their account only).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QSettings

log = logging.getLogger(__name__)

SERVICE = "ServeDeck"
MAX_RECENT = 8


def keyring_available() -> bool:
    try:
        import keyring
        from keyring.backends import fail
    except ImportError:
        return False
    try:
        backend = keyring.get_keyring()
    except Exception:
        return False
    return not isinstance(backend, fail.Keyring) and getattr(backend, "priority", 0) > 0


def recent_connections(settings: QSettings) -> list[str]:
    value = settings.value("connections/recent", [])
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value or []]


def remember_connection(settings: QSettings, url: str) -> None:
    recent = [url, *[u for u in recent_connections(settings) if u != url]][:MAX_RECENT]
    settings.setValue("connections/recent", recent)


def stored_token(settings: QSettings, url: str) -> str | None:
    if keyring_available():
        import keyring

        try:
            return keyring.get_password(SERVICE, url)
        except Exception as exc:
            log.warning("keyring read failed: %s", exc)
    value = settings.value(f"tokens/{_key(url)}")
    return str(value) if value else None


def store_token(settings: QSettings, url: str, token: str, allow_plain_file: bool) -> str:
    """Keep the token; returns where it went, in words for the user."""
    if keyring_available():
        import keyring

        try:
            keyring.set_password(SERVICE, url, token)
            return "the system keyring"
        except Exception as exc:
            log.warning("keyring write failed: %s", exc)
    if not allow_plain_file:
        return "nowhere (you will be asked again)"
    settings.setValue(f"tokens/{_key(url)}", token)
    settings.sync()
    path = Path(settings.fileName())
    if path.exists():
        os.chmod(path, 0o600)
    return f"the settings file {path}"


def _key(url: str) -> str:
    return url.replace("/", "_").replace(":", "_")
