"""The overview's whole-fleet numbers: the API's ``summaryOnly`` summary and the progress of
the rollouts under way, counted at most every ``TTL`` seconds per process.

Each is a grouped query over (nearly) the whole device table (devices/summary.py,
fleets/progress.py), the cost the API pays for ``summaryOnly``; an overview open in many
browsers, reloading, must not pay it on every load. Like the inventory metrics
(flightctl/metrics.py) this is a short-lived per-process cache: nothing in it must survive,
and the page says how old the numbers are.
"""

from __future__ import annotations

import threading
import time

from devices.models import Device
from devices.summary import summarize_queryset

TTL = 10.0

_lock = threading.Lock()
_cache: dict = {}


def cached(key, compute):
    """``(value, age in seconds)``: ``compute()``'s value, recomputed once ``TTL`` is over."""
    now = time.monotonic()
    with _lock:
        hit = _cache.get(key)
        if hit is not None and now - hit[1] < TTL:
            return hit[0], now - hit[1]
    value = compute()
    with _lock:
        if len(_cache) > 1000:  # keys include page contents; keep the cache small
            _cache.clear()
        _cache[key] = (value, time.monotonic())
    return value, 0.0


def device_summary(org_id) -> tuple[dict, float]:
    """``(summary, age)`` of the organization's devices, as ``summaryOnly`` counts it."""
    return cached(("summary", org_id), lambda: summarize_queryset(
        Device.objects.restrict(org_id)))


def forget() -> None:
    with _lock:
        _cache.clear()
