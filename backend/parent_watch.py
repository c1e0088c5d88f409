"""Stop serving when the process that started this one ends, however it ends.

The console starts its embedded backend with a pipe on the backend's stdin and never writes
to it. When the console ends (a clean quit, SIGTERM, a crash or kill -9) the kernel closes
its end, the read here returns end-of-file, and the backend stops the orderly way: the same
SIGTERM a clean quit sends, so uvicorn's graceful stop flushes the prediction log (whose
writer child then drains the spool and exits when its own pipe closes). The parent's pid is
polled as well, for a starter that handed its pipe to another process by mistake.

The pipe is read with ``os.read`` on its descriptor, never through ``sys.stdin.buffer``: a
daemon thread blocked in a buffered read holds that reader's lock, and a process that exits
while it does (the "already served" refusal) hangs at interpreter shutdown until the parent
closes the pipe, which the console does only once the process has ended.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

log = logging.getLogger(__name__)

PARENT_POLL_S = 1.0


class ParentWatch:
    def __init__(self, fd: int | None = None, parent_pid: int | None = None):
        self._fd = fd if fd is not None else sys.stdin.fileno()
        self._parent_pid = parent_pid if parent_pid is not None else os.getppid()
        self._stopped = threading.Event()
        self._fired = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._read_until_closed, name="parent-pipe", daemon=True).start()
        threading.Thread(target=self._poll_parent, name="parent-pid", daemon=True).start()

    def _read_until_closed(self) -> None:
        try:
            while os.read(self._fd, 4096):
                pass  # nothing is ever sent; only the end of the pipe matters
        except (OSError, ValueError):
            pass
        self._parent_gone("its pipe closed")

    def _poll_parent(self) -> None:
        while not self._stopped.wait(PARENT_POLL_S):
            if os.getppid() != self._parent_pid:
                self._parent_gone(f"process {self._parent_pid} ended")

    def _parent_gone(self, how: str) -> None:
        if not self._fired.acquire(blocking=False):
            return
        self._stopped.set()
        log.warning("the process that started this server has ended (%s); stopping", how)
        os.kill(os.getpid(), signal.SIGTERM)
