"""Request counts, errors and latency histograms of a simulation.

Latencies go into logarithmic buckets (5 % wide) rather than lists: ten thousand devices make
millions of samples over a long run, and bucket counts can be subtracted, so a reader of two
snapshots gets the percentiles of exactly the window between them (the benchmark's steady
state) without the simulator knowing where that window is.
"""

from __future__ import annotations

import math
import time
from collections import Counter, deque

_BASE = math.log(1.05)
_FLOOR_MS = 0.1


def bucket(ms: float) -> int:
    return max(0, int(math.log(max(ms, _FLOOR_MS) / _FLOOR_MS) / _BASE))


def bucket_upper_ms(index: int) -> float:
    return _FLOOR_MS * math.exp((index + 1) * _BASE)


def percentile(hist: dict, fraction: float) -> float | None:
    """The upper bound (ms) of the bucket holding the ``fraction`` quantile of ``hist``."""
    items = sorted((int(k), v) for k, v in hist.items() if v > 0)
    total = sum(v for _, v in items)
    if not total:
        return None
    rank, seen = fraction * total, 0
    for index, count in items:
        seen += count
        if seen >= rank:
            return round(bucket_upper_ms(index), 1)
    return round(bucket_upper_ms(items[-1][0]), 1)


def diff(newer: dict, older: dict | None) -> dict:
    """Per-operation counts and histograms of the window between two :meth:`Stats.snapshot`."""
    out = {}
    for op, now in newer["ops"].items():
        before = (older or {}).get("ops", {}).get(op) or {"count": 0, "errors": 0, "hist": {}}
        hist = {k: v - before["hist"].get(k, 0) for k, v in now["hist"].items()}
        out[op] = {"count": now["count"] - before["count"],
                   "errors": now["errors"] - before["errors"],
                   "hist": {k: v for k, v in hist.items() if v}}
    return out


def merge(snapshots: list[dict]) -> dict:
    """One :meth:`Stats.snapshot` of several simulator processes (counts and histograms add;
    each device is in one process only)."""
    out = {"enrolled": 0, "enroll_failed": 0, "errors_total": 0, "error_samples": [],
           "ops": {}, "arrivals": {}, "codes": {}, "acked": {}}
    for snapshot in snapshots:
        for key in ("enrolled", "enroll_failed", "errors_total"):
            out[key] += snapshot.get(key, 0)
        out["error_samples"] += snapshot.get("error_samples", [])
        out["arrivals"].update(snapshot.get("arrivals") or {})
        out["acked"].update(snapshot.get("acked") or {})
        for key, count in (snapshot.get("codes") or {}).items():
            out["codes"][key] = out["codes"].get(key, 0) + count
        for op, data in snapshot.get("ops", {}).items():
            into = out["ops"].setdefault(op, {"count": 0, "errors": 0, "hist": {}})
            into["count"] += data["count"]
            into["errors"] += data["errors"]
            for bucket_index, count in data["hist"].items():
                into["hist"][bucket_index] = into["hist"].get(bucket_index, 0) + count
    return out


def summarize(ops: dict, seconds: float | None = None) -> dict:
    """count, errors, p50/p99 (ms) and, given the window's length, the rate of each op."""
    out = {}
    for op, data in sorted(ops.items()):
        row = {"count": data["count"], "errors": data["errors"],
               "p50_ms": percentile(data["hist"], 0.50),
               "p99_ms": percentile(data["hist"], 0.99)}
        if seconds:
            row["per_second"] = round(data["count"] / seconds, 1)
        out[op] = row
    return out


class Stats:
    """What the simulated devices did, by operation (``status.put``, ``rendered.204``, ...)."""

    def __init__(self):
        self.counts: Counter = Counter()
        self.errors: Counter = Counter()
        self.hists: dict[str, Counter] = {}
        self.error_samples: deque = deque(maxlen=20)
        self.enrolled = 0
        self.enroll_failed = 0  # devices that gave up enrolling
        self.started = time.time()
        #: rendered version -> [devices that received it, wall time of the last receipt]
        self.renders: dict[int, list] = {}
        #: device -> [newest version it received, wall time of receipt], so the benchmark can
        #: set each arrival against the render's time in the database
        self.arrivals: dict[str, list] = {}
        #: "<op> <HTTP status>" (or "<op> connection") -> count, of failed calls: a fault run
        #: tells a refused connection or a 503 from a 500
        self.codes: Counter = Counter()
        #: device -> [sequence number of its last acknowledged status, wall time of the ack]:
        #: what the server must still hold after a fault
        self.acked: dict[str, list] = {}

    def record(self, op: str, seconds: float) -> None:
        self.counts[op] += 1
        self.hists.setdefault(op, Counter())[bucket(seconds * 1000)] += 1

    def error(self, op: str, message: str, code: int | str = "") -> None:
        if code:
            self.codes[f"{op} {code}"] += 1
        self.errors[op] += 1
        self.counts.setdefault(op, 0)
        self.hists.setdefault(op, Counter())
        self.error_samples.append(f"{op}: {message}"[:300])

    def received_render(self, version: int, device: str = "") -> None:
        now = time.time()
        entry = self.renders.setdefault(version, [0, 0.0])
        entry[0] += 1
        entry[1] = now
        if device:
            self.arrivals[device] = [version, now]

    def snapshot(self, phase: str, devices: int) -> dict:
        return {
            "time": time.time(), "phase": phase, "devices": devices, "enrolled": self.enrolled,
            "enroll_failed": self.enroll_failed,
            "ops": {op: {"count": self.counts[op], "errors": self.errors[op],
                         "hist": {str(k): v for k, v in self.hists.get(op, {}).items()}}
                    for op in self.counts},
            "errors_total": sum(self.errors.values()),
            "error_samples": list(self.error_samples),
            "renders": {str(k): v for k, v in self.renders.items()},
            "arrivals": self.arrivals,
            "codes": dict(self.codes),
            "acked": self.acked,
        }
