"""Whether a request came alone: a lone request has nothing to be batched with.

The API's ``InFlightCounter`` enters and leaves the gauge around every POST; the request
path asks it whether to predict at once or give a crowd one turn of the loop to show up.
"""

from __future__ import annotations

import time

# Requests count as one at a time this long after two last overlapped.
CROWD_MEMORY_S = 1.0
# A request that seems alone still yields one turn of the loop now and then, so that a crowd
# arriving is seen (tasks that arrived with it only start when it yields); otherwise requests
# coming one at a time skip that turn (an extra system call, ~5% of a cheap model's request).
CROWD_CHECK_INTERVAL_S = 0.01


class CrowdGauge:
    def __init__(self) -> None:
        # HTTP requests being handled right now.
        self.in_flight = 0
        # When two requests were last handled at once (monotonic seconds).
        self.last_crowded = -CROWD_MEMORY_S
        self._last_check = -CROWD_CHECK_INTERVAL_S

    def enter(self) -> None:
        self.in_flight += 1
        if self.in_flight > 1:
            self.last_crowded = time.monotonic()

    def leave(self) -> None:
        self.in_flight -= 1

    @property
    def alone(self) -> bool:
        return self.in_flight <= 1

    def surely_alone(self) -> bool:
        """Alone, long after the last crowd, and the crowd was looked for a moment ago.

        When False the caller yields one turn of the loop before deciding; that turn counts
        as a look for a crowd.
        """
        now = time.monotonic()
        if (
            self.in_flight <= 1
            and now - self.last_crowded > CROWD_MEMORY_S
            and now - self._last_check < CROWD_CHECK_INTERVAL_S
        ):
            return True
        self._last_check = now
        return False
