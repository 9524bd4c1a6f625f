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
        #: calls answered 503 since the start (a figure for logs and tests)
        self.refused = 0

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
            await self._slots.acquire()
        finally:
            self.waiting -= 1
        try:
            await application(scope, receive, send)
        finally:
            self._slots.release()


admission = Admission()
