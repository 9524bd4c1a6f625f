"""The simulation: obtain an enrollment certificate, enroll N devices, run them, report.

One process, one event loop. Enrollment uses one shared connection pool (every device enrolls
with the same enrollment certificate, as the reference simulator shares its enrollment
transport); once enrolled, each device uses its own certificate and so its own connections,
bound round-robin to ``source_ips`` so that no single source address runs out of ephemeral
ports (about 28,000 connections per source address to one server port; every device keeps
two: its long-poll and its status reports).
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import os
import random
import resource
import signal
import ssl
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flightctl_agent import protocol
from flightctl_agent.simulator.device import HEADERS, Cadence, SimulatedDevice
from flightctl_agent.simulator.stats import Stats, summarize

CALL_TIMEOUT = aiohttp.ClientTimeout(total=60)


class SimulationError(RuntimeError):
    """The simulation could not start (no enrollment certificate, unreachable service)."""


@dataclass
class Options:
    user_api: str
    token: str
    ca_file: Path
    devices: int
    work_dir: Path
    concurrency: int = 100
    approve: bool = True
    labels: dict = field(default_factory=dict)
    failing_share: float = 0.0
    source_ips: list = field(default_factory=lambda: ["127.0.0.1"])
    duration: float | None = None
    stats_file: Path | None = None
    cadence: Cadence = field(default_factory=Cadence)


def raise_file_limit() -> int:
    """Every device holds two sockets; the default limit (often 1,024) stops far short."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (1_048_576, 262_144, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return wanted
        except (ValueError, OSError):
            continue
    return soft


#: tries of an enrollment request's creation before the device gives up
ENROLL_ATTEMPTS = 5


class Simulation:
    def __init__(self, options: Options):
        self.options = options
        self.stats = Stats()
        self.stop = asyncio.Event()
        self.devices: list[SimulatedDevice] = []
        self.phase = "starting"
        self.agent_api = ""

    # -- set-up ----------------------------------------------------------------------------

    def _user_headers(self) -> dict:
        return {**HEADERS, "Authorization": f"Bearer {self.options.token}"}

    async def _enrollment_identity(self, user: aiohttp.ClientSession) -> ssl.SSLContext:
        """An enrollment certificate from the user API (signer ``enrollment``) and the agent
        API's address and CA bundle from its enrollment config."""
        key = ec.generate_private_key(ec.SECP256R1())
        name = f"simulator-{uuid.uuid4().hex[:10]}"
        csr = protocol.build_csr(key, name)
        body = {"apiVersion": protocol.API_VERSION, "kind": "CertificateSigningRequest",
                "metadata": {"name": name},
                "spec": {"request": base64.b64encode(csr).decode(), "signerName": "enrollment",
                         "usages": ["clientAuth", "CA:false"]}}
        base = self.options.user_api.rstrip("/")
        async with user.post(f"{base}/api/v1/certificatesigningrequests", json=body,
                             headers=self._user_headers()) as response:
            if response.status != 201:
                raise SimulationError(f"enrollment CSR refused: {response.status} "
                                      f"{await response.text()}")
        for _ in range(50):
            async with user.get(f"{base}/api/v1/enrollmentconfig", params={"csr": name},
                                headers=self._user_headers()) as response:
                if response.status == 200:
                    config = (await response.json())["enrollment-service"]
                    certificate = config["authentication"].get("client-certificate-data")
                    if certificate:
                        break
            await asyncio.sleep(0.2)
        else:
            raise SimulationError("no enrollment certificate from the user API")
        self.agent_api = config["service"]["server"].rstrip("/")
        bundle = self.options.work_dir / "ca-bundle.crt"
        bundle.write_bytes(base64.b64decode(config["service"]["certificate-authority-data"]))
        identity = self.options.work_dir / "enrollment.pem"
        identity.touch(mode=0o600)
        identity.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption())
                             + base64.b64decode(certificate))
        context = ssl.create_default_context(cafile=str(bundle))
        context.load_cert_chain(str(identity))
        return context

    async def _call(self, op: str, request, *, ok: int, ok_on_retry: int) -> bool:
        """One enrollment call; a lost connection is retried, as the agent does (and counted
        as an error all the same). ``ok_on_retry`` on a retry means an earlier attempt was
        stored after all (409 exists, 400 already approved)."""
        attempt = 0
        while attempt < ENROLL_ATTEMPTS and not self.stop.is_set():
            started = time.monotonic()
            try:
                async with request() as response:
                    if response.status == ok or (attempt and response.status == ok_on_retry):
                        self.stats.record(op, time.monotonic() - started)
                        return True
                    if response.status == 503:  # admission control: come back when told
                        await self._deferred(op, response, started)
                        continue
                    self.stats.error(op, f"{response.status} {(await response.text())[:200]}")
                    return False
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.stats.error(op, f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0 + attempt)
            attempt += 1
        return False

    async def _deferred(self, op: str, response, started: float) -> None:
        """A 503 with Retry-After: the server's enrollment admission (or a restart) asks the
        device to come back later, as the agent does; counted, not an error."""
        self.stats.record(f"{op}.deferred", time.monotonic() - started)
        try:
            delay = float(response.headers.get("Retry-After", ""))
        except ValueError:
            delay = 5.0
        await asyncio.sleep(max(0.0, delay))

    async def _enroll(self, device: SimulatedDevice, enroll, enroll_ssl, user,
                      gate: asyncio.Semaphore) -> bool:
        base, user_base = self.agent_api, self.options.user_api.rstrip("/")
        async with gate:
            created = await self._call(
                "enroll.create", lambda: enroll.post(
                    f"{base}/api/v1/enrollmentrequests", json=device.enrollment_request(),
                    headers=HEADERS, ssl=enroll_ssl), ok=201, ok_on_retry=409)
            if not created:
                return False
            if self.options.approve:
                labels = {"created_by": "device-simulator", **self.options.labels}
                approved = await self._call(
                    "enroll.approve", lambda: user.put(
                        f"{user_base}/api/v1/enrollmentrequests/{device.name}/approval",
                        json={"approved": True, "labels": labels},
                        headers=self._user_headers()), ok=200, ok_on_retry=400)
                if not approved:
                    return False
        # Waiting for approval happens outside the gate: unapproved devices must not block
        # the enrollment of others (10 s x 1.5 backoff, capped at a minute, like the agent).
        delay = 0.5 if self.options.approve else 10.0
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                async with enroll.get(f"{base}/api/v1/enrollmentrequests/{device.name}",
                                      headers=HEADERS, ssl=enroll_ssl) as response:
                    if response.status == 200:
                        state = protocol.parse_enrollment_request(await response.json())
                        self.stats.record("enroll.poll", time.monotonic() - started)
                        if state.certificate:
                            device.install_certificate(state.certificate)
                            self.stats.enrolled += 1
                            return True
                        if state.denied or state.failed:
                            self.stats.error("enroll.poll", f"refused: {state.message}")
                            return False
                    elif response.status == 503:
                        await self._deferred("enroll.poll", response, started)
                        continue
                    else:
                        self.stats.error("enroll.poll", f"{response.status}")
            except (aiohttp.ClientError, TimeoutError) as exc:
                self.stats.error("enroll.poll", f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 60.0)
        return False

    # -- reporting -------------------------------------------------------------------------

    def snapshot(self) -> dict:
        return self.stats.snapshot(self.phase, len(self.devices))

    async def _write_stats(self) -> None:
        path = self.options.stats_file
        while path is not None:
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(self.snapshot()))
            os.replace(temporary, path)  # readers never see half a file
            if self.stop.is_set():
                return
            try:
                await asyncio.wait_for(self.stop.wait(), 2.0)
            except TimeoutError:
                pass

    async def _keep_collections_short(self) -> None:
        """Freeze what exists every 30 s, so the collector's full collections walk only what
        is younger.

        The simulator holds thousands of devices (keys, TLS contexts, connections) for the
        whole run; CPython's full collections walked all of them and stopped this process
        for about a second, and the benchmark then timed the deliveries that arrived during
        the pause as the server's. A load generator may leak the odd old cycle instead."""
        while not self.stop.is_set():
            gc.freeze()
            try:
                await asyncio.wait_for(self.stop.wait(), 30.0)
            except TimeoutError:
                pass

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> dict:
        options = self.options
        options.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        writer = asyncio.create_task(self._write_stats())
        freezer = asyncio.create_task(self._keep_collections_short())
        user_ssl = ssl.create_default_context(cafile=str(options.ca_file))
        user = aiohttp.ClientSession(
            # Idle connections are dropped before the server's keep-alive (uvicorn: 5 s) ends
            # them: reusing one the server is closing at that moment fails the request.
            connector=aiohttp.TCPConnector(ssl=user_ssl, limit=options.concurrency,
                                           keepalive_timeout=1.0),
            timeout=CALL_TIMEOUT)
        enroll = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=options.concurrency), timeout=CALL_TIMEOUT)
        # One pool per source address; a device's connections are told apart by its own TLS
        # context (aiohttp keys pooled connections by it), so each keeps its own two.
        sessions = [aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, local_addr=(ip, 0), keepalive_timeout=300,
                                           force_close=False))
            for ip in options.source_ips]
        started_at = time.time()
        running = []
        try:
            enroll_ssl = await self._enrollment_identity(user)
            self.phase = "enrolling"
            gate = asyncio.Semaphore(options.concurrency)
            failing = int(round(options.devices * options.failing_share))
            failing_indexes = set(random.sample(range(options.devices), failing))

            async def one(index: int) -> None:
                device = SimulatedDevice(index, options.work_dir, options.work_dir /
                                         "ca-bundle.crt", self.stats, options.cadence,
                                         failing=index in failing_indexes)
                self.devices.append(device)
                if await self._enroll(device, enroll, enroll_ssl, user, gate):
                    session = sessions[index % len(sessions)]
                    running.append(asyncio.create_task(
                        device.run(session, self.agent_api, self.stop)))
                elif not self.stop.is_set():
                    self.stats.enroll_failed += 1

            await asyncio.gather(*(one(i) for i in range(options.devices)))
            self.stats.enroll_seconds = time.time() - started_at
            self.phase = "running"
            if options.duration is not None:
                try:
                    await asyncio.wait_for(self.stop.wait(), options.duration)
                except TimeoutError:
                    pass
            else:
                await self.stop.wait()
        finally:
            self.stop.set()
            self.phase = "stopped"
            await asyncio.gather(*running, return_exceptions=True)
            await writer
            await freezer
            for session in (user, enroll, *sessions):
                await session.close()
        snapshot = self.snapshot()
        return {"devices": options.devices, "enrolled": self.stats.enrolled,
                "enroll_seconds": round(getattr(self.stats, "enroll_seconds", 0.0), 1),
                "seconds": round(time.time() - started_at, 1),
                "errors": snapshot["errors_total"], "error_samples": snapshot["error_samples"],
                "operations": summarize(snapshot["ops"])}


def _log_long_collections() -> None:
    """Say when the collector stopped the simulator long enough to skew its latencies."""
    started = [0.0]

    def callback(phase, info):
        if phase == "start":
            started[0] = time.perf_counter()
        elif (paused := time.perf_counter() - started[0]) > 0.2:
            print(f"simulator: garbage collection (generation {info['generation']}) paused "
                  f"this process for {paused * 1000:.0f} ms", file=sys.stderr, flush=True)

    gc.callbacks.append(callback)


def simulate(options: Options) -> dict:
    raise_file_limit()
    _log_long_collections()
    try:
        import uvloop

        factory = uvloop.new_event_loop  # optional: much less of the simulator's own CPU
    except ImportError:
        factory = None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(Simulation(options).run())
