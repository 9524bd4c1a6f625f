"""Synchronous ORM code called from an event loop (the ASGI servers of both APIs)."""

from __future__ import annotations

import asyncio

from django.db import close_old_connections


def in_thread(function, *args):
    """Run ``function(*args)`` in the loop's thread pool. The thread is in no request cycle,
    so it hands its database connection back (to the pool, or closes it) itself."""

    def run():
        try:
            return function(*args)
        finally:
            close_old_connections()

    return asyncio.to_thread(run)
