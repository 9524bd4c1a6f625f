"""A user of the user API during a drill: creates a Device every ``interval`` and remembers the
names acknowledged (201), counting failures by code, so that a run can check afterwards that
nothing acknowledged was lost (bench/faults.py on one host, bench/multihost.py on several)."""

from __future__ import annotations

import threading
import time

import requests

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
