"""Resource monitors: CPU, memory and disk usage against the spec's alert rules (agent.md §8.2).

A *monitor* samples one resource at its sampling interval; an *alert rule* fires when usage stays
above its percentage for longer than its duration. The highest firing severity is the resource's
status (Healthy / Warning / Critical); a critical CPU or memory alert defers updates.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from flightctl_agent.config import parse_duration

DEFAULT_MONITORS = [
    {"monitorType": "CPU", "samplingInterval": "1m", "alertRules": [
        {"severity": "Critical", "duration": "30m", "percentage": 90},
        {"severity": "Warning", "duration": "1h", "percentage": 80}]},
    {"monitorType": "Memory", "samplingInterval": "1m", "alertRules": [
        {"severity": "Critical", "duration": "30m", "percentage": 90},
        {"severity": "Warning", "duration": "1h", "percentage": 80}]},
    {"monitorType": "Disk", "samplingInterval": "1m", "path": "/sysroot", "alertRules": [
        {"severity": "Critical", "duration": "10m", "percentage": 90},
        {"severity": "Warning", "duration": "30m", "percentage": 80}]},
]
_RANK = {"Healthy": 0, "Info": 0, "Warning": 1, "Critical": 2}


def _cpu_times() -> tuple[int, int]:
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def memory_percent() -> float:
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, _, rest = line.partition(":")
        info[key] = int(rest.split()[0])
    free = (info.get("MemFree", 0) + info.get("Buffers", 0) + info.get("Cached", 0)
            + info.get("SReclaimable", 0) - info.get("Shmem", 0))
    total = info.get("MemTotal", 1)
    return int((total - free) * 100 / total)


def disk_percent(path: str) -> float | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None  # a monitored path that does not exist reports nothing
    if not st.f_blocks:
        return 0.0
    return (1 - st.f_bavail / st.f_blocks) * 100


class Monitor:
    """One resource's sampler and alert-rule state."""

    def __init__(self, spec: dict):
        self.kind = spec["monitorType"]
        self.interval = parse_duration(spec.get("samplingInterval", "1m"))
        self.path = spec.get("path", "/")
        self.rules = [{**r, "seconds": parse_duration(r["duration"])}
                      for r in spec.get("alertRules") or []]
        self.above_since: dict[str, float | None] = {r["severity"]: None for r in self.rules}
        self.next_sample = 0.0
        self._cpu_prev = None

    def sample(self) -> float | None:
        if self.kind == "CPU":
            now = _cpu_times()
            prev, self._cpu_prev = self._cpu_prev, now
            if prev is None or now[1] == prev[1]:
                return None
            return round((now[0] - prev[0]) * 100 / (now[1] - prev[1]))
        if self.kind == "Memory":
            return memory_percent()
        return disk_percent(self.path)

    def update(self, now: float) -> None:
        if now < self.next_sample:
            return
        self.next_sample = now + self.interval
        usage = self.sample()
        if usage is None:
            return
        for rule in self.rules:
            sev = rule["severity"]
            if usage > float(rule["percentage"]):
                self.above_since[sev] = self.above_since[sev] or now
            else:
                self.above_since[sev] = None

    def status(self, now: float) -> tuple[str, str]:
        best, info = "Healthy", ""
        for rule in self.rules:
            since = self.above_since[rule["severity"]]
            if since is not None and now - since > rule["seconds"] and \
                    _RANK[rule["severity"]] > _RANK[best]:
                best = rule["severity"] if rule["severity"] != "Info" else best
                info = rule.get("description") or (
                    f"{rule['severity']}: {self.kind} usage is above {rule['percentage']} % "
                    f"for more than {rule['duration']}")
        return best, info


class ResourceManager:
    """Samples the monitors of the current spec in a background thread."""

    def __init__(self):
        self._lock = threading.Lock()
        self._monitors: dict[str, Monitor] = {}
        self._specs = None
        self.sync(None)

    def sync(self, specs: list | None) -> None:
        specs = specs if specs is not None else DEFAULT_MONITORS
        if specs == self._specs:
            return
        with self._lock:
            self._specs = specs
            self._monitors = {m["monitorType"]: Monitor(m) for m in specs}

    def tick(self) -> None:
        now = time.monotonic()
        with self._lock:
            for m in self._monitors.values():
                m.update(now)

    def statuses(self) -> dict:
        now = time.monotonic()
        out = {"cpu": "Healthy", "memory": "Healthy", "disk": "Healthy"}
        with self._lock:
            for kind, m in self._monitors.items():
                out[kind.lower()] = m.status(now)[0]
        return out

    def alerts(self) -> list[str]:
        now = time.monotonic()
        with self._lock:
            return [info for m in self._monitors.values()
                    for status, info in [m.status(now)] if status != "Healthy"]

    def critical_blocking(self) -> str | None:
        s = self.statuses()
        for kind in ("cpu", "memory"):
            if s[kind] == "Critical":
                return kind.upper() if kind == "cpu" else "Memory"
        return None
