"""Admission control for enrollment: a bounded share of each agent API process.

Connected devices and enrolling ones share the agent API's event loop, its thread pool, its
database connections and the machine's CPU. A storm of enrollments (thousands of devices
switched on at once, or re-enrolling after a reinstall) used to take them all: each enrollment
call ran in a new thread of its own, and on a slow day the waiting long-polls and status
reports of devices already enrolled were answered minutes late (docs/scale.md). Here at most
``enrollment_concurrency`` enrollment calls run at once per process and ``enrollment_queue``
more wait their turn, costing nothing but a future while they wait; beyond that a call is
answered ``503`` with ``Retry-After``, which agents honour (they retry enrollment on any 5xx).
Status reports and long-polls never queue here.

Concurrency alone does not bound what a storm costs the machine: most of an enrollment's CPU
is spent after its request, in the approval and signing (user API), the new device's fleet
adoption and first render (task workers) and its first TLS handshakes (docs/scale.md). New
requests (``POST``) are therefore also paced, and the pace **adapts** to the connected
devices' latency, the way a rollout's does (``fleets/pacing.py``): a fixed rate was either too
fast for a busy or small host (unpaced, 35-40 enrollments/s, put the connected devices' status
p99 at 1.4 s on 2 cores) or needlessly slow on an idle one, and the right figure had to be
found by hand (docs/scale.md, fifth and sixth rounds).

:class:`EnrollmentPace` is the controller, additive-increase/multiplicative-decrease: the
rate starts at :data:`START` of the process's share of ``enrollment_rate`` (the share is
``enrollment_rate / agent_api_workers``, and is the ceiling), and every :data:`WINDOW` it
looks at the worst of two things this process measured meanwhile from the traffic it serves:
how long its status PUTs took (handler entry to the response sent, ``agent_api/hotpath.py``)
and how late a periodic sleep of the event loop woke (what every request waits before its
handler even starts: TLS handshakes and parsing run in the loop, and a starved process
wakes late). Over ``enrollment_latency_target`` the rate is cut by :data:`CUT`; under it,
the rate grows by :data:`STEP` of the share; it never falls below :data:`FLOOR` of the share
(a storm must progress) nor rises above the share. When no long-poll waits in the process
and no status report has come in for :data:`QUIET` seconds, no connected device is there to
protect (the storm's own load on the loop is not held against it) and the rate climbs to
the ceiling. The worst sample rather than a quantile: a second holds a dozen reports per process
at 500 devices, and the goal is on the tail (status p99 < 500 ms as the devices see it,
which adds their own side of the connection to what is measured here, so the target is set
well below it).

Admitted requests leave the queue in arrival order, released by one ticker per process every
:data:`TICK` at the current rate (a token bucket whose depth is one tick's worth: no burst),
so a cut or a rise applies to the requests already waiting, not only to later ones. The
ticker runs only while enrollments arrive and stops :data:`IDLE` seconds after the last one;
outside a storm the hot path's only cost is one clock read and one attribute test per status
report. The pace is process-local and starts afresh with each storm: it is a reading of this
moment's load, nothing that must survive a restart or be shared between processes (each
process paces its share on what it sees itself). A paced call waits in the gate's queue, so
the queue's bound still answers the excess with 503.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

from django.conf import settings

from agent_api.listener import listener
from flightctl.api import outage
from flightctl.api.errors import status_body

log = logging.getLogger(__name__)

#: paths whose calls are admitted here: everything made with the enrollment certificate
ENROLLMENT_PREFIX = "/api/v1/enrollmentrequests"

#: seconds between two adjustments of the rate: the window the signal is taken over
WINDOW = 1.0
#: seconds between two releases of waiting requests (and two event-loop lag samples)
TICK = 0.05
#: the starting rate, as a share of the ceiling: with the default 100/s over 2 processes,
#: 10/s each, half of the 20/s that kept the status tail inside its goal on 2 shared cores
START = 0.2
#: the floor, as a share of the ceiling: never zero, a storm must progress
FLOOR = 0.1
#: additive increase per window, as a share of the ceiling (+2/s a second at 50/s: from the
#: start to the ceiling in 20 s when nothing is slow); multiplicative decrease. The signal
#: trails the rate by a second or two (an admitted request's approval, signing, first
#: handshakes and render follow it), so a faster rise overshoots before the first cut.
STEP, CUT = 0.04, 0.7
#: seconds without a status report after which, unless a long-poll waits here, nobody is
#: connected to this process (after a rollout reports come in waves, seconds apart)
QUIET = 30.0
#: seconds without a new enrollment request after which the ticker stops
IDLE = 10.0


class EnrollmentPace:
    """The admitted rate of new enrollment requests in one process during a storm, and the
    latency signal it follows. Every method takes the time (``time.monotonic``) as an
    argument, so that it is driven by a fake clock in tests."""

    def __init__(self, share: float, target_seconds: float, now: float):
        self.ceiling = float(share)
        self.floor = self.ceiling * FLOOR
        self.rate = self.ceiling * START
        self.step = self.ceiling * STEP
        self.target = target_seconds
        self._window_ends = now + WINDOW
        self._worst = 0.0  # the window's slowest status report or loop wake-up, seconds
        self._credit, self._credit_at = 1.0, now  # the first request starts at once
        #: (worst seconds or None when nobody was connected, new rate) of the last hour's
        #: adjustments, for tests; the lowest and highest rates and the cuts for the log
        self.history: deque[tuple[float | None, float]] = deque(maxlen=3600)
        self.lowest = self.highest = self.rate
        self.cuts = 0

    # -- the signal ------------------------------------------------------------------------

    def status_report(self, seconds: float) -> None:
        """A status PUT was answered in ``seconds`` (the hot path: no allocation)."""
        if seconds > self._worst:
            self._worst = seconds

    def loop_lag(self, seconds: float) -> None:
        """A sleep of the event loop woke ``seconds`` late."""
        if seconds > self._worst:
            self._worst = seconds

    # -- the controller --------------------------------------------------------------------

    def adjust(self, now: float, connected: bool) -> None:
        """At the end of each window, move the rate on what the window saw; ``connected``:
        some device is connected to this process (the caller knows, see :class:`Admission`).
        """
        if now < self._window_ends:
            return
        self._window_ends = now + WINDOW
        worst, self._worst = self._worst, 0.0
        if not connected:  # nobody to protect here: as fast as allowed
            worst = None
        if worst is not None and worst > self.target:
            self.rate = max(self.floor, self.rate * CUT)
            self.cuts += 1
        else:
            self.rate = min(self.ceiling, self.rate + self.step)
        self.lowest, self.highest = min(self.lowest, self.rate), max(self.highest, self.rate)
        self.history.append((worst, self.rate))

    def take(self, now: float) -> bool:
        """One request may start now (and is counted), or not yet."""
        # Credit accrues at the current rate, one tick's worth at most: a request that waited
        # through a slow tick does not bring a burst of others with it.
        self._credit = min(max(1.0, self.rate * TICK),
                           self._credit + (now - self._credit_at) * self.rate)
        self._credit_at = now
        if self._credit >= 1:
            self._credit -= 1
            return True
        return False


class Admission:
    """The gate of one event loop (one process)."""

    def __init__(self):
        self._slots: asyncio.Semaphore | None = None
        self.waiting = 0
        #: the storm's pace while one is under way (None: no enrollment lately)
        self.pace: EnrollmentPace | None = None
        self._paced: deque[asyncio.Future] = deque()  # new requests waiting for their start
        self._last_request = 0.0
        self._last_report = -QUIET  # when this process last answered a status report
        #: calls answered 503 since the start (a figure for logs and tests)
        self.refused = 0

    def status_report(self, started: float, ended: float) -> None:
        """The hot path's measurement of a status PUT (``time.monotonic`` when its handler
        started and when its answer was sent): its time counts only while a storm is paced."""
        self._last_report = ended
        if self.pace is not None:
            self.pace.status_report(ended - started)

    def connected(self, now: float) -> bool:
        """Some device is connected to this process: a long-poll waits here, or a status
        report came in lately (a device's two connections may reach two processes)."""
        return bool(listener.waiters) or now - self._last_report < QUIET

    async def _start_paced(self) -> None:
        """Wait until this new request may start: in arrival order, at the pace's rate."""
        now = time.monotonic()
        self._last_request = now
        if self.pace is None:
            config = settings.FLIGHTCTL
            share = config.enrollment_rate / max(1, config.agent_api_workers)
            self.pace = EnrollmentPace(share, config.enrollment_latency_target / 1000, now)
            asyncio.get_running_loop().create_task(self._tick(self.pace))
        if not self._paced and self.pace.take(now):
            return
        start = asyncio.get_running_loop().create_future()
        self._paced.append(start)
        await start

    async def _tick(self, pace: EnrollmentPace) -> None:
        """The storm's ticker: samples the loop's lag, adjusts the rate, releases requests."""
        began = last = time.monotonic()
        admitted = 0
        try:
            while self._paced or last - self._last_request < IDLE:
                await asyncio.sleep(TICK)
                now = time.monotonic()
                pace.loop_lag(now - last - TICK)
                last = now
                pace.adjust(now, self.connected(now))
                while self._paced and (self._paced[0].done() or pace.take(now)):
                    start = self._paced.popleft()
                    if not start.done():  # a cancelled waiter takes no turn
                        start.set_result(None)
                        admitted += 1
        finally:
            self.pace = None
            for start in self._paced:  # never left waiting on a ticker that is gone
                if not start.done():
                    start.set_result(None)
            self._paced.clear()
        log.info("enrollment storm paced for %.0f s: %d requests waited their turn; rate "
                 "%.1f-%.1f/s in this process (ceiling %.1f/s), cut %d times", last - began,
                 admitted, pace.lowest, pace.highest, pace.ceiling, pace.cuts)

    def applies(self, path: str) -> bool:
        return path == ENROLLMENT_PREFIX or path.startswith(ENROLLMENT_PREFIX + "/")

    async def run(self, application, scope, receive, send, refuse) -> None:
        """Run ``application`` when a slot is free; ``refuse(answer)`` when the queue is
        full."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(settings.FLIGHTCTL.enrollment_concurrency)
        new = scope.get("method") == "POST" and scope.get("path") == ENROLLMENT_PREFIX
        # A call that would wait (for a slot, or a new request behind paced ones) counts
        # against the queue's bound: a storm held at a slow pace is told to come back later
        # rather than piling up connections here.
        waits = self._slots.locked() or (new and bool(self._paced))
        if waits and self.waiting >= settings.FLIGHTCTL.enrollment_queue:
            self.refused += 1
            await refuse((503, status_body(503, "too many enrollments at once; retry later"),
                          {"Retry-After": outage.retry_after()}))
            return
        self.waiting += 1
        try:
            if new:
                await self._start_paced()  # a new request; its polls and TPM answers are not
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            await application(scope, receive, send)
        finally:
            self._slots.release()


admission = Admission()
