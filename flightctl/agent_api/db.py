"""The agent API's asynchronous database access, for the one query on the long-poll's path.

Django's ORM is synchronous: under ASGI every ORM call runs in a worker thread of its own
request. For ``/rendered`` that would mean a thread for each of thousands of long-polls woken
at once by a fleet rollout, and one on every poll that only learns "nothing new". The version
check therefore runs here, on a small psycopg async pool, in the event loop itself; the ORM is
used only when a new rendered spec must actually be serialized.
"""

from __future__ import annotations

import asyncio

from psycopg_pool import AsyncConnectionPool

from flightctl.agent_api.listener import _conninfo

_pools: dict[int, AsyncConnectionPool] = {}


async def pool() -> AsyncConnectionPool:
    """The event loop's pool (one per loop: a pool cannot be shared across loops)."""
    key = id(asyncio.get_running_loop())
    found = _pools.get(key)
    if found is None:
        # Four connections serve every long-poll of the process: each query is a primary-key
        # lookup of well under a millisecond, so more would only add PostgreSQL backends.
        found = _pools[key] = AsyncConnectionPool(
            _conninfo(), min_size=1, max_size=4, open=False,
            kwargs={"autocommit": True, "prepare_threshold": 0})
        await found.open()
    return found


async def rendered_version(org_id, name: str) -> int | None:
    """The device's current rendered version, or None if there is no such device."""
    async with (await pool()).connection() as conn:
        cursor = await conn.execute(
            "SELECT rendered_version FROM devices_device WHERE org_id = %s AND name = %s",
            (org_id, name))
        row = await cursor.fetchone()
    return None if row is None else row[0]
