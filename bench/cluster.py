"""A multi-host installation on one machine: hosts of their own in network namespaces.

What tests/test_multihost.py and ``python -m bench.multihost`` run (docs/deploy-multihost.md):

* :class:`Network`: one network namespace per host, each with one address on a private
  10.x.y.0/24 (a veth pair into a bridge that lives in a namespace of its own, so the machine's
  own firewall and interfaces are left alone), and one more veth that gives this process (in
  the machine's namespace) an address on it. Traffic never leaves the machine.
* :class:`Postgres`: a primary and a streaming-replication standby (Debian's PostgreSQL 15
  binaries, run as the ``postgres`` user), on hosts of their own; the standby is synchronous
  when asked, and :meth:`Postgres.promote` is the documented failover.
* :class:`Node`: ``flightctl-server serve`` on a host of its own, joined to the installation
  with ``cluster-bundle``/``join``.
* :class:`Balancer`: HAProxy with ``deploy/haproxy/haproxy.cfg``, and its runtime socket.

Every process started here is stopped here, and every namespace and interface removed.
"""

from __future__ import annotations

import csv
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import requests

from bench import procs, waiting

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PG_BIN = Path("/usr/lib/postgresql/15/bin")
HAPROXY_CONFIG = ROOT / "deploy" / "haproxy" / "haproxy.cfg"
#: each host's last octet on the private network
HOSTS = {"host": 1, "pg1": 11, "pg2": 12, "node1": 21, "node2": 22, "node3": 23, "lb": 30,
         "sim": 40}


def run(argv, **kwargs) -> str:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} failed ({done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout


wait = waiting.wait_for  # the drill's modules import it from here


class Network:
    """Namespaces ``fc<tag>-<host>`` on 10.<a>.<b>.0/24, created by :meth:`add`."""

    def __init__(self):
        used = run(["ip", "-o", "addr"]) + run(["ip", "netns", "list"])
        for _ in range(50):
            self.tag = f"{random.randrange(10000):04d}"
            self.subnet = f"10.{200 + random.randrange(50)}.{random.randrange(1, 250)}"
            if f"fc{self.tag}" not in used and f" {self.subnet}." not in used:
                break
        self.switch = f"fc{self.tag}-sw"
        self.names: list[str] = []
        self._netns(self.switch)
        self._in(self.switch, "ip", "link", "add", "br0", "type", "bridge")
        self._in(self.switch, "ip", "link", "set", "br0", "up")
        # This process's own address on the network: a veth end in the machine's namespace.
        self._plug(None, f"fc{self.tag}h", "host")

    def address(self, host: str) -> str:
        return f"{self.subnet}.{HOSTS[host]}"

    def namespace(self, host: str) -> str:
        return f"fc{self.tag}-{host}"

    def _netns(self, name: str) -> None:
        run(["ip", "netns", "add", name])
        self.names.append(name)
        self._in(name, "ip", "link", "set", "lo", "up")

    def _in(self, namespace: str | None, *argv) -> str:
        return run((["ip", "netns", "exec", namespace] if namespace else []) + list(argv))

    def _plug(self, namespace: str | None, inner: str, host: str) -> None:
        """A veth pair: one end on the bridge, ``inner`` in ``namespace`` (None: this one)."""
        outer = f"fc{self.tag}{HOSTS[host]}"
        run(["ip", "link", "add", outer, "netns", self.switch, "type", "veth", "peer", "name",
             inner] + (["netns", namespace] if namespace else []))
        self._in(self.switch, "ip", "link", "set", outer, "master", "br0", "up")
        self._in(namespace, "ip", "addr", "add", f"{self.address(host)}/24", "dev", inner)
        self._in(namespace, "ip", "link", "set", inner, "up")

    def add(self, host: str) -> str:
        """A host of its own; its namespace's name."""
        name = self.namespace(host)
        self._netns(name)
        self._plug(name, "eth0", host)
        return name

    def argv(self, host: str, argv) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(host)] + [str(a) for a in argv]

    def pids(self, host: str) -> list[int]:
        out = subprocess.run(["ip", "netns", "pids", self.namespace(host)],
                             capture_output=True, text=True).stdout
        return [int(p) for p in out.split()]

    def kill(self, host: str) -> int:
        """SIGKILL every process of ``host``: the host is gone. How many there were."""
        pids = self.pids(host)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait(f"{host}'s processes to die", lambda: not self.pids(host), 15)
        return len(pids)

    def close(self) -> None:
        for name in reversed(self.names):
            if name != self.switch:
                try:
                    self.kill(name.split("-", 1)[1])
                except RuntimeError:  # a process that will not die: remove the rest anyway
                    pass
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
        subprocess.run(["ip", "link", "del", f"fc{self.tag}h"], capture_output=True)


class Postgres:
    """A primary (``pg1``) and a streaming-replication standby (``pg2``) in ``work``."""

    def __init__(self, net: Network, work: Path, synchronous: bool = True):
        self.net, self.synchronous = net, synchronous
        self.work = work / "postgres"
        self.work.mkdir(parents=True, exist_ok=True)
        shutil.chown(self.work, "postgres", "postgres")
        self.dirs = {host: self.work / host for host in ("pg1", "pg2")}
        self.primary = "pg1"

    def url(self, database: str = "flightctl") -> str:
        """libpq's multi-host URL: whichever of the two accepts writes."""
        hosts = ",".join(f"{self.net.address(h)}:5432" for h in self.dirs)
        return (f"postgresql://postgres@{hosts}/{database}"
                f"?target_session_attrs=read-write&connect_timeout=3")

    def _as_postgres(self, host: str, *argv) -> str:
        return run(self.net.argv(host, ["runuser", "-u", "postgres", "--", *argv]))

    def _start(self, host: str, extra: str = "") -> None:
        data, sockets = self.dirs[host], self.work / f"{host}-sockets"
        sockets.mkdir(exist_ok=True)
        shutil.chown(sockets, "postgres", "postgres")
        self._as_postgres(host, PG_BIN / "pg_ctl", "-D", data, "-l", self.work / f"{host}.log",
                          "-w", "-t", "60", "-o",
                          f"-c listen_addresses=* -c unix_socket_directories={sockets} "
                          f"-c port=5432 {extra}", "start")

    def start(self) -> None:
        for host in self.dirs:
            self.net.add(host)
        primary = self.dirs["pg1"]
        self._as_postgres("pg1", PG_BIN / "initdb", "-D", primary, "-U", "postgres",
                          "--auth=trust", "--no-sync")
        with open(primary / "postgresql.conf", "a") as conf:
            # Process kills, not power cuts, are what the test does: the OS keeps what was
            # written, so skipping fsync changes nothing it measures and spares the disk.
            conf.write("max_connections = 300\nshared_buffers = 128MB\nfsync = off\n"
                       "wal_level = replica\nmax_wal_senders = 5\nwal_keep_size = 256MB\n"
                       "hot_standby = on\n")
        with open(primary / "pg_hba.conf", "a") as hba:
            hba.write(f"host all all {self.net.subnet}.0/24 trust\n"
                      f"host replication all {self.net.subnet}.0/24 trust\n")
        self._start("pg1")
        with psycopg.connect(f"postgresql://postgres@{self.net.address('pg1')}/postgres",
                             autocommit=True) as conn:
            conn.execute("CREATE DATABASE flightctl")
        standby = self.dirs["pg2"]
        self._as_postgres("pg2", PG_BIN / "pg_basebackup", "-h", self.net.address("pg1"),
                          "-U", "postgres", "-D", standby, "-X", "stream", "-R",
                          # not a spread checkpoint: that took 90 s here
                          "--checkpoint=fast")
        with open(standby / "postgresql.auto.conf", "a") as conf:
            conf.write(f"primary_conninfo = 'host={self.net.address('pg1')} port=5432 "
                       f"user=postgres application_name=standby'\n")
        self._start("pg2")
        if self.synchronous:
            # Once the standby is copied: it must not inherit the setting, or once promoted it
            # would wait for a standby of its own (and every commit before it existed hung).
            with psycopg.connect(self.admin_url(), autocommit=True) as conn:
                conn.execute("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
                conn.execute("SELECT pg_reload_conf()")
        want = "sync" if self.synchronous else "async"
        wait("the standby to stream", lambda: self.replication() == want, 30)

    def replication(self) -> str | None:
        """The standby's sync_state as the primary sees it."""
        with psycopg.connect(self.admin_url(), autocommit=True) as conn:
            row = conn.execute("SELECT sync_state FROM pg_stat_replication "
                               "WHERE application_name = 'standby'").fetchone()
        return row[0] if row else None

    def admin_url(self) -> str:
        return self.url("postgres")

    def postmaster(self, host: str) -> int:
        return int((self.dirs[host] / "postmaster.pid").read_text().split()[0])

    def kill_primary(self) -> None:
        """SIGKILL the primary's postmaster and every backend, as a crash would."""
        postmaster = self.postmaster(self.primary)
        for pid in procs.tree(postmaster):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait("the primary to die", lambda: not Path(f"/proc/{postmaster}").exists()
             or procs.command(postmaster) == "", 10)

    def promote(self) -> float:
        """``pg_ctl promote`` on the standby; seconds until it accepts writes."""
        started = time.monotonic()
        self._as_postgres("pg2", PG_BIN / "pg_ctl", "-D", self.dirs["pg2"], "-w", "promote")
        self.primary = "pg2"
        return round(time.monotonic() - started, 2)

    def stop(self) -> None:
        for host, data in self.dirs.items():
            if (data / "postmaster.pid").exists():
                subprocess.run(self.net.argv(host, ["runuser", "-u", "postgres", "--",
                                                    PG_BIN / "pg_ctl", "-D", data, "-m",
                                                    "immediate", "stop"]), capture_output=True)


class Node:
    """One server host: ``flightctl-server serve`` in its namespace, on the shared database."""

    def __init__(self, net: Network, host: str, work: Path, db: Postgres, env: dict):
        self.net, self.host, self.db = net, host, db
        self.data_dir = work / host
        self.address = net.address(host)
        self.env = env
        self.serve: subprocess.Popen | None = None
        self.log = work / f"{host}.log"

    def join(self, bundle: Path) -> str:
        """``flightctl-server join``: the bundle, the database, the balancer's addresses."""
        lb = self.net.address("lb")
        done = subprocess.run(
            [str(BIN / "flightctl-server"), "join", str(bundle), "--data-dir",
             str(self.data_dir), "--database-url", self.db.url(), "--base-url",
             f"https://{lb}:3443", "--agent-endpoint", f"https://{lb}:7443", "--alt-name", lb,
             "--alt-name", self.address, "--console-bridge-address", f"{self.address}:0"],
            env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"join failed: {done.stderr.strip()}")
        return done.stderr.strip()

    def start(self) -> None:
        if self.host not in [n.split("-", 1)[1] for n in self.net.names]:
            self.net.add(self.host)
        with open(self.log, "ab") as out:
            self.serve = subprocess.Popen(
                self.net.argv(self.host, [BIN / "flightctl-server", "serve", "--data-dir",
                                          self.data_dir, "--address", "0.0.0.0:3443",
                                          "--agent-address", "0.0.0.0:7443",
                                          "--workers", "1"]),
                env={**self.env, "FLIGHTCTL_DATA_DIR": str(self.data_dir)}, stdout=out,
                stderr=subprocess.STDOUT)

    def ready(self) -> bool:
        if self.serve is not None and self.serve.poll() is not None:
            raise RuntimeError(f"{self.host}'s serve exited with {self.serve.returncode}; see "
                               f"{self.log}")
        session = requests.Session()
        session.trust_env = False  # no proxy from the environment
        try:
            return session.get(f"https://{self.address}:3443/readyz", timeout=2,
                               verify=str(self.data_dir / "pki" / "ca.crt")).status_code == 200
        except requests.RequestException:
            return False

    def stop(self, timeout: float = 60) -> float:
        """SIGTERM, as a unit's stop; seconds it took."""
        started = time.monotonic()
        if self.serve is not None and self.serve.poll() is None:
            self.serve.send_signal(signal.SIGTERM)
            self.serve.wait(timeout)
        return round(time.monotonic() - started, 2)

    def kill(self) -> int:
        """The host dies: every process of its namespace SIGKILLed."""
        count = self.net.kill(self.host)
        if self.serve is not None:
            self.serve.wait(10)
        return count

    def task_pids(self) -> list[int]:
        """The node's task cluster (django-q2's qcluster and its workers)."""
        return sorted({pid for root in self.net.pids(self.host)
                       if "qcluster" in procs.command(root) for pid in procs.tree(root)})

    def cpu_seconds(self) -> float:
        return procs.cpu_seconds(self.net.pids(self.host))

    def rss_mb(self) -> float:
        return round(procs.rss_bytes(self.net.pids(self.host)) / 2**20, 1)


class Balancer:
    """HAProxy on host ``lb`` with the configuration the docs give."""

    def __init__(self, net: Network, work: Path, ca: Path, nodes: list[Node]):
        self.net, self.work = net, work / "haproxy"
        self.work.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "FLIGHTCTL_LB_ADDRESS": net.address("lb"),
                    "FLIGHTCTL_LB_CA": str(ca), "FLIGHTCTL_LB_STATE": str(self.work)}
        for index, node in enumerate(nodes, 1):
            self.env[f"FLIGHTCTL_NODE{index}"] = node.address
        self.names = {node.host: f"node{index}" for index, node in enumerate(nodes, 1)}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        if not shutil.which("haproxy"):
            raise RuntimeError("haproxy is not installed (scripts/install-test-deps.sh)")
        self.net.add("lb")
        with open(self.work / "haproxy.log", "ab") as out:
            self.process = subprocess.Popen(
                self.net.argv("lb", ["haproxy", "-db", "-f", HAPROXY_CONFIG]), env=self.env,
                stdout=out, stderr=subprocess.STDOUT)
        wait("haproxy's runtime socket", lambda: (self.work / "haproxy.sock").exists(), 10)

    def command(self, line: str) -> str:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(str(self.work / "haproxy.sock"))
            sock.sendall(line.encode() + b"\n")
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        return b"".join(chunks).decode()

    def stats(self) -> dict[tuple[str, str], dict]:
        """``(backend, server)`` -> HAProxy's counters (status, scur, stot, bin, bout...)."""
        text = self.command("show stat").lstrip("# ")
        return {(row["pxname"], row["svname"]): row for row in csv.DictReader(io.StringIO(text))
                if row["svname"] not in ("FRONTEND", "BACKEND")}

    def status(self, node: Node, backend: str = "agent_api") -> str:
        return self.stats()[(backend, self.names[node.host])]["status"]

    def set_state(self, node: Node, state: str) -> None:
        """``ready``, ``drain`` (no new connections) or ``maint``, on both backends."""
        for backend in ("agent_api", "user_api"):
            self.command(f"set server {backend}/{self.names[node.host]} state {state}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            procs.stop(self.process, 10)
