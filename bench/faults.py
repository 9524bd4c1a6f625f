"""``python -m bench.faults``: kill each process of a loaded server in turn and count the cost.

A PostgreSQL of its own (the embedded server's binaries, in the work directory: "external" to
``serve``, so the run can kill and restart it as a service manager would), ``flightctl-server
serve`` on it, ``flightctl-agent simulate`` with N devices and a writer that creates a Device
through the user API every ``--write-interval`` seconds, remembering each one acknowledged.
Then, in turn: SIGKILL of serve, of the agent API's master, of one agent API worker, of the task
cluster and of PostgreSQL, and SIGTERM of serve. The run plays the service manager: a killed
``serve`` (or PostgreSQL) is started again at once; ``serve`` restarts its own children.

For each fault it measures: how long until the server answers again on both ports (by new
processes), the processes of this installation left outside the running ``serve`` (orphans),
how long until every device has had a status acknowledged again, the devices' failed calls by
kind (HTTP status or ``connection``), acknowledged writes the database no longer holds (device
status reports, numbered by the simulator, and the writer's Devices) and, for the SIGTERM, how
long the stop took. tests/test_faults.py runs it short; docs/reliability.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from bench import procs, waiting
from bench.ledger import (
    Writer,
    lost_status_reports,
    lost_user_writes,
    reporting_again,
    simulator_stats,
)
from bench.run import write_report

BIN = Path(sys.executable).parent
FAULTS = ("kill-serve", "kill-agent-api-master", "kill-agent-api-worker", "kill-task-cluster",
          "kill-postgres", "stop-serve")
API = "flightctl.io/v1beta1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def accepts(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def wait(what: str, check, timeout: float, interval: float = 0.05):
    # Polled more often than the drill's default: restarts are measured to a twentieth of a s.
    return waiting.wait_for(what, check, timeout, interval)



class FaultRun:
    def __init__(self, args):
        self.args = args
        self.work = Path(args.work_dir or tempfile.mkdtemp(prefix="flightctl-faults-"))
        self.data_dir = self.work / "data"
        self.port, self.agent_port = free_port(), free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.ca = str(self.data_dir / "pki" / "ca.crt")
        self.serve: subprocess.Popen | None = None
        self.simulator: subprocess.Popen | None = None
        self.stats_file = self.work / "simulator-stats.json"
        self.results: list[dict] = []
        self.rollouts = 0

    # -- PostgreSQL, as a service manager runs it ----------------------------------------

    def start_database(self) -> None:
        from flightctl.database import EmbeddedPostgres

        self.db = EmbeddedPostgres(self.work)  # <work>/postgres, no FLIGHTCTL_DATA_DIR
        self.db_url = self.db.start(connections=200)

    def postmaster(self) -> int:
        return int((self.db.pgdata / "postmaster.pid").read_text().split()[0])

    def restart_database(self) -> None:
        with self.db.server._lock:  # the wheel's own start, under its lock
            self.db.server.ensure_postgres_running()

    # -- serve ---------------------------------------------------------------------------

    def start_serve(self) -> None:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("FLIGHTCTL_") and k != "DJANGO_SETTINGS_MODULE"}
        env.update({"FLIGHTCTL_DATA_DIR": str(self.data_dir),
                    "FLIGHTCTL_DATABASE_URL": self.db_url, "FLIGHTCTL_LOG_LEVEL": "warning",
                    "FLIGHTCTL_AGENT_API_WORKERS": "2", "FLIGHTCTL_TASK_WORKERS": "2"})
        with open(self.work / "serve.log", "ab") as out:
            self.serve = subprocess.Popen(
                [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{self.port}",
                 "--agent-address", f"127.0.0.1:{self.agent_port}", "--workers", "1"],
                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def tree(self) -> list[int]:
        return procs.tree(self.serve.pid) if self.serve else []

    def find(self, needle: str) -> list[int]:
        return [pid for pid in self.tree() if needle in procs.command(pid)]

    def agent_workers(self) -> list[int]:
        masters = self.find("-m agent_api")
        return [pid for pid in self.tree() if "spawn_main" in procs.command(pid)
                and _parent(pid) in masters]

    def serving(self, old: set[int] = frozenset()) -> bool:
        """Both ports answer, through processes none of which is in ``old``."""
        if self.serve.poll() is not None:
            raise RuntimeError(f"serve exited with {self.serve.returncode}; see "
                               f"{self.work / 'serve.log'}")
        if any(alive(pid) for pid in old):
            return False
        try:
            if requests.get(f"{self.base}/readyz", verify=self.ca, timeout=2).status_code != 200:
                return False
        except (requests.RequestException, OSError):
            return False
        return accepts(self.agent_port) and len(self.agent_workers()) >= 2

    def orphans(self) -> list[str]:
        """Processes of this installation (their environment names its data directory) that
        are not in the running serve's tree."""
        tree, found = set(self.tree()), []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in tree or not alive(int(entry.name)):
                continue
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if f"FLIGHTCTL_DATA_DIR={self.data_dir}\0".encode() in environ:
                found.append(f"{entry.name} {procs.command(int(entry.name))[:80]}")
        return found

    # -- devices and writes --------------------------------------------------------------

    def start_devices(self) -> None:
        token = (self.data_dir / "admin-token").read_text().strip()
        self.auth = {"Authorization": f"Bearer {token}"}
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
        with open(self.work / "simulator.log", "ab") as out:
            self.simulator = subprocess.Popen(
                [BIN / "flightctl-agent", "simulate", "--user-api", self.base,
                 "--ca-file", self.ca, "--devices", str(self.args.devices),
                 "--concurrency", "20", "--status-interval", str(self.args.status_interval),
                 "--stats-file", str(self.stats_file), "--work-dir", str(self.work / "devices")],
                env={**env, "FLIGHTCTL_TOKEN": token}, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        wait(f"{self.args.devices} devices to enroll",
             lambda: self.stats().get("enrolled", 0) >= self.args.devices
             and len(self.stats().get("acked", {})) >= self.args.devices,
             self.args.enroll_timeout, 1)
        self.writer = Writer(self, self.args.write_interval, "faults")
        self.writer.start()

    def stats(self) -> dict:
        return simulator_stats(self.simulator, self.stats_file, self.work / "simulator.log")

    def lost_status_reports(self, acked: dict) -> int:
        return lost_status_reports(self.db_url, acked)

    def lost_user_writes(self) -> int:
        return lost_user_writes(self.db_url, self.writer)

    def reporting_again(self, since: float) -> float:
        return reporting_again(self.stats, since, self.args.devices, self.args.status_interval)

    # -- the faults ----------------------------------------------------------------------

    def inject(self, fault: str) -> tuple[set[int], float | None]:
        """Inject ``fault``; the processes that must be gone before the server counts as
        restarted, and (SIGTERM) how long serve took to stop."""
        if fault in ("kill-serve", "stop-serve"):
            old = set(self.tree())
            started = time.monotonic()
            self.serve.send_signal(signal.SIGKILL if fault == "kill-serve" else signal.SIGTERM)
            self.serve.wait(60)
            stopped = time.monotonic() - started
            self.start_serve()  # the service manager's restart
            return old, (round(stopped, 2) if fault == "stop-serve" else None)
        if fault == "kill-agent-api-master":
            master = self.find("-m agent_api")[0]
            old = set(procs.tree(master))
            os.kill(master, signal.SIGKILL)
            return old, None
        if fault == "kill-agent-api-worker":
            worker = self.agent_workers()[0]
            os.kill(worker, signal.SIGKILL)
            return {worker}, None
        if fault == "kill-task-cluster":
            cluster = self.find("qcluster")[0]
            old = set(procs.tree(cluster))
            os.kill(cluster, signal.SIGKILL)
            wait("a new task cluster", lambda: [p for p in self.find("qcluster")
                                                if p not in old], 5)
            return {cluster}, None
        if fault == "kill-postgres":
            # As a service manager's kill of the unit: the postmaster and every backend.
            postmaster = self.postmaster()
            for pid in procs.tree(postmaster):
                os.kill(pid, signal.SIGKILL)
            # The wheel takes a postmaster not yet reaped for a running one.
            wait("the killed postmaster to be reaped",
                 lambda: not Path(f"/proc/{postmaster}").exists(), 10)
            self.outage_probe = self.probe_user_api()
            self.restart_database()
            return set(), None
        raise ValueError(fault)

    def probe_user_api(self, tries: int = 8) -> list[list]:
        """What the user API answers while the database is down: [code, Retry-After, kind]."""
        answers = []
        for _ in range(tries):
            try:
                response = requests.get(f"{self.base}/api/v1/devices", headers=self.auth,
                                        verify=self.ca, timeout=10)
                kind = response.json().get("kind") if response.content else None
                answers.append([response.status_code, response.headers.get("Retry-After"),
                                kind])
            except (requests.RequestException, ValueError) as exc:
                answers.append([type(exc).__name__, None, None])
            time.sleep(0.1)
        return answers

    def rollout(self, content: str) -> float:
        """A fleet template change for every device; seconds until each received it through
        its long-poll (render tasks, then the LISTEN connection's notifications)."""
        changed = time.time()
        body = {"apiVersion": API, "kind": "Fleet", "metadata": {"name": "faults"},
                "spec": {"selector": {"matchLabels": {"created_by": "device-simulator"}},
                         "template": {"metadata": {"labels": {"fleet": "faults"}}, "spec": {
                             "config": [{"name": "motd", "inline": [
                                 {"path": "/etc/motd", "content": content}]}]}}}}
        response = requests.put(f"{self.base}/api/v1/fleets/faults", json=body,
                                headers=self.auth, verify=self.ca, timeout=30)
        response.raise_for_status()

        def delivered():
            arrivals = self.stats().get("arrivals") or {}
            return sum(1 for _, at in arrivals.values() if at >= changed) >= self.args.devices
        wait("the rollout to reach every device", delivered, 120, 0.5)
        return round(max(at for _, at in self.stats()["arrivals"].values()) - changed, 1)

    def fault(self, name: str) -> dict:
        before = self.stats()
        writes_failed = dict(self.writer.failed)
        at = time.time()
        started = time.monotonic()
        old, stop_seconds = self.inject(name)
        if stop_seconds is not None:  # a clean stop: the restart is timed from the new start
            started += stop_seconds
        wait(f"the server to answer again after {name}", lambda: self.serving(old), 30)
        restart = time.monotonic() - started
        recovered = time.time()
        again = self.reporting_again(recovered)
        after = self.stats()
        codes = {key: count - (before.get("codes") or {}).get(key, 0)
                 for key, count in (after.get("codes") or {}).items()}
        result = {
            "fault": name, "restart_seconds": round(restart, 2),
            "reporting_again_seconds": again, "orphans": self.orphans(),
            "device_errors": {k: v for k, v in codes.items() if v},
            "device_500s": sum(v for k, v in codes.items() if k.endswith(" 500")),
            "long_polls_answered_204": _count(after, "rendered.204") - _count(before,
                                                                           "rendered.204"),
            "user_write_errors": {k: v - writes_failed.get(k, 0)
                                  for k, v in self.writer.failed.items()
                                  if v - writes_failed.get(k, 0)},
            "lost_status_reports": self.lost_status_reports(after.get("acked", {})),
            "lost_user_writes": self.lost_user_writes(),
            "seconds": round(time.time() - at, 1),
        }
        if stop_seconds is not None:
            result["stop_seconds"] = stop_seconds
        if name == "kill-postgres":
            result["user_api_during_outage"] = self.outage_probe
        if name in ("kill-task-cluster", "kill-postgres"):
            # The restarted cluster renders, and the listener that reconnected delivers.
            self.rollouts += 1
            result["rollout_seconds"] = self.rollout(f"after {name} {self.rollouts}\n")
        return result

    def run(self) -> dict:
        started = time.monotonic()
        self.start_database()
        self.start_serve()
        wait("the server", self.serving, 120, 0.5)
        self.start_devices()
        time.sleep(self.args.settle)  # every device's long-poll open and waiting
        for _ in range(self.args.rounds):
            for name in self.args.faults:
                self.results.append(self.fault(name))
                print(json.dumps(self.results[-1]), file=sys.stderr, flush=True)
        self.writer.running = False
        self.writer.join(15)
        return {"devices": self.args.devices, "status_interval": self.args.status_interval,
                "user_writes_acknowledged": len(self.writer.acked),
                "faults": self.results, "total_seconds": round(time.monotonic() - started, 1),
                "work_dir": str(self.work)}

    def stop(self) -> None:
        for process in (self.simulator, self.serve):
            if process is not None:
                procs.stop(process, 60)
        if getattr(self, "db", None) is not None:
            self.db.stop()


def _count(stats: dict, op: str) -> int:
    return ((stats.get("ops") or {}).get(op) or {}).get("count", 0)


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return -1


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--status-interval", type=float, default=10.0)
    parser.add_argument("--write-interval", type=float, default=0.2,
                        help="seconds between the user API writer's Device creations")
    parser.add_argument("--rounds", type=int, default=1, help="times through every fault")
    parser.add_argument("--faults", nargs="+", choices=FAULTS, default=list(FAULTS))
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--enroll-timeout", type=float, default=300)
    parser.add_argument("--work-dir")
    parser.add_argument("--output", help="also write the JSON report here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = arguments(argv)
    from flightctl_agent.simulator.run import raise_file_limit

    raise_file_limit()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    run = FaultRun(args)
    try:
        report, code = run.run(), 0
    except Exception as exc:  # noqa: BLE001 - report what was measured, and why it stopped
        report, code = {"failed": str(exc), "faults": run.results,
                        "work_dir": str(run.work)}, 1
    finally:
        run.stop()
    write_report(report, args.output)
    return code


if __name__ == "__main__":
    sys.exit(main())
