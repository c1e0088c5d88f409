"""One backend per data directory: an exclusive lock held while serving, and where it listens.

The serving process holds ``fcntl.flock`` on ``server.lock`` for as long as it lives; the
kernel releases it however that process ends (a kill -9 included), so a claim is never left
stale. ``server.json`` (written once the server accepts connections) says where the holder
listens, so a second start can say which backend already serves the directory, and a console
can connect to it instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from dataclasses import dataclass

from backend.errors import ServeDeckError
from backend.settings import Settings

# The line a refused start prints on stdout, with the holder's URL or "-": the console reads it.
BUSY_LINE = "SERVEDECK BUSY"


@dataclass(frozen=True)
class RunningServer:
    """What ``server.json`` says about the backend serving a data directory."""

    url: str | None
    pid: int | None


class DataDirBusy(ServeDeckError):
    """Another live process serves this data directory."""

    def __init__(self, settings: Settings, running: RunningServer):
        where = f" at {running.url}" if running.url else " (it is still starting)"
        who = f"process {running.pid}" if running.pid else "another process"
        super().__init__(
            f"the data directory {settings.data_dir} is already served by {who}{where}; "
            "connect to that backend (servedeck --connect URL) or stop it first",
            "data_dir",
        )
        self.running = running


class DataDirClaim:
    """The exclusive right to serve one data directory, held until ``release`` or exit."""

    def __init__(self, settings: Settings, fd: int):
        self.settings = settings
        self._fd: int | None = fd

    @classmethod
    def take(cls, settings: Settings) -> DataDirClaim:
        settings.ensure_dirs()
        # Not inheritable (os.open's default): the writer child must not keep the claim alive.
        fd = os.open(settings.server_lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise DataDirBusy(settings, running_server(settings)) from None
        # The holder's pid, for a second start that comes before server.json exists.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        # A server.json left by a holder that was killed describes nobody: drop it.
        settings.server_info_file.unlink(missing_ok=True)
        return cls(settings, fd)

    def release(self) -> None:
        if self._fd is not None:
            self.settings.server_info_file.unlink(missing_ok=True)
            os.close(self._fd)  # closing the only descriptor releases the lock
            self._fd = None


def running_server(settings: Settings) -> RunningServer:
    """Where the holder of a busy data directory listens, as far as its files tell."""
    url: str | None = None
    pid: int | None = None
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        info = json.loads(settings.server_info_file.read_text())
        url, pid = str(info["url"]), int(info["pid"])
    if pid is None:
        with contextlib.suppress(OSError, ValueError):
            pid = int(settings.server_lock_file.read_text().strip())
    return RunningServer(url=url, pid=pid)
