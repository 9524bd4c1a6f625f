"""What a drill acknowledged, and whether the database still holds it (bench/faults.py on one
host, bench/multihost.py on several): a user of the user API that creates a Device every
``interval`` and remembers the names acknowledged (201); the simulator's statistics file with
each device's last acknowledged status report; the checks of both against the database."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import psycopg
import requests

from bench.waiting import wait_for

API = "flightctl.io/v1beta1"


class Writer(threading.Thread):
    """``target`` is the run: anything with ``base`` (the user API's URL), ``auth`` (headers)
    and ``ca`` (the CA file); ``label`` marks the Devices as the drill's."""

    def __init__(self, target, interval: float, label: str, timeout: float = 10.0):
        super().__init__(daemon=True)
        self.target, self.interval, self.label, self.timeout = target, interval, label, timeout
        self.acked: list[str] = []
        self.failed: dict[str, int] = {}
        self.running = True

    def run(self):
        session = requests.Session()
        session.trust_env = False  # a proxy or REQUESTS_CA_BUNDLE would replace our CA
        index = 0
        while self.running:
            index += 1
            name = f"ledger-{index:06d}"
            body = {"apiVersion": API, "kind": "Device",
                    "metadata": {"name": name, "labels": {"ledger": self.label}}, "spec": {}}
            try:
                response = session.post(f"{self.target.base}/api/v1/devices", json=body,
                                        headers=self.target.auth, verify=self.target.ca,
                                        timeout=self.timeout)
                if response.status_code == 201:
                    self.acked.append(name)
                else:
                    key = str(response.status_code)
                    self.failed[key] = self.failed.get(key, 0) + 1
            except requests.RequestException:
                self.failed["connection"] = self.failed.get("connection", 0) + 1
            time.sleep(self.interval)


def simulator_stats(simulator, stats_file: Path, log: Path) -> dict:
    """The simulator's statistics (rewritten every 2 s); an error once it has exited."""
    if simulator is not None and simulator.poll() is not None:
        raise RuntimeError(f"the simulator exited; see {log}")
    try:
        return json.loads(stats_file.read_text())
    except (OSError, ValueError):
        return {}


def lost_status_reports(database_url: str, acked: dict) -> int:
    """Devices whose last acknowledged status report (its sequence number) the database does
    not hold: it holds that one or a later one when nothing was lost."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT name, (status->'systemInfo'->'customInfo'->>'statusSequence')::int "
            "FROM devices_device WHERE name = ANY(%s)", (list(acked),)).fetchall()
    stored = dict(rows)
    return sum(1 for name, (sequence, _) in acked.items() if (stored.get(name) or 0) < sequence)


def lost_user_writes(database_url: str, writer: Writer) -> int:
    """Devices the writer had acknowledged that the database does not hold."""
    acked = list(writer.acked)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT name FROM devices_device WHERE name = ANY(%s)",
                            (acked,)).fetchall()
    return len(set(acked) - {name for (name,) in rows})


def reporting_again(stats, since: float, devices: int, status_interval: float) -> float:
    """Seconds from ``since`` (wall time) until each of ``devices`` had a status report
    acknowledged after it (``stats``: a call that reads the simulator's statistics)."""
    first: dict[str, float] = {}

    def everyone():
        for name, (_, at) in stats().get("acked", {}).items():
            if at >= since and name not in first:
                first[name] = at
        return len(first) >= devices
    wait_for("every device to report again", everyone, 3 * status_interval + 30, 0.5)
    return round(max(first.values()) - since, 1)
