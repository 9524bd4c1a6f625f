"""``python -m bench.agent_footprint``: one real agent's memory and CPU, idle and updating.

The simulator stands in for thousands of devices on the wire; this measures what the real
``flightctl-agent`` costs the one device it runs on. A server (embedded PostgreSQL, one
agent API process) and one agent process in a root directory of its own (as the agent's
end-to-end tests run it, with the systemd stand-in of tests/agent/standins on its PATH); the
agent enrolls, is approved into a fleet with one configuration file and reaches
``UpToDate``. Then:

* **idle**: RSS and CPU over ``--idle`` seconds at the agent's default intervals (status
  every minute, the long-poll always open);
* **update**: the fleet's template changes; peak RSS and the CPU used from the change until
  the device reports the new version applied.

The agent idles in the process that enrolled it, as a new device does: the idle figure is
a freshly enrolled device's (a restarted one is no heavier).

The budget (no published footprint of the reference agent to hold it to): at most
:data:`RSS_BUDGET_MB` of RSS at idle.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from bench import procs
from bench.run import BIN, Bench, wait_for, write_report

RSS_BUDGET_MB = 40
ROOT = Path(__file__).resolve().parent.parent
#: the systemd stand-in the agent's own tests use (a device here has no systemd as PID 1)
STANDINS = ROOT / "tests" / "agent" / "standins" / "systemd"
ENROLL_URL = re.compile(r"/enroll/([0-9a-v]{52})")


def enrollment_credentials(bench: Bench) -> tuple[bytes, bytes]:
    """An enrollment certificate and its key from the user API (auto-approved signer)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = f"footprint-{os.urandom(4).hex()}"
    csr = (x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])).sign(key, hashes.SHA256()))
    response = bench.api.post(f"{bench.base}/api/v1/certificatesigningrequests", json={
        "apiVersion": "v1beta1", "kind": "CertificateSigningRequest", "metadata": {"name": name},
        "spec": {"request": base64.b64encode(csr.public_bytes(
            serialization.Encoding.PEM)).decode(), "signerName": "flightctl.io/enrollment",
            "usages": ["clientAuth", "CA:false"]}}, timeout=30)
    response.raise_for_status()

    def issued():
        status = bench.api.get(f"{bench.base}/api/v1/certificatesigningrequests/{name}",
                               timeout=30).json().get("status") or {}
        return status.get("certificate")
    certificate = wait_for("an enrollment certificate", issued, 30, 0.5)
    pem = (certificate.encode() if certificate.startswith("-----")
           else base64.b64decode(certificate))
    return pem, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())


class Agent:
    def __init__(self, bench: Bench, root: Path):
        self.root, self.bench = root, bench
        cert, key = enrollment_credentials(bench)
        config = {"enrollment-service": {
            "service": {"server": f"https://127.0.0.1:{bench.agent_port}",
                        "certificate-authority-data": base64.b64encode(
                            Path(bench.ca).read_bytes()).decode()},
            "authentication": {"client-certificate-data": base64.b64encode(cert).decode(),
                               "client-key-data": base64.b64encode(key).decode()},
            "enrollment-ui-endpoint": bench.base},
            "enrollment-verify-interval": "2s", "log-level": "info"}
        self.config_file = root / "etc/flightctl/config.yaml"
        self.config_file.parent.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(yaml.safe_dump(config))
        self.log_path = root.parent / "agent.log"
        env = {**os.environ, "FLIGHTCTL_TEST_ROOT_DIR": str(root), "PYTHONUNBUFFERED": "1",
               "PATH": f"{STANDINS}:{os.environ.get('PATH', '')}"}
        self.process = subprocess.Popen(
            [BIN / "flightctl-agent", "--config", str(self.config_file)], env=env,
            stdout=self.log_path.open("wb"), stderr=subprocess.STDOUT, start_new_session=True)

    def name(self) -> str:
        banner = self.root / "etc/issue.d/flightctl-banner.issue"

        def found():
            if self.process.poll() is not None:
                raise RuntimeError(f"the agent exited; see {self.log_path}")
            text = self.log_path.read_text(errors="replace")
            text += banner.read_text() if banner.exists() else ""
            return (ENROLL_URL.findall(text) or [None])[-1]
        return wait_for("the agent's enrollment request", found, 120, 0.5)

    def pids(self) -> list[int]:
        return procs.tree(self.process.pid)

    def stop(self) -> None:
        procs.stop(self.process, 20)


class Peak(threading.Thread):
    """Peak RSS of a process tree, sampled every 0.2 s."""

    def __init__(self, pids):
        super().__init__(daemon=True)
        self.pids, self.peak, self.running = pids, 0, True

    def run(self):
        while self.running:
            self.peak = max(self.peak, procs.rss_bytes(self.pids()))
            time.sleep(0.2)


def device(bench: Bench, name: str) -> dict:
    response = bench.api.get(f"{bench.base}/api/v1/devices/{name}", timeout=30)
    return response.json() if response.status_code == 200 else {}


def up_to_date(bench: Bench, name: str, version: int) -> bool:
    status = device(bench, name).get("status") or {}
    reported = int((status.get("config") or {}).get("renderedVersion") or 0)
    return reported >= version and (status.get("updated") or {}).get("status") == "UpToDate"


def rendered_version(bench: Bench, name: str) -> int:
    annotations = (device(bench, name).get("metadata") or {}).get("annotations") or {}
    return int(annotations.get("device-controller/renderedVersion") or 0)


def measure(args) -> dict:
    bench = Bench(SimpleNamespace(devices=1, agent_api_workers=1, task_workers=1))
    report: dict = {"rss_budget_mb": RSS_BUDGET_MB}
    agent = None
    try:
        bench.start_server()
        bench.create_fleet("version 1\n")
        agent = Agent(bench, bench.work / "device")
        name = agent.name()
        response = bench.api.put(
            f"{bench.base}/api/v1/enrollmentrequests/{name}/approval", timeout=30,
            json={"approved": True, "labels": {"created_by": "device-simulator"}})
        response.raise_for_status()
        wait_for("the device UpToDate", lambda: rendered_version(bench, name) and up_to_date(
            bench, name, rendered_version(bench, name)), 180, 1)
        time.sleep(5)  # what the first apply left behind settles
        cpu0, t0 = procs.cpu_seconds(agent.pids()), time.monotonic()
        samples = []
        while time.monotonic() - t0 < args.idle:
            samples.append(procs.rss_bytes(agent.pids()))
            time.sleep(1)
        cpu1, t1 = procs.cpu_seconds(agent.pids()), time.monotonic()
        report["idle"] = {"seconds": round(t1 - t0, 1),
                          "rss_mb": round(max(samples) / 2**20, 1),
                          "cpu_percent": round(100 * (cpu1 - cpu0) / (t1 - t0), 2)}
        report["within_budget"] = report["idle"]["rss_mb"] <= RSS_BUDGET_MB

        before = rendered_version(bench, name)
        peak = Peak(agent.pids)
        peak.start()
        cpu0, t0 = procs.cpu_seconds(agent.pids()), time.monotonic()
        bench.create_fleet("version 2\n" + "x" * 64 * 1024 + "\n")  # a 64 KB file this time
        wait_for("the update applied", lambda: rendered_version(bench, name) > before
                 and up_to_date(bench, name, rendered_version(bench, name)), 180, 0.5)
        cpu1, t1 = procs.cpu_seconds(agent.pids()), time.monotonic()
        peak.running = False
        report["update"] = {"seconds": round(t1 - t0, 1),
                            "cpu_seconds": round(cpu1 - cpu0, 2),
                            "peak_rss_mb": round(peak.peak / 2**20, 1)}
        report["processes"] = len(agent.pids())
    finally:
        if agent is not None:
            agent.stop()
        bench.stop_all()
        if getattr(bench, "db", None) is not None:
            bench.db.stop()
        report["work_dir"] = str(bench.work)
    return report


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.agent_footprint",
                                     description=__doc__)
    parser.add_argument("--idle", type=float, default=60, help="idle window, seconds")
    parser.add_argument("--output", help="also write the JSON report here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        report, code = measure(args), 0
    except Exception as exc:  # noqa: BLE001 - report why it stopped
        report, code = {"failed": f"{type(exc).__name__}: {exc}"}, 1
    write_report(report, args.output)
    return code


if __name__ == "__main__":
    sys.exit(main())
