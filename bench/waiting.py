"""Polling until something holds: shared by the benchmark and the test suite."""

from __future__ import annotations

import time


def poll(predicate, timeout: float, interval: float):
    """Call ``predicate()`` every ``interval`` seconds until it returns something truthy or
    ``timeout`` seconds have passed; returns ``(value, last)``: the truthy value (or None) and
    the last value seen, for the caller's error message."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last, last
        time.sleep(interval)
    return None, last


def wait_for(what: str, check, timeout: float, interval: float = 0.2):
    """:func:`poll`, and a RuntimeError naming ``what`` and the last value seen on a timeout."""
    value, last = poll(check, timeout, interval)
    if not value:
        raise RuntimeError(f"timed out after {timeout:.0f}s waiting for {what} ({last!r})")
    return value
