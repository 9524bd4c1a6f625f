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
requests (``POST``) are therefore also paced: at most ``enrollment_rate`` a second across one
host's agent API, each process taking its share (``enrollment_rate / agent_api_workers``) and
handing out start times ``1 / share`` apart (a token bucket one token deep: no burst). A
paced call waits in the same queue, so the queue's bound still answers the excess with 503.
"""

from __future__ import annotations

import asyncio

from django.conf import settings

from flightctl.api import outage
from flightctl.api.errors import status_body

#: paths whose calls are admitted here: everything made with the enrollment certificate
ENROLLMENT_PREFIX = "/api/v1/enrollmentrequests"


class Admission:
    """The gate of one event loop (one process)."""

    def __init__(self):
        self._slots: asyncio.Semaphore | None = None
        self.waiting = 0
        self._next_start = 0.0  # the event loop's clock: when the next new request may start
        #: calls answered 503 since the start (a figure for logs and tests)
        self.refused = 0

    async def _paced(self) -> None:
        """Wait for this call's start time: ``1 / share`` seconds after the previous one's."""
        config = settings.FLIGHTCTL
        interval = max(1, config.agent_api_workers) / config.enrollment_rate
        loop = asyncio.get_running_loop()
        now = loop.time()
        start = max(now, self._next_start)
        self._next_start = start + interval
        if start > now:
            await asyncio.sleep(start - now)

    def applies(self, path: str) -> bool:
        return path == ENROLLMENT_PREFIX or path.startswith(ENROLLMENT_PREFIX + "/")

    async def run(self, application, scope, receive, send, refuse) -> None:
        """Run ``application`` when a slot is free; ``refuse(answer)`` when the queue is
        full."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(settings.FLIGHTCTL.enrollment_concurrency)
        if self._slots.locked() and self.waiting >= settings.FLIGHTCTL.enrollment_queue:
            self.refused += 1
            await refuse((503, status_body(503, "too many enrollments at once; retry later"),
                          {"Retry-After": outage.retry_after()}))
            return
        self.waiting += 1
        try:
            if scope.get("method") == "POST" and scope.get("path") == ENROLLMENT_PREFIX:
                await self._paced()  # a new request; its TPM challenge answers are not paced
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            await application(scope, receive, send)
        finally:
            self._slots.release()


admission = Admission()
