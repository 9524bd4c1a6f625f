"""``python -m bench.cost``: what one request and one connected device cost the agent API.

Ratios, not absolute timings, because the machine is shared and its speed varies by 2-3x
from one hour to the next (docs/scale.md): every figure is set against a baseline measured in
the same run, on the same process.

* **CPU per request**: the agent API runs as one process; a device load (one aiohttp client,
  the simulator's, each request on the connection of its own device's certificate, keep-alive)
  drives one operation at a time for ``--requests`` requests, and the process's CPU time
  (``/proc/<pid>/stat``, user + system) is divided by the requests. The baseline is
  ``GET /healthz`` on the same port: TLS, uvicorn, HTTP parsing, the response and its
  headers, nothing else. The operations are the ones every connected device makes: the status
  ``PUT``, the ``/rendered`` long-poll that ends empty (``204``, here after the run's short
  ``rendered_wait_timeout``), and the one that answers a new spec (``200``, what a rollout
  wakes).
* **Memory per connected device**: RSS of the process with 0, then ``n/2``, then ``n``
  devices connected as in the steady state (a waiting long-poll and a kept-alive status
  connection each); the slope in KB per device.

The devices are enrolled for real by the simulator, which is then stopped; its identities
(key and certificate files) drive the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import ssl
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from flightctl_agent import protocol

from bench import procs
from bench.run import Bench, wait_for, write_report

HEADERS = {"Flightctl-API-Version": "v1beta1"}
#: the server's long-poll wait in this run: a 204 cycle in measurable time
WAIT_SECONDS = 2


class Identities:
    """The enrolled devices' names and TLS contexts, read from the simulator's work dir."""

    def __init__(self, work_dir: Path):
        bundle = work_dir / "ca-bundle.crt"
        self.devices: list[tuple[str, ssl.SSLContext]] = []
        for path in sorted(work_dir.glob("*.pem")):
            if path.name == "enrollment.pem":
                continue
            context = ssl.create_default_context(cafile=str(bundle))
            context.load_cert_chain(str(path))
            self.devices.append((path.stem, context))


def _agent_worker(bench: Bench) -> int:
    """The one agent API worker process (its master only supervises)."""
    agent = [pid for pid in procs.tree(bench.server.pid)
             if "agent_api" in procs.command(pid)]
    workers = [pid for pid in agent if "multiprocessing" in procs.command(pid)]
    return (workers or agent)[-1]


def _user_api(bench: Bench) -> list[int]:
    """The user API's processes (uvicorn's master and workers)."""
    roots = [pid for pid in procs.tree(bench.server.pid)
             if "flightctl.asgi:application" in procs.command(pid)]
    return procs.tree(roots[0]) if roots else []


def _fresh_agent_worker(bench: Bench, pid: int) -> int:
    """Stop the agent API worker and wait for its master to start a new one: the memory
    figure needs a heap that earlier connections have not grown (freed memory is reused)."""
    import os

    os.kill(pid, signal.SIGTERM)
    new = wait_for("a new agent API worker", lambda: next(
        (p for p in [_agent_worker(bench)] if p != pid), None), 120, 0.5)
    wait_for("the agent API", lambda: _answers(bench), 120, 0.5)
    return new


def _answers(bench: Bench) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", bench.agent_port)) == 0


def _status_body(name: str, version: int) -> dict:
    status = protocol.empty_status()
    status["systemInfo"] = {"architecture": "amd64", "operatingSystem": "linux",
                            "agentVersion": "bench", "bootID": "bench"}
    status["config"] = {"renderedVersion": str(version)}
    return protocol.status_document(name, status)


class Load:
    def __init__(self, base: str, identities: Identities, pids: list[int], user_api: str = "",
                 user_ssl=None):
        self.base, self.ids, self.pids = base, identities, pids
        self.user_api, self.user_ssl = user_api, user_ssl
        self.versions: dict[str, int] = {}

    async def _one(self, session, op: str, name: str, context) -> int:
        url = f"{self.base}/api/v1/devices/{name}"
        if op == "trivial":
            request = session.get(f"{self.base}/healthz", ssl=context)
        elif op == "user_api.healthz":
            request = session.get(f"{self.user_api}/healthz", ssl=self.user_ssl)
        elif op == "status.put":
            request = session.put(f"{url}/status", ssl=context, headers=HEADERS,
                                  json=_status_body(name, self.versions.get(name, 1)))
        elif op == "rendered.200":
            request = session.get(f"{url}/rendered", ssl=context, headers=HEADERS)
        else:  # rendered.204: the long-poll of a device that has its spec, ended empty
            if name not in self.versions:
                await self._one(session, "rendered.200", name, context)
            request = session.get(f"{url}/rendered", ssl=context, headers=HEADERS, params={
                "knownRenderedVersion": str(self.versions[name])})
        async with request as response:
            body = await response.read()
            if op == "rendered.200" and response.status == 200:
                self.versions[name] = protocol.parse_rendered(json.loads(body)).version
            return response.status

    async def drive(self, session, op: str, requests: int, concurrency: int,
                    pids: list[int] | None = None) -> dict:
        """``requests`` calls of ``op``, ``concurrency`` devices at a time (each device one
        call at a time, as an agent); CPU seconds of the agent API process per request."""
        devices = self.ids.devices[:concurrency]
        counts: dict[int, int] = {}
        each = max(1, requests // len(devices))

        async def device(name, context):
            for _ in range(each):
                code = await self._one(session, op, name, context)
                counts[code] = counts.get(code, 0) + 1

        # Warm-up: every connection open and every code path loaded before measuring.
        await asyncio.gather(*(self._one(session, op, n, c) for n, c in devices))
        pids = pids or self.pids
        cpu0, t0 = procs.cpu_seconds(pids), time.monotonic()
        await asyncio.gather(*(device(n, c) for n, c in devices))
        cpu1, t1 = procs.cpu_seconds(pids), time.monotonic()
        done = each * len(devices)
        return {"requests": done, "codes": counts, "seconds": round(t1 - t0, 1),
                "cpu_ms_per_request": round((cpu1 - cpu0) * 1000 / done, 3)}


async def measure(base: str, identities: Identities, pid: int, args, user_api: str,
                  user_pids: list[int], ca: str) -> dict:
    import aiohttp

    load = Load(base, identities, [pid], user_api, ssl.create_default_context(cafile=ca))

    def session_factory():
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            limit=0, keepalive_timeout=300), timeout=aiohttp.ClientTimeout(total=120))

    report: dict = {}
    async with session_factory() as session:
        concurrency = min(args.concurrency, len(identities.devices))
        # The trivial endpoints are cheap: more requests, so that the clock's 10 ms ticks
        # stay a small part of what is measured.
        report["user_api.healthz"] = await load.drive(
            session, "user_api.healthz", args.requests * 2, concurrency, user_pids)
        report["trivial"] = await load.drive(session, "trivial", args.requests * 5, concurrency)
        for op in ("status.put", "rendered.200"):
            report[op] = await load.drive(session, op, args.requests, concurrency)
        # The long-poll ends after WAIT_SECONDS: every device at once, for a few cycles.
        report["rendered.204"] = await load.drive(
            session, "rendered.204", len(identities.devices) * args.poll_cycles,
            len(identities.devices))
    # Two baselines: the benchmark's trivial endpoint (GET /healthz of the user API: uvicorn,
    # a2wsgi and Django's whole request cycle), and this port's own /healthz, answered ahead
    # of Django (TLS and HTTP alone: what no request can cost less than).
    for key, base_op in (("ratio_to_trivial", "user_api.healthz"),
                         ("ratio_to_bare_http", "trivial")):
        baseline = report[base_op]["cpu_ms_per_request"]
        report[key] = {op: round(report[op]["cpu_ms_per_request"] / baseline, 2)
                       for op in ("status.put", "rendered.200", "rendered.204")}
    return report


async def _keep_polling(load: Load, session, name: str, context) -> None:
    """A device's long-poll, always open (renewed when the server's wait ends it)."""
    while True:
        await load._one(session, "rendered.204", name, context)


async def memory(base: str, identities: Identities, pid: int, steps: int) -> dict:
    import aiohttp

    load = Load(base, identities, [pid])
    sessions = []

    def session_factory():
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(
            limit=0, keepalive_timeout=300), timeout=aiohttp.ClientTimeout(total=300))
        sessions.append(session)
        return session

    # Every code path loaded (imports, caches) before the first point, then let go.
    warm = session_factory()
    for op in ("rendered.200", "status.put", "rendered.204"):
        await asyncio.gather(*(load._one(warm, op, name, context)
                               for name, context in identities.devices[:5]))
    await warm.close()
    await asyncio.sleep(32)  # past the server's first trim (agent_api.asgi): a settled start
    polls: list[asyncio.Task] = []
    points = [(0, procs.rss_bytes([pid]))]
    held = 0
    n = len(identities.devices)
    for step in range(1, steps + 1):
        chunk = identities.devices[held:n * step // steps]
        status_session, poll_session = session_factory(), session_factory()
        # The long-poll's connection (its first call learns the version), the kept-alive
        # status connection, then the long-poll, renewed whenever the server's wait ends it.
        await asyncio.gather(*(load._one(poll_session, "rendered.200", name, context)
                               for name, context in chunk))
        await asyncio.gather(*(load._one(status_session, "status.put", name, context)
                               for name, context in chunk))
        polls.extend(asyncio.create_task(_keep_polling(load, poll_session, name, context))
                     for name, context in chunk)
        held += len(chunk)
        await asyncio.sleep(3)
        points.append((held, procs.rss_bytes([pid])))
    # What stays once the server has handed freed memory back (agent_api.asgi trims every
    # 30 s): the connections' own cost, without what their handshakes left behind.
    await asyncio.sleep(35)
    settled = procs.rss_bytes([pid])
    for task in polls:
        task.cancel()
    await asyncio.gather(*polls, return_exceptions=True)
    for session in sessions:
        await session.close()
    (d0, r0), (d1, r1) = points[0], points[-1]
    return {"points": [{"devices": d, "rss_mb": round(r / 2**20, 1)} for d, r in points],
            "kb_per_device": round((r1 - r0) / 1024 / max(1, d1 - d0), 1),
            "settled_rss_mb": round(settled / 2**20, 1),
            "settled_kb_per_device": round((settled - r0) / 1024 / max(1, d1 - d0), 1)}


def _run_phase(coroutine) -> dict:
    try:
        import uvloop

        return uvloop.run(coroutine)
    except ImportError:
        return asyncio.run(coroutine)


def enroll(bench: Bench, devices: int) -> Path:
    bench.create_fleet("version 1\n")
    bench.start_simulator()
    wait_for(f"{devices} enrollments", lambda: bench.stats().get("enrolled", 0) >= devices,
             bench.args.enroll_timeout, 2)
    wait_for("every device's first render", lambda: bench.stats().get("ops", {}).get(
        "rendered.first", {}).get("count", 0) >= devices, bench.args.enroll_timeout, 2)
    bench.stop_simulator()
    return bench.work / "devices-0"


def start(args, wait: str) -> Bench:
    bench = Bench(SimpleNamespace(
        devices=args.devices, agent_api_workers=1, task_workers=1, simulator_processes=1,
        concurrency=25, status_interval=3600.0, failing_share=0.0,
        enroll_timeout=args.enroll_timeout))
    # The long-poll's wait for this run, through the server's own configuration.
    import os

    os.environ["FLIGHTCTL_RENDERED_WAIT_TIMEOUT"] = wait
    bench.start_server()
    return bench


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--devices", type=int, default=200,
                        help="enrolled devices (the memory figure's connected devices)")
    parser.add_argument("--requests", type=int, default=3000, help="requests per operation")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--poll-cycles", type=int, default=5,
                        help="long-poll cycles of every device for the 204 figure")
    parser.add_argument("--memory-steps", type=int, default=2)
    parser.add_argument("--enroll-timeout", type=float, default=600)
    parser.add_argument("--output", help="also write the JSON report here")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    report: dict = {"devices": args.devices}
    bench = None
    code = 0
    try:
        # A short long-poll wait: the 204 figure needs cycles, and the memory figure's
        # long-polls are renewed as soon as one ends, so one is always waiting.
        bench = start(args, f"{WAIT_SECONDS}s")
        ids_dir = enroll(bench, args.devices)
        identities = Identities(ids_dir)
        base = f"https://127.0.0.1:{bench.agent_port}"
        pid = _agent_worker(bench)
        report["cpu"] = _run_phase(measure(base, identities, pid, args, bench.base,
                                           _user_api(bench), bench.ca))
        pid = _fresh_agent_worker(bench, pid)
        report["memory"] = _run_phase(memory(base, identities, pid, args.memory_steps))
    except Exception as exc:  # noqa: BLE001 - report what was measured, and why it stopped
        report["failed"] = f"{type(exc).__name__}: {exc}"
        code = 1
    finally:
        if bench is not None:
            bench.stop_all()
            if getattr(bench, "db", None) is not None:
                bench.db.stop()
            report["work_dir"] = str(bench.work)
    write_report(report, args.output)
    return code


if __name__ == "__main__":
    sys.exit(main())
