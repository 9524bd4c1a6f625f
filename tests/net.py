"""Helpers shared by the tests that start real servers on loopback: ports and waiting."""

from __future__ import annotations

import socket

from bench.waiting import poll


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
    """Poll until predicate() returns something truthy; return it or fail with ``what``."""
    value, last = poll(predicate, timeout, interval)
    if value:
        return value
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")
