"""One ``LISTEN flightctl_rendered`` connection per process, shared by every waiting long-poll.

A waiting ``GET /rendered`` costs one future in a dict and one timer: no thread, no database
connection, no polling. The render code sends ``pg_notify`` in its transaction, so a payload
arrives only after the new spec is committed; the listener wakes the futures of that device.

Notifications sent while the listener was not (yet) connected are lost, so every
(re)connection wakes *all* waiters, which re-read their device and go back to waiting if
nothing changed. Waiters therefore subscribe before they read the device: whatever happens
after the read either reaches them as a notification or as that wake-up. A lost connection
(PostgreSQL restarting) wakes nobody: the waiters keep waiting, and are woken when the listener
is back, rather than all failing at once against a database that is not there.

On a stop the process :meth:`drains <RenderListener.drain>`: every waiter is woken with
:data:`DRAIN` and answers 204 at once, and so does every long-poll that arrives after.
"""

from __future__ import annotations

import asyncio
import logging

import psycopg
from django.conf import settings
from psycopg.conninfo import make_conninfo

from devices.bulk import RENDER_CHANNEL

log = logging.getLogger(__name__)
#: what a waiter is woken with when the process stops
DRAIN = "drain"


def _conninfo() -> str:
    db = settings.DATABASES["default"]
    params = {
        "dbname": db.get("NAME"), "user": db.get("USER"), "password": db.get("PASSWORD"),
        "host": db.get("HOST"), "port": db.get("PORT"),
    }
    params.update({k: v for k, v in (db.get("OPTIONS") or {}).items() if isinstance(v, str)})
    return make_conninfo(**{k: v for k, v in params.items() if v})


class RenderListener:
    """Dispatches render notifications to the futures of waiting requests (one event loop)."""

    def __init__(self):
        self.waiters: dict[str, set[asyncio.Future]] = {}
        self._task: asyncio.Task | None = None
        self.draining = False

    def drain(self) -> None:
        """The process is stopping: wake every waiter with DRAIN (from the event loop)."""
        self.draining = True
        for futures in list(self.waiters.values()):
            self._wake(futures, DRAIN)

    @staticmethod
    def key(org_id, name: str) -> str:
        return f"{org_id}/{name}"

    def subscribe(self, org_id, name: str) -> asyncio.Future:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(self.key(org_id, name), set()).add(future)
        return future

    def unsubscribe(self, org_id, name: str, future: asyncio.Future) -> None:
        key = self.key(org_id, name)
        futures = self.waiters.get(key)
        if futures is not None:
            futures.discard(future)
            if not futures:
                del self.waiters[key]

    def _wake(self, futures, value) -> None:
        for future in list(futures):
            if not future.done():
                future.set_result(value)

    def _wake_all(self) -> None:
        for futures in list(self.waiters.values()):
            self._wake(futures, None)

    def dispatch(self, payload: str) -> None:
        key, _, version = payload.rpartition("/")
        futures = self.waiters.get(key)
        if futures:
            self._wake(futures, version)

    async def _run(self) -> None:
        delay = 0.5
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(_conninfo(),
                                                                 autocommit=True) as conn:
                    await conn.execute(f"LISTEN {RENDER_CHANNEL}")
                    delay = 0.5
                    self._wake_all()
                    async for notify in conn.notifies():
                        self.dispatch(notify.payload)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening whatever happened
                log.warning("render listener lost its connection (%s); reconnecting in %.1fs",
                            exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)


listener = RenderListener()
