"""How fast a fleet-wide rollout renders: adaptive, as fast as the devices' deliveries keep up.

Every render wakes its device's long-poll, and each woken device fetches its spec, applies it
and reports: a wave the agent API serves at a few milliseconds of CPU per device. Woken all at
once, 10,000 devices queued for tens of seconds behind each other; paced at a fixed rate
(``rollout_dispatch_rate``, 120 devices a second) they did not, but the right rate depends on
the machine and its load that day: 120/s was too fast on a day when the machine ran 2-3x
slower, and needlessly slow on an idle one (docs/scale.md).

So the rate adapts (additive-increase/multiplicative-decrease, as TCP does): the agent API
records the moment it delivers a render to a waiting long-poll (a last-seen write, flushed
within a second), and every half second the pass looks at the pages it rendered at least
:data:`PROBE_AGE` seconds earlier. If (nearly) every connected device of those pages has
been delivered, the agent API keeps up and the rate grows by a step; if more than a tenth
have not, their deliveries are queueing and the rate is cut by 30 %. It starts at
``rollout_dispatch_rate`` and stays between a quarter of it and eight times it. Devices that
have not called in for :data:`CONNECTED_SECONDS` before their render are not counted: an
offline device is not a slow server.
"""

from __future__ import annotations

import time
from collections import deque

from django.db import connection

#: how old a page must be before its deliveries are judged: the tail a delivery may take
#: (the goal is 500 ms) plus the last-seen flush (<= 1 s)
PROBE_AGE = 1.5
#: seconds between two adjustments
INTERVAL = 0.5
#: delivered shares above/below which the rate grows/shrinks: the tail is what is
#: controlled, so the rate grows only when (nearly) every device was on time. With 0.9/0.6
#: and 2 s, 2,000 devices converged in 11 s but 1 % waited over 1.7 s (docs/scale.md).
GROW_ABOVE, SHRINK_BELOW = 0.98, 0.9
#: additive increase (a tenth of the starting rate per adjustment: +24/s a second from 120),
#: multiplicative decrease. Growing by a quarter per adjustment overshot: the signal is 1.5-2 s
#: late, and by then the rate had doubled (2,000 devices: delivery p50 1.9 s, docs/scale.md).
STEP, CUT = 0.1, 0.7
#: a device heard from less than this long before its render is connected (its long-poll
#: comes back at least every 2 minutes and its status every minute)
CONNECTED_SECONDS = 150
#: fewer connected devices than this in the probed pages say nothing either way
MIN_SAMPLE = 5


class Pace:
    """The current rate of one dispatch pass, and what it has rendered."""

    def __init__(self, rate: float):
        self.rate = float(rate)
        self.floor, self.ceiling = max(1.0, rate / 4), rate * 8
        self.step = max(1.0, rate * STEP)
        self._rendered: deque[tuple[float, list[int]]] = deque()
        self._next_check = time.monotonic() + INTERVAL
        #: (delivered, connected, new rate) of every adjustment, for logs and tests
        self.history: list[tuple[int, int, float]] = []

    def page_size(self, limit: int) -> int:
        """Ten pages a second: a stream, not bursts."""
        return min(limit, max(1, int(self.rate // 10)))

    def rendered(self, ids: list[int], at: float | None = None) -> None:
        self._rendered.append((time.monotonic() if at is None else at, ids))

    def adjust(self, now: float | None = None) -> None:
        """Judge the pages old enough and move the rate (at most every INTERVAL seconds)."""
        now = time.monotonic() if now is None else now
        if now < self._next_check:
            return
        self._next_check = now + INTERVAL
        probe: list[int] = []
        while self._rendered and now - self._rendered[0][0] >= PROBE_AGE:
            probe.extend(self._rendered.popleft()[1])
        if not probe:
            return
        delivered, connected = delivered_share(probe)
        if connected < MIN_SAMPLE:
            return
        share = delivered / connected
        if share >= GROW_ABOVE:
            self.rate = min(self.ceiling, self.rate + self.step)
        elif share < SHRINK_BELOW:
            self.rate = max(self.floor, self.rate * CUT)
        self.history.append((delivered, connected, self.rate))


def delivered_share(ids: list[int]) -> tuple[int, int]:
    """Of these rendered devices, how many were heard from since their render, and how many
    were connected when it happened. Raw SQL: a count with two conditions on two columns of
    the same row, on the ids of a few pages (primary key lookups)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FILTER (WHERE last_seen >= rendered_at), count(*) "
            "FROM devices_device WHERE id = ANY(%s) AND rendered_at IS NOT NULL "
            "AND last_seen >= rendered_at - make_interval(secs => %s)",
            [ids, CONNECTED_SECONDS])
        delivered, connected = cursor.fetchone()
    return delivered, connected
