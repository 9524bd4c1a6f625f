"""The agent API's asynchronous database access, for the one query on the long-poll's path.

Django's ORM is synchronous: under ASGI every ORM call runs in a worker thread of its own
request. For ``/rendered`` that would mean a thread for each of thousands of long-polls woken
at once by a fleet rollout, and one on every poll that only learns "nothing new". The version
check therefore runs here, in the event loop itself, on one dedicated connection per loop; the
ORM is used only when a new rendered spec must actually be serialized.

One connection behind a lock rather than a pool: each query is a primary-key lookup of well
under a millisecond, so one connection answers thousands a second, and it keeps no state a
cancelled request could leak (a psycopg async pool lost connections to long-polls cancelled
while checking one out and then timed every caller out, at 1,000 devices; docs/scale.md).
"""

from __future__ import annotations

import asyncio
import json

import psycopg

from agent_api.listener import _conninfo
from flightctl.api.annotations import AWAITING_RECONNECT

AWAITING_JSON = json.dumps({AWAITING_RECONNECT: "true"})


class VersionReader:
    def __init__(self):
        self._conn: psycopg.AsyncConnection | None = None
        self._lock: asyncio.Lock | None = None

    async def rendered_state(self, org_id, name: str) -> tuple[int, bool, bool] | None:
        row = await self._one(
            "SELECT rendered_version, annotations @> %s::jsonb, console_pending "
            "FROM devices_device WHERE org_id = %s AND name = %s", (AWAITING_JSON, org_id, name))
        return None if row is None else (row[0], bool(row[1]), bool(row[2]))

    async def take_console_pending(self, org_id, name: str) -> None:
        # Not a representation change: no resource_version bump (devices.bulk).
        await self._one("UPDATE devices_device SET console_pending = false WHERE org_id = %s "
                        "AND name = %s AND console_pending RETURNING id", (org_id, name))

    async def _one(self, query: str, params: tuple):
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = await psycopg.AsyncConnection.connect(_conninfo(),
                                                                       autocommit=True)
                cursor = await self._conn.execute(query, params)
                row = await cursor.fetchone()
            except BaseException:
                # Broken, or cancelled mid-query: the connection's state is unknown; drop it.
                conn, self._conn = self._conn, None
                if conn is not None:
                    await asyncio.shield(conn.close())
                raise
        return row


_reader = VersionReader()


async def rendered_state(org_id, name: str) -> tuple[int, bool, bool] | None:
    """The device's current rendered version, whether it awaits its reconnection after a
    database restore (devices.restore) and whether a console session waits to be handed to
    it (devices.console), or None if there is no such device."""
    return await _reader.rendered_state(org_id, name)


async def take_console_pending(org_id, name: str) -> None:
    """Clear the device's console flag: the answer about to be read carries its sessions."""
    await _reader.take_console_pending(org_id, name)
