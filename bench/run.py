"""``python -m bench.run --devices N``: one benchmark run, one report (docs/scale.md).

Starts an embedded PostgreSQL and ``flightctl-server serve`` on it, a fleet that owns every
simulated device, and ``flightctl-agent simulate`` with N devices; waits for all to enroll and
be ``UpToDate``; measures a steady-state window (rates, p50/p99 per agent operation, server CPU
and peak RSS); changes the fleet template and times convergence; measures list latency at
100,000 rows; and, on the same machine in the same run, two baselines (a trivial endpoint on
the same server stack, a one-row PostgreSQL UPDATE loop). Every wait has a deadline and every
process started here is stopped here.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import requests
from flightctl_agent.simulator.stats import diff, merge, summarize

from bench import measure, procs, waiting
from bench.consoles import ConsoleLoad

BIN = Path(sys.executable).parent
FLEET = "simulated"
#: connections one source address can hold to one server port (the ephemeral port range)
PORTS_PER_SOURCE = 25_000
#: the sizing rule docs/scale.md derives: each agent API process's heap, and so the length of
#: its garbage collector's full pauses, grows with the devices it holds
DEVICES_PER_AGENT_API_WORKER = 2_500
#: devices per simulator process (two sockets each, under a 20,000 open-file limit)
DEVICES_PER_SIMULATOR = 5_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Deadline(RuntimeError):
    pass


def wait_for(what: str, check, timeout: float, interval: float = 1.0):
    value, _ = waiting.poll(check, timeout, interval)
    if value:
        return value
    raise Deadline(f"timed out after {timeout:.0f}s waiting for {what}")


class Sampler(threading.Thread):
    """Peak RSS of the server's processes (and PostgreSQL's), sampled every second."""

    def __init__(self, groups: dict):
        super().__init__(daemon=True)
        self.groups, self.peaks, self.running = groups, {}, True

    def run(self):
        while self.running:
            for name, root in self.groups.items():
                rss = procs.rss_bytes(procs.tree(root()))
                self.peaks[name] = max(self.peaks.get(name, 0), rss)
            time.sleep(1)


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="flightctl-bench-"))
        self.procs: list[subprocess.Popen] = []
        self.report: dict = {"devices": args.devices,
                             "agent_api_workers": args.agent_api_workers}

    # -- processes -------------------------------------------------------------------------

    def spawn(self, argv, log: str, env=None) -> subprocess.Popen:
        out = open(self.work / log, "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})}, start_new_session=True)
        self.procs.append(process)
        return process

    def stop_all(self):
        for process in reversed(self.procs):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in reversed(self.procs):
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()

    # -- the run ---------------------------------------------------------------------------

    def start_server(self):
        from flightctl.cli.server import connections_needed
        from flightctl.config import Config
        from flightctl.database import EmbeddedPostgres

        self.db = EmbeddedPostgres(self.work / "data")
        # The server below uses this database as an external one, so it cannot raise
        # max_connections itself: room for its processes here (PostgreSQL's default of 100
        # ran out at 12 agent API processes: approvals answered 503, adoption stalled).
        self.db_url = self.db.start(connections=connections_needed(SimpleNamespace(
            agent_api_workers=self.args.agent_api_workers, workers=2, threads=Config.threads,
            task_workers=self.args.task_workers)))
        self.port, self.agent_port = free_port(), free_port()
        env = {"FLIGHTCTL_DATA_DIR": str(self.work / "data"),
               "FLIGHTCTL_DATABASE_URL": self.db_url, "FLIGHTCTL_LOG_LEVEL": "warning",
               "FLIGHTCTL_AGENT_API_WORKERS": str(self.args.agent_api_workers),
               "FLIGHTCTL_TASK_WORKERS": str(self.args.task_workers)}
        for name in ("enrollment_concurrency", "enrollment_queue", "enrollment_rate",
                     "enrollment_latency_target", "log_level"):
            if getattr(self.args, name, None) is not None:
                env[f"FLIGHTCTL_{name.upper()}"] = str(getattr(self.args, name))
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.server = self.spawn(
            [BIN / "flightctl-server", "serve", "--address", f"127.0.0.1:{self.port}",
             "--agent-address", f"127.0.0.1:{self.agent_port}", "--workers", "2"],
            "server.log", env)
        self.base = f"https://127.0.0.1:{self.port}"
        self.ca = str(self.work / "data" / "pki" / "ca.crt")
        token_file = self.work / "data" / "admin-token"

        def up():
            if self.server.poll() is not None:
                raise RuntimeError(f"server exited; see {self.work / 'server.log'}")
            try:
                return token_file.exists() and requests.get(
                    f"{self.base}/healthz", verify=self.ca, timeout=2).ok
            except requests.RequestException:
                return False
        wait_for("the server", up, 120)
        wait_for("the agent API", lambda: _listening(self.agent_port), 60)
        self.api = requests.Session()
        self.api.trust_env = False  # REQUESTS_CA_BUNDLE would replace our CA (ci/README.md)
        self.api.verify = self.ca
        self.api.headers["Authorization"] = f"Bearer {token_file.read_text().strip()}"

    def create_fleet(self, content: str):
        body = {"apiVersion": "flightctl.io/v1beta1", "kind": "Fleet",
                "metadata": {"name": FLEET},
                "spec": {"selector": {"matchLabels": {"created_by": "device-simulator"}},
                         "template": {"metadata": {"labels": {"fleet": FLEET}}, "spec": {
                             "config": [{"name": "motd", "inline": [
                                 {"path": "/etc/motd", "content": content}]}]}}}}
        response = self.api.put(f"{self.base}/api/v1/fleets/{FLEET}", json=body, timeout=30)
        response.raise_for_status()

    def start_simulator(self):
        """One simulator process per DEVICES_PER_SIMULATOR devices: every device holds two
        sockets, and a process may have only so many files open (20,000 here, a hard limit
        even root cannot raise). Each gets its own share, source addresses and stats file."""
        n = self.args.devices
        count = self.args.simulator_processes or max(1, math.ceil(n / DEVICES_PER_SIMULATOR))
        self.sources_each = max(1, math.ceil(2 * n / count / PORTS_PER_SOURCE))
        self.stats_files, self.simulators = [], []
        for index in range(count):
            share = n // count + (1 if index < n % count else 0)
            stats_file = self.work / f"simulator-{index}-stats.json"
            self.simulators.append(self._simulator(index, share, stats_file,
                                                   max(1, self.args.concurrency // count)))
            self.stats_files.append(stats_file)
        self.report["simulator_processes"] = count
        self.report["source_addresses"] = count * self.sources_each

    def _simulator(self, index: int, devices: int, stats_file: Path,
                   concurrency: int) -> subprocess.Popen:
        ips = [f"127.0.{index}.{i + 1}" for i in range(self.sources_each)]
        return self.spawn(
            [BIN / "flightctl-agent", "simulate", "--user-api", self.base,
             "--ca-file", self.ca, "--devices", str(devices),
             "--concurrency", str(concurrency),
             "--status-interval", str(self.args.status_interval),
             "--failing-share", str(self.args.failing_share),
             "--source-ips", ",".join(ips), "--stats-file", str(stats_file),
             "--work-dir", str(self.work / f"devices-{index}")],
            f"simulator-{index}.log",
            {"FLIGHTCTL_TOKEN": self.api.headers["Authorization"][7:]})

    def storm(self) -> dict:
        """``--storm`` more devices enroll at once (one more simulator process, all of them
        started together) while the fleet stays connected: how fast they enroll, how many
        calls admission control deferred (503 + Retry-After), and what the connected devices
        saw meanwhile, to set against the steady-state window."""
        n, index = self.args.storm, len(self.simulators)
        # One process per DEVICES_PER_SIMULATOR storm devices too (open files: two
        # connections a device), the storm's concurrency shared among them.
        count = max(1, math.ceil(n / DEVICES_PER_SIMULATOR))
        stats_files = [self.work / f"simulator-storm-{k}-stats.json" for k in range(count)]
        # What the connected fleet costs each role a second, from the steady-state window (a
        # whole status interval or more: after a rollout the reports come in waves, so a
        # shorter look right before the storm may see none): subtracted from the storm's CPU
        # to leave what the enrollments themselves cost.
        connected_rate = self.report["steady_state"]["cpu_cores_by_role"]
        roles0, started = self.cpu_by_role(split=True), time.monotonic()
        before, cpu0 = self.stats(), self.server_cpu()
        processes = [self._simulator(index + k, n // count + (k < n % count), stats_files[k],
                                     max(1, self.args.storm_concurrency // count))
                     for k in range(count)]
        self.simulators += processes

        def storm_stats() -> dict:
            return _merged(stats_files)

        def enrolled():
            for k, process in enumerate(processes):
                if process.poll() is not None:
                    raise RuntimeError(f"storm simulator exited; see simulator-{index + k}.log")
            stats = storm_stats()
            if stats.get("enroll_failed"):
                raise RuntimeError(f"{stats['enroll_failed']} storm devices gave up enrolling: "
                                   f"{stats.get('error_samples')}")
            return stats.get("enrolled", 0) >= n
        wait_for(f"{n} storm enrollments", enrolled, self.args.enroll_timeout, 1)
        elapsed = time.monotonic() - started
        window = diff(self.stats(), before)
        cpu_enrolled = self.cpu_by_role(split=True)
        # The storm's devices' fleet adoption and first render trail their certificates (task
        # workers): counted too, up to the last device's first rendered spec.
        wait_for(f"{n} storm first renders",
                 lambda: (storm_stats().get("ops") or {}).get("rendered.first", {}).get(
                     "count", 0) >= n, self.args.enroll_timeout, 1)
        rendered = time.monotonic() - started
        cpu_rendered = self.cpu_by_role(split=True)
        ops = (storm_stats().get("ops") or {})

        # The storm's devices enrolled early are connected devices for the rest of the storm
        # (a paced storm lasts long): their reports after the first, and a connected device's
        # other calls in proportion, are the steady load's, not enrollment's.
        steady_reports = (self.report["steady_state"]["operations"].get("status.put") or {}
                          ).get("per_second") or 0
        later_reports = max(0, ops.get("status.put", {}).get("count", 0) - n)

        def per_enrollment(cpu: dict, seconds: float) -> dict:
            """CPU milliseconds per enrollment by role, less the connected devices' share."""
            connected_seconds = seconds + (later_reports / steady_reports if steady_reports
                                           else 0)
            out = {role: round(1000 * (cpu[role] - roles0[role]
                                       - connected_rate[role] * connected_seconds) / n, 2)
                   for role in cpu}
            out["server_total"] = round(sum(v for role, v in out.items()
                                            if role != "simulators"), 2)
            return out
        return {"devices": n, "enroll_seconds": round(elapsed, 1),
                "enrollments_per_second": round(n / elapsed, 1),
                "first_render_seconds": round(rendered, 1),
                "cpu_ms_per_enrollment": per_enrollment(cpu_enrolled, elapsed),
                "cpu_ms_per_enrollment_to_first_render": per_enrollment(cpu_rendered, rendered),
                "connected_cpu_cores_by_role": {role: round(v, 3)
                                                for role, v in connected_rate.items()},
                "deferred_503": sum(op["count"] for name, op in ops.items()
                                    if name.endswith(".deferred")),
                "storm_errors": storm_stats().get("errors_total", 0),
                "storm_error_samples": storm_stats().get("error_samples"),
                "server_cpu_cores": round((self.server_cpu() - cpu0) / elapsed, 2),
                "connected": {"errors": sum(op["errors"] for op in window.values()),
                              "operations": summarize(window, elapsed)}}

    def cpu_by_role(self, split: bool = False) -> dict[str, float]:
        """CPU seconds so far of the agent API, the rest of the server, PostgreSQL and the
        simulators: who is busy while a rollout is delivered (2 cores shared by all).
        ``split`` parts the rest into the user API (uvicorn on ``flightctl.asgi``), the task
        workers (``qcluster``) and the supervisor."""
        agent_api = set(procs.tree(_find_child(self.server.pid, "agent_api")))
        server = set(procs.tree(self.server.pid)) - agent_api
        simulators = [pid for p in self.simulators for pid in procs.tree(p.pid)]
        parts = {}
        if split:
            for role, needle in (("user_api", "flightctl.asgi"), ("tasks", "qcluster")):
                child = _find_child(self.server.pid, needle)
                pids = set(procs.tree(child)) if child != self.server.pid else set()
                parts[role] = procs.cpu_seconds(pids)
                server -= pids
        return {"agent_api": procs.cpu_seconds(agent_api), **parts,
                "server_other": procs.cpu_seconds(server),
                "postgres": procs.cpu_seconds(procs.tree(
                    _postmaster(self.work / "data" / "postgres"))),
                "simulators": procs.cpu_seconds(simulators)}

    def server_cpu(self) -> float:
        """CPU seconds so far of every server process and PostgreSQL."""
        return sum(seconds for role, seconds in self.cpu_by_role().items()
                   if role != "simulators")

    def check_simulators(self):
        for index, process in enumerate(self.simulators):
            if process.poll() is not None:
                raise RuntimeError(f"simulator {index} exited; see "
                                   f"{self.work / f'simulator-{index}.log'}")

    def stats(self) -> dict:
        return _merged(self.stats_files)

    def summary(self) -> dict:
        response = self.api.get(f"{self.base}/api/v1/devices", params={
            "summaryOnly": "true", "labelSelector": "created_by=device-simulator"}, timeout=60)
        response.raise_for_status()
        return response.json().get("summary") or {}

    def all_up_to_date(self) -> bool:
        summary = self.summary()
        return (summary.get("updateStatus") or {}).get("UpToDate", 0) >= self.args.devices

    def run(self):
        n, args = self.args.devices, self.args
        started = time.monotonic()
        self.start_server()
        self.create_fleet("version 1\n")
        sampler = Sampler({
            "agent_api": lambda: _find_child(self.server.pid, "agent_api"),
            "server_total": lambda: self.server.pid,
            "postgres": lambda: _postmaster(self.work / "data" / "postgres")})
        sampler.start()
        self.start_simulator()

        def enrolled() -> int:
            self.check_simulators()
            stats = self.stats()
            if stats.get("enroll_failed"):
                raise RuntimeError(f"{stats['enroll_failed']} devices gave up enrolling: "
                                   f"{stats.get('error_samples')}")
            return stats.get("enrolled", 0)
        # The connected devices' calls while the second half of the fleet enrolls: the tail of
        # a fleet that is (re-)enrolling, which the latency goals include.
        wait_for(f"{n // 2} enrollments", lambda: enrolled() >= n // 2, args.enroll_timeout, 2)
        half, half_at, half_cpu = self.stats(), time.monotonic(), self.cpu_by_role(split=True)
        wait_for(f"{n} enrollments", lambda: enrolled() >= n, args.enroll_timeout, 2)
        self.report["enroll_seconds"] = round(time.monotonic() - started, 1)
        self.report["during_enrollment"] = self.window_since(half, half_at, half_cpu)
        self.save()
        # Every device has its first rendered spec (a new device's fleet membership and first
        # render are queued tasks that trail a mass enrollment) and reports it.
        wait_for("every device's first render",
                 lambda: self.stats().get("ops", {}).get("rendered.first", {}).get(
                     "count", 0) >= n, args.enroll_timeout, 3)
        self.report["first_render_seconds"] = round(time.monotonic() - started, 1)
        wait_for("every device UpToDate", self.all_up_to_date, args.enroll_timeout, 3)
        # Steady state: every device has its long-poll open and reports on its interval.
        time.sleep(min(args.status_interval, 30))
        self.report["steady_state"] = self.steady_window()
        self.save()
        self.report.update(self.rollout("version 2\n"))
        self.save()
        if args.consoles:
            # The same window and a second rollout with console sessions open and carrying
            # traffic: the figures to compare with the ones above.
            load = ConsoleLoad(self.base, self.agent_port, self.ca,
                               self.api.headers["Authorization"][7:], self.work, args.consoles,
                               self.api)
            load.start()
            self.report["steady_state_with_consoles"] = self.steady_window()
            self.report["with_consoles"] = self.rollout("version 3\n")
            self.report["consoles"] = load.stop()
        if args.storm:
            self.report["storm"] = self.storm()
            self.save()
        self.report["simulator"] = self.simulator_totals()
        sampler.running = False
        self.report["peak_rss_mb"] = {k: round(v / 2**20) for k, v in sampler.peaks.items()}
        self.stop_simulator()
        self.report["postgres_size_mb"] = measure.database_size_mb(self.db_url)
        if args.quick:
            self.report["total_seconds"] = round(time.monotonic() - started, 1)
            return self.report
        if args.list_rows:
            self.report["list"] = measure.list_latency(self.api, self.base, self.db_url,
                                                       args.list_rows)
        self.report["baselines"] = {
            "trivial_endpoint_rps": measure.trivial_rps(self.base, self.ca, seconds=10),
            "pg_one_row_update_tps": measure.pgbench_update_tps(self.db_url, seconds=10)}
        steady = self.report["steady_state"]
        self.report["ratios"] = {
            "agent_rps_vs_trivial": round(steady["requests_per_second"]
                                          / self.report["baselines"]["trivial_endpoint_rps"], 3),
            "status_puts_vs_pg_updates": round(
                steady["operations"].get("status.put", {}).get("per_second", 0)
                / self.report["baselines"]["pg_one_row_update_tps"], 4)}
        self.report["total_seconds"] = round(time.monotonic() - started, 1)
        return self.report

    def rollout(self, content: str) -> dict:
        """A template change, until every device has received a new rendered version and
        reported it (UpToDate again). The summary alone would not do: it still shows the old
        UpToDate until the new TemplateVersion marks the fleet OutOfDate."""
        changed, changed_wall = time.monotonic(), time.time()
        cpu_before, before = self.cpu_by_role(), self.stats()
        self.create_fleet(content)

        def received() -> int:
            arrivals = (self.stats().get("arrivals") or {}).values()
            return sum(1 for _, at in arrivals if at >= changed_wall)
        try:
            wait_for("rollout convergence",
                     lambda: received() >= self.args.devices and self.all_up_to_date(),
                     self.args.rollout_timeout, 1)
        except (Exception, SystemExit, KeyboardInterrupt):
            # How far it got, and the tail until then, for the report of a stopped run.
            self.report["rollout_unfinished"] = {
                "received_new_version": received(),
                **self.window_since(before, changed)}
            raise
        elapsed = time.monotonic() - changed
        # What every device's calls saw meanwhile (the status tail across a fleet-wide change).
        window = diff(self.stats(), before)
        return {"rollout_convergence_seconds": round(elapsed, 1),
                "during_rollout": {"errors": sum(op["errors"] for op in window.values()),
                                   "operations": summarize(window, elapsed)},
                "rollout_cpu_cores": {
                    role: round((seconds - cpu_before.get(role, 0)) / elapsed, 2)
                    for role, seconds in self.cpu_by_role().items()},
                "rendered_delivery": measure.delivery_ms(
                    self.db_url, self.stats().get("arrivals") or {})}

    def window_since(self, before: dict, since: float, cpu: dict | None = None) -> dict:
        """What the devices' calls saw from the ``before`` statistics until now (and the CPU
        cores each role used meanwhile, given its CPU seconds by role then)."""
        now_stats, elapsed = self.stats(), time.monotonic() - since
        window = diff(now_stats, before)
        cores = ({"cpu_cores_by_role": {role: round((seconds - cpu[role]) / elapsed, 3)
                                        for role, seconds in self.cpu_by_role(split=True).items()
                                        if role in cpu}} if cpu else {})
        return {"seconds": round(elapsed, 1), **cores,
                "from_devices": before.get("enrolled", 0),
                "to_devices": now_stats.get("enrolled", 0),
                "enrollments_per_second": round(
                    (now_stats.get("enrolled", 0) - before.get("enrolled", 0)) / elapsed, 1),
                "errors": sum(op["errors"] for op in window.values()),
                "operations": summarize(window, elapsed)}

    def simulator_totals(self) -> dict:
        """The simulators' counts and latencies over the whole run so far."""
        final = self.stats()
        return {"enrolled": final.get("enrolled"), "errors_total": final.get("errors_total"),
                "error_samples": final.get("error_samples"),
                "operations": summarize(final.get("ops", {}))}

    def save(self) -> None:
        """Write the report so far to ``--output``: a long run stopped by its deadline, a
        signal or a crash of this process still leaves what it measured."""
        if self.args.output:
            _write_atomically(Path(self.args.output), json.dumps(self.report, indent=2))

    def steady_window(self) -> dict:
        """Rates, latencies and server CPU over one ``--window``."""
        before, roles0, t0 = self.stats(), self.cpu_by_role(split=True), time.monotonic()
        time.sleep(self.args.window)
        after, roles1, t1 = self.stats(), self.cpu_by_role(split=True), time.monotonic()
        cpu0, cpu1 = (sum(v for role, v in roles.items() if role != "simulators")
                      for roles in (roles0, roles1))
        window = diff(after, before)
        requests_total = sum(op["count"] for op in window.values())
        return {"seconds": round(t1 - t0, 1),
                "requests_per_second": round(requests_total / (t1 - t0), 1),
                "errors": sum(op["errors"] for op in window.values()),
                "server_cpu_cores": round((cpu1 - cpu0) / (t1 - t0), 2),
                "cpu_cores_by_role": {role: round((roles1[role] - roles0[role]) / (t1 - t0), 4)
                                      for role in roles0},
                "operations": summarize(window, t1 - t0)}

    def stop_simulator(self):
        for process in self.simulators:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.simulators:
            try:
                process.wait(120)
            except subprocess.TimeoutExpired:
                process.kill()


def _merged(stats_files: list[Path]) -> dict:
    """One snapshot of the simulators writing ``stats_files`` (a file not written yet, or
    caught mid-write, counts as none)."""
    snapshots = []
    for path in stats_files:
        try:
            snapshots.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return merge(snapshots)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _find_child(root: int, needle: str) -> int:
    for pid in procs.tree(root):
        if needle in procs.command(pid):
            return pid
    return root


def _postmaster(pgdata: Path) -> int:
    try:
        return int((pgdata / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return -1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--status-interval", type=float, default=60.0)
    parser.add_argument("--window", type=float, default=120.0, help="steady-state seconds")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--failing-share", type=float, default=0.0)
    parser.add_argument("--list-rows", type=int, default=100_000,
                        help="device rows for the list measurements (0: skip)")
    parser.add_argument("--enroll-timeout", type=float, default=3600)
    parser.add_argument("--rollout-timeout", type=float, default=600)
    parser.add_argument("--quick", action="store_true",
                        help="stop after the rollout: no list or baseline measurements")
    parser.add_argument("--output", help="also write the JSON report here")
    parser.add_argument("--consoles", type=int, default=0,
                        help="measure the steady state a second time with this many console "
                             "sessions open (report: steady_state_with_consoles)")
    parser.add_argument("--task-workers", type=int, default=2,
                        help="task worker processes (a mass enrollment queues each new "
                             "device's fleet membership and first render)")
    parser.add_argument("--simulator-processes", type=int, default=0,
                        help=f"simulator processes (default: one per {DEVICES_PER_SIMULATOR} "
                             "devices)")
    parser.add_argument("--agent-api-workers", type=int, default=0,
                        help=f"agent API processes (default: one per "
                        f"{DEVICES_PER_AGENT_API_WORKER} devices, at least 2)")
    parser.add_argument("--storm", type=int, default=0,
                        help="after the rollout, this many more devices enroll at once while "
                             "the fleet stays connected (report: storm)")
    parser.add_argument("--storm-concurrency", type=int, default=200,
                        help="enrollments the storm's simulator keeps in flight")
    parser.add_argument("--enrollment-concurrency", type=int,
                        help="the server's enrollment_concurrency (admission control)")
    parser.add_argument("--enrollment-rate", type=int,
                        help="the server's enrollment_rate (new requests a second, paced)")
    parser.add_argument("--enrollment-queue", type=int,
                        help="the server's enrollment_queue (admission control)")
    parser.add_argument("--enrollment-latency-target", type=int,
                        help="the server's enrollment_latency_target (ms; adaptive pacing)")
    parser.add_argument("--log-level",
                        help="the server's log_level (default warning; info shows each "
                             "process's enrollment pacing at the end of a storm)")
    args = parser.parse_args(argv)
    args.agent_api_workers = args.agent_api_workers or max(
        2, math.ceil((args.devices + args.storm) / DEVICES_PER_AGENT_API_WORKER))
    from flightctl_agent.simulator.run import raise_file_limit

    raise_file_limit()  # inherited by the server and the simulator
    # SIGTERM (timeout, kill) unwinds through the finally below, which stops what was started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    bench = Bench(args)
    try:
        report = bench.run()
        code = 0
    # Report what was measured, and why it stopped: a failure, or SIGTERM / Ctrl-C (`make
    # bench` runs under `timeout`), which would otherwise end the run without any report.
    except (Exception, SystemExit, KeyboardInterrupt) as exc:  # noqa: BLE001
        stopped = (f"stopped by signal ({exc.code})" if isinstance(exc, SystemExit)
                   else "interrupted" if isinstance(exc, KeyboardInterrupt) else str(exc))
        report, code = {**bench.report, "failed": stopped}, 1
        try:
            report.setdefault("simulator", bench.simulator_totals())
        except Exception:  # noqa: BLE001 - the simulators' files may not exist yet
            pass
    finally:
        bench.stop_all()
        if getattr(bench, "db", None) is not None:
            bench.db.stop()
    report["work_dir"] = str(bench.work)
    write_report(report, args.output)
    return code


def write_report(report: dict, output: str | None) -> None:
    """Print the JSON report, and write it to ``output`` too when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if output:
        _write_atomically(Path(output), text)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
