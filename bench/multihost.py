"""``python -m bench.multihost``: the benchmark, and the failover drill, on two server nodes.

The topology of docs/deploy-multihost.md on one machine (bench/cluster.py): a PostgreSQL
primary and a synchronous streaming standby, two nodes each running ``flightctl-server serve``
(joined with ``cluster-bundle``/``join``), HAProxy in front (deploy/haproxy/haproxy.cfg) and
``flightctl-agent simulate`` with N devices, every one on a host (network namespace) of its own.

``--bench`` (what ``make bench NODES=2`` runs): enroll, converge, measure a steady-state window
and a fleet rollout, and print per-node figures (devices held, CPU, memory, HAProxy sessions)
and the totals. Without it, the drill tests/test_multihost.py asserts on: a fleet change made
through node 1 delivered to the devices held by node 2; node 2 SIGKILLed; the primary killed
and the standby promoted; node 1 stopped cleanly. Each step's figures go to the JSON report.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import requests
from flightctl_agent.simulator.stats import diff, summarize

from bench import measure, procs
from bench.cluster import BIN, Balancer, Network, Node, Postgres, wait
from bench.consoles import ConsoleLoad
from bench.ledger import (
    Writer,
    lost_status_reports,
    lost_user_writes,
    reporting_again,
    simulator_stats,
)

API = "flightctl.io/v1beta1"
FLEET = "multihost"


def _session() -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # a proxy or REQUESTS_CA_BUNDLE from the environment: not ours
    return session



class Cluster:
    def __init__(self, args):
        self.args = args
        # Below /tmp, not a test's private directory: the postgres user must reach its part.
        self.work = Path(args.work_dir or tempfile.mkdtemp(prefix="flightctl-multihost-",
                                                           dir="/tmp"))
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o755)  # the postgres user runs the database below it
        self.net: Network | None = None
        self.db: Postgres | None = None
        self.nodes: list[Node] = []
        self.lb: Balancer | None = None
        self.simulator: subprocess.Popen | None = None
        self.stats_file = self.work / "simulator-stats.json"
        self.timings: dict[str, float] = {}

    # -- bring-up ------------------------------------------------------------------------

    def start(self) -> None:
        started = time.monotonic()
        self.net = Network()
        self.db = Postgres(self.net, self.work, synchronous=True)
        self.db.start()
        self.timings["database_seconds"] = round(time.monotonic() - started, 1)
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("FLIGHTCTL_") and k != "DJANGO_SETTINGS_MODULE"}
        env.update({"FLIGHTCTL_LOG_LEVEL": "warning", "FLIGHTCTL_AGENT_API_WORKERS": "1",
                    "FLIGHTCTL_TASK_WORKERS": "1",
                    # The explicit choice of docs/deploy-multihost.md: status reports are
                    # acknowledged once the synchronous standby has them too.
                    "FLIGHTCTL_STATUS_SYNCHRONOUS_COMMIT": self.args.status_commit})
        self.nodes = [Node(self.net, f"node{i}", self.work, self.db, env)
                      for i in range(1, self.args.nodes + 1)]
        first = self.nodes[0]
        bundle = self.work / "cluster-bundle.tgz"
        subprocess.run([BIN / "flightctl-server", "cluster-bundle", "--data-dir",
                        first.data_dir, "-o", bundle], env=env, check=True,
                       capture_output=True)
        self.bundle_mode = oct(bundle.stat().st_mode & 0o777)
        self.join_messages = [node.join(bundle) for node in self.nodes]
        self.ca = str(first.data_dir / "pki" / "ca.crt")
        # Migrations and the first user once, from the first node; then every node starts at
        # once (each serve's own migration finds nothing to do, and no first-start token is
        # made by two nodes at the same time).
        self.token = subprocess.run(
            [BIN / "flightctl-server", "create-token", "--data-dir", first.data_dir,
             "--username", "admin"], env=env, check=True, capture_output=True,
            text=True).stdout.strip()
        self.timings["migrate_seconds"] = round(
            time.monotonic() - started - self.timings["database_seconds"], 1)
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            wait(f"{node.host} to be ready", node.ready, 180, 0.5)
        self.lb = Balancer(self.net, self.work, Path(self.ca), self.nodes)
        self.lb.start()
        wait("every node UP in haproxy", lambda: all(
            self.lb.status(n, b) == "UP" for n in self.nodes
            for b in ("agent_api", "user_api")), 30)
        self.base = f"https://{self.net.address('lb')}:3443"
        self.auth = {"Authorization": f"Bearer {self.token}"}
        self.timings["bring_up_seconds"] = round(time.monotonic() - started, 1)

    def start_devices(self) -> None:
        self.net.add("sim")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLIGHTCTL_")}
        started = time.monotonic()
        with open(self.work / "simulator.log", "ab") as out:
            self.simulator = subprocess.Popen(
                self.net.argv("sim", [
                    BIN / "flightctl-agent", "simulate", "--user-api", self.base,
                    "--ca-file", self.ca, "--devices", self.args.devices, "--concurrency", 20,
                    "--status-interval", self.args.status_interval,
                    "--source-ips", self.net.address("sim"), "--stats-file", self.stats_file,
                    "--work-dir", self.work / "devices-0"]),
                env={**env, "FLIGHTCTL_TOKEN": self.token}, stdout=out,
                stderr=subprocess.STDOUT)
        wait(f"{self.args.devices} devices to enroll and report",
             lambda: self.stats().get("enrolled", 0) >= self.args.devices
             and len(self.stats().get("acked", {})) >= self.args.devices,
             self.args.enroll_timeout, 1)
        self.timings["enroll_seconds"] = round(time.monotonic() - started, 1)

    def stats(self) -> dict:
        return simulator_stats(self.simulator, self.stats_file, self.work / "simulator.log")

    # -- what the drill measures ---------------------------------------------------------

    def devices_on(self, node: Node) -> int:
        """Agent API connections HAProxy has open to ``node`` (one long-poll per device)."""
        return int(self.lb.stats()[("agent_api", self.lb.names[node.host])]["scur"] or 0)

    def rollout(self, content: str, through: str | None = None) -> dict:
        """A fleet template change for every device, PUT through ``through`` (a node's own
        user API) or the balancer; when each device received it through its long-poll, set
        against the render's time in the database."""
        changed = time.time()
        base = f"https://{through}:3443" if through else self.base
        body = {"apiVersion": API, "kind": "Fleet", "metadata": {"name": FLEET},
                "spec": {"selector": {"matchLabels": {"created_by": "device-simulator"}},
                         "template": {"metadata": {"labels": {"fleet": FLEET}}, "spec": {
                             "config": [{"name": "motd", "inline": [
                                 {"path": "/etc/motd", "content": content}]}]}}}}
        response = _session().put(f"{base}/api/v1/fleets/{FLEET}", json=body, headers=self.auth,
                                  verify=self.ca, timeout=30)
        response.raise_for_status()

        def arrived() -> dict:
            arrivals = self.stats().get("arrivals") or {}
            return {name: entry for name, entry in arrivals.items() if entry[1] >= changed}
        wait("the rollout to reach every device",
             lambda: len(arrived()) >= self.args.devices, self.args.rollout_timeout, 0.5)
        arrivals = arrived()
        return {"devices": len(arrivals),
                "seconds": round(max(at for _, at in arrivals.values()) - changed, 1),
                "after_render": measure.delivery_ms(self.db.url(), arrivals)}

    def reporting_again(self, since: float) -> float:
        return reporting_again(self.stats, since, self.args.devices, self.args.status_interval)

    def lost_status_reports(self) -> int:
        return lost_status_reports(self.db.url(), self.stats().get("acked", {}))

    def lost_user_writes(self, writer: Writer) -> int:
        return lost_user_writes(self.db.url(), writer)

    def errors_since(self, before: dict) -> dict:
        after = self.stats().get("codes") or {}
        old = before.get("codes") or {}
        return {k: v - old.get(k, 0) for k, v in after.items() if v - old.get(k, 0)}

    # -- tear-down -----------------------------------------------------------------------

    def stop(self) -> None:
        if self.simulator is not None:
            procs.stop(self.simulator, 30)
        for node in self.nodes:
            try:
                node.stop(30)
            except subprocess.TimeoutExpired:
                pass
        if self.lb is not None:
            self.lb.stop()
        if self.db is not None:
            self.db.stop()
        if self.net is not None:
            self.net.close()


def fives(codes: dict) -> int:
    """Failed device calls answered 5xx (``"<op> <status>"`` keys of the simulator)."""
    return sum(v for k, v in codes.items() if k.rsplit(" ", 1)[-1].startswith("5"))


def consoles_across(cluster: Cluster, user_node: Node, device_node: Node,
                    count: int = 2) -> dict:
    """``count`` console sessions: the user's WebSocket on ``user_node``'s user API, the
    device's gRPC stream on ``device_node``'s agent API, joined through the bridge."""
    api = _session()
    api.headers.update(cluster.auth)
    api.verify = cluster.ca
    load = ConsoleLoad(f"https://{user_node.address}:3443", 7443, cluster.ca, cluster.token,
                       cluster.work, count, api, agent_host=device_node.address)
    bridges, failed, started = [], [], time.monotonic()
    try:
        load.start(120)
        opened = round(time.monotonic() - started, 1)
        # Where the user's end listens, as the row the device's end found it by says.
        with psycopg.connect(cluster.db.url()) as conn:
            bridges = sorted({row[0].rsplit(":", 1)[0] for row in conn.execute(
                "SELECT bridge FROM devices_consolesession").fetchall()})
        time.sleep(2)
    except RuntimeError as exc:  # reported, and the drill goes on
        failed.append(str(exc))
    finally:
        result = load.stop()
    return {**result, "errors": failed + result["errors"], "bridges": bridges,
            "open_seconds": opened if not failed else None}


def drill(cluster: Cluster) -> dict:
    """The failover drill; a report of every step."""
    node1, node2 = cluster.nodes[0], cluster.nodes[1]
    lb, interval = cluster.lb, cluster.args.status_interval
    report: dict = {"devices": cluster.args.devices, "status_interval": interval,
                    "bundle_mode": cluster.bundle_mode, "join": cluster.join_messages[-1],
                    "addresses": {n.host: n.address for n in cluster.nodes}}
    # Every device's connections land on node 2: node 1 takes no new ones (drain).
    lb.set_state(node1, "drain")
    cluster.start_devices()
    report["held"] = {"node1": cluster.devices_on(node1), "node2": cluster.devices_on(node2)}
    writer = Writer(cluster, 0.2, "multihost", timeout=15)
    writer.start()
    time.sleep(2)  # every long-poll open and waiting

    # 1. A change made through node 1's own user API, rendered by node 1's task workers (node
    # 2's are paused meanwhile), delivered by node 2's long-polls: the notification crossed.
    paused = node2.task_pids()
    for pid in paused:
        os.kill(pid, signal.SIGSTOP)
    try:
        report["change_via_node1"] = cluster.rollout("from node1\n", through=node1.address)
    finally:
        for pid in paused:
            os.kill(pid, signal.SIGCONT)
    report["change_via_node1"]["node2_task_processes_paused"] = len(paused)
    # ... and console sessions whose user is on node 1 and whose device is on node 2.
    report["console_across_nodes"] = consoles_across(cluster, node1, node2)
    lb.set_state(node1, "ready")

    # 2. Node 2's host dies.
    before, at = cluster.stats(), time.time()
    report["kill_node2"] = {"processes": node2.kill()}
    again = cluster.reporting_again(at)
    report["kill_node2"].update({
        "reporting_again_seconds": again, "device_errors": cluster.errors_since(before),
        "held": {"node1": cluster.devices_on(node1), "node2": cluster.devices_on(node2)},
        "node2_in_haproxy": lb.status(node2),
        "lost_status_reports": cluster.lost_status_reports(),
        "lost_user_writes": cluster.lost_user_writes(writer)})
    node2.start()  # the host is back: it rejoins without any step of its own
    wait("node2 to be ready again", node2.ready, 120, 0.5)
    wait("node2 UP in haproxy", lambda: lb.status(node2) == "UP", 30)

    # 3. The primary dies; the standby is promoted; nobody restarts a node.
    before, failed_before, at = cluster.stats(), dict(writer.failed), time.time()
    pids = {n.host: n.serve.pid for n in cluster.nodes}
    cluster.db.kill_primary()
    promote = cluster.db.promote()
    again = cluster.reporting_again(at)
    report["failover"] = {
        "promote_seconds": promote, "reporting_again_seconds": again,
        "device_errors": cluster.errors_since(before),
        "user_write_errors": {k: v - failed_before.get(k, 0) for k, v in writer.failed.items()
                              if v - failed_before.get(k, 0)},
        "nodes_restarted": [n.host for n in cluster.nodes
                            if n.serve.poll() is not None or n.serve.pid != pids[n.host]],
        "lost_status_reports": cluster.lost_status_reports(),
        "lost_user_writes": cluster.lost_user_writes(writer)}
    report["failover"]["rollout_after"] = cluster.rollout("after the failover\n")

    # 4. Node 1 stopped cleanly (its devices move to node 2).
    before, at = cluster.stats(), time.time()
    held = cluster.devices_on(node1)
    stop_seconds = node1.stop()
    again = cluster.reporting_again(at)
    report["stop_node1"] = {
        "held_before": held, "stop_seconds": stop_seconds, "reporting_again_seconds": again,
        "device_errors": cluster.errors_since(before),
        "held_after": {"node2": cluster.devices_on(node2)},
        "lost_status_reports": cluster.lost_status_reports(),
        "lost_user_writes": cluster.lost_user_writes(writer)}
    writer.running = False
    writer.join(20)
    report["user_writes_acknowledged"] = len(writer.acked)
    report["timings"] = cluster.timings
    return report


def bench(cluster: Cluster) -> dict:
    """The benchmark's phases on the nodes behind the balancer, per node and in total."""
    cluster.start_devices()
    cluster.rollout("converge\n")
    time.sleep(5)
    window = cluster.args.window
    before, cpu, started = cluster.stats(), {}, time.monotonic()
    cpu = {n.host: n.cpu_seconds() for n in cluster.nodes}
    cpu_db = procs.cpu_seconds(cluster.net.pids("pg1")) + procs.cpu_seconds(
        cluster.net.pids("pg2"))
    sessions = cluster.lb.stats()
    time.sleep(window)
    elapsed = time.monotonic() - started
    after, stats = cluster.stats(), cluster.lb.stats()
    ops = {op: row for op, row in summarize(diff(after, before), elapsed).items()
           if row["count"]}
    nodes = {}
    for node in cluster.nodes:
        name = cluster.lb.names[node.host]
        nodes[node.host] = {
            # Two per device: its long-poll and its status connection.
            "agent_connections_open": int(stats[("agent_api", name)]["scur"] or 0),
            "agent_connections_in_window": int(stats[("agent_api", name)]["stot"])
            - int(sessions[("agent_api", name)]["stot"]),
            "cpu_percent": round(100 * (node.cpu_seconds() - cpu[node.host]) / elapsed, 1),
            "rss_mb": node.rss_mb()}
    cpu_db_after = procs.cpu_seconds(cluster.net.pids("pg1")) + procs.cpu_seconds(
        cluster.net.pids("pg2"))
    rollout = cluster.rollout("measured\n")
    return {"devices": cluster.args.devices, "nodes": len(cluster.nodes),
            "status_interval": cluster.args.status_interval, "window_seconds": round(elapsed, 1),
            "per_node": nodes,
            "total": {"operations": ops,
                      "requests_per_second": round(sum(o.get("per_second", 0)
                                                       for o in ops.values()), 1),
                      "cpu_percent_nodes": round(sum(n["cpu_percent"] for n in nodes.values()),
                                                 1),
                      "cpu_percent_postgres": round(100 * (cpu_db_after - cpu_db) / elapsed, 1),
                      "errors": after.get("errors_total", 0) - before.get("errors_total", 0)},
            "rollout": rollout, "timings": cluster.timings}


def arguments(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.multihost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--nodes", type=int, default=2, choices=(2,),
                        help="server nodes (deploy/haproxy/haproxy.cfg names two)")
    parser.add_argument("--status-interval", type=float, default=10.0)
    parser.add_argument("--status-commit", default="on",
                        help="status_synchronous_commit of the nodes (default on)")
    parser.add_argument("--bench", action="store_true",
                        help="the benchmark instead of the failover drill")
    parser.add_argument("--window", type=float, default=30.0, help="steady-state seconds")
    parser.add_argument("--enroll-timeout", type=float, default=300)
    parser.add_argument("--rollout-timeout", type=float, default=90)
    parser.add_argument("--work-dir")
    parser.add_argument("--output", help="also write the JSON report here")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = arguments(argv)
    if os.geteuid() != 0:
        sys.exit("bench.multihost makes network namespaces (ip netns): run it as root")
    cluster = Cluster(args)
    try:
        cluster.start()
        report = bench(cluster) if args.bench else drill(cluster)
    except Exception as exc:
        report = {"failed": f"{type(exc).__name__}: {exc}", "work_dir": str(cluster.work)}
        code = 1
    else:
        code = 0
    finally:
        cluster.stop()
    if code == 0 and not args.work_dir:
        shutil.rmtree(cluster.work, ignore_errors=True)  # a failed run keeps its logs
    text = json.dumps(report, indent=2)
    print(text)
    if args.output:
        Path(args.output).write_text(text + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
