"""The overview's device summary: the API's ``summaryOnly`` numbers, counted at most every
``SUMMARY_TTL`` seconds per process and organization.

Counting is one grouped query over the whole device table (devices/summary.py), the cost the
API pays for ``summaryOnly``; an overview open in many browsers, reloading, must not pay it on
every load. Like the inventory metrics (flightctl/metrics.py) it is a short-lived per-process
cache: nothing in it must survive, and the page says how old the numbers are.
"""

from __future__ import annotations

import threading
import time

from devices.models import Device
from devices.summary import summarize_queryset

SUMMARY_TTL = 10.0

_lock = threading.Lock()
_cache: dict = {}


def device_summary(org_id) -> tuple[dict, float]:
    """``(summary, age in seconds)`` of the organization's devices."""
    now = time.monotonic()
    with _lock:
        hit = _cache.get(org_id)
        if hit is not None and now - hit[1] < SUMMARY_TTL:
            return hit[0], now - hit[1]
    summary = summarize_queryset(Device.objects.restrict(org_id))
    with _lock:
        _cache[org_id] = (summary, time.monotonic())
    return summary, 0.0


def forget() -> None:
    with _lock:
        _cache.clear()
