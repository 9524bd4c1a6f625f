"""One simulated device: a real identity speaking the real agent protocol, without a system.

It has its own P-256 key (so its own name), enrolls with a CSR, then behaves on the wire as the
agent does with default settings: a ``/rendered`` long-poll that is always open, a full status
``PUT`` every ``status_interval`` (with jitter) and one right after each new rendered version,
reporting that version as applied. Nothing is applied to any filesystem. Documents come from
:mod:`flightctl_agent.protocol`, the same functions the real agent uses.
"""

from __future__ import annotations

import asyncio
import random
import ssl
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from flightctl_agent import protocol
from flightctl_agent.simulator.stats import Stats

HEADERS = {protocol.API_VERSION_HEADER: protocol.API_VERSION}
#: client timeout of a long-poll: the agent's 4 minutes, well above the server's 2-minute wait
POLL_TIMEOUT = aiohttp.ClientTimeout(total=240)
CALL_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass
class Cadence:
    """The agent's timing, as configured for the simulation."""

    status_interval: float = 60.0
    jitter: float = 0.1  # +- fraction of each interval
    retry_delay: float = 5.0  # after a failed call or a 409 (nothing rendered yet)


class SimulatedDevice:
    def __init__(self, index: int, work_dir: Path, ca_file: Path, stats: Stats,
                 cadence: Cadence, failing: bool = False):
        self.index = index
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = protocol.device_name(self.key.public_key())
        self.work_dir = work_dir
        self.ca_file = ca_file
        self.stats = stats
        self.cadence = cadence
        self.failing = failing
        self.version = 0
        self.ssl: ssl.SSLContext | None = None
        self.status_changed = asyncio.Event()
        self.boot_id = f"sim-{index:06d}"
        #: numbers the status reports, so a fault run can tell which ones the server kept
        self.sequence = 0

    # -- enrollment ------------------------------------------------------------------------

    def enrollment_request(self) -> dict:
        csr = protocol.build_csr(self.key, self.name).decode()
        return protocol.enrollment_request_body(
            self.name, csr, self.status(), {"alias": f"device-{self.index:05d}"},
            None, None)

    def install_certificate(self, certificate_pem: str) -> None:
        """Keep the management certificate and build this device's TLS context from it."""
        key_pem = self.key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        path = self.work_dir / f"{self.name}.pem"
        # One file, key and certificate, 0600: ssl can load a chain only from a file.
        path.touch(mode=0o600)
        path.write_bytes(key_pem + certificate_pem.encode())
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_3
        context.load_cert_chain(str(path))
        self.ssl = context

    # -- status ----------------------------------------------------------------------------

    def status(self) -> dict:
        status = protocol.empty_status()
        status["systemInfo"] = {"architecture": "amd64", "operatingSystem": "linux",
                                "agentVersion": "simulator", "bootID": self.boot_id,
                                "customInfo": {"statusSequence": str(self.sequence)}}
        status["config"] = {"renderedVersion": str(self.version)}
        status["conditions"] = [{
            "type": "Updating", "status": "False", "reason": "Updated",
            "message": "", "lastTransitionTime": protocol.rfc3339(datetime.now(UTC))}]
        if self.failing:
            # A failing device: a critical disk alert (summary Error) and a failed workload.
            status["resources"] = {"cpu": "Healthy", "memory": "Healthy", "disk": "Critical"}
            status["applicationsSummary"] = {"status": "Error",
                                             "info": "simulated application failure"}
        return status

    # -- running ---------------------------------------------------------------------------

    async def run(self, session: aiohttp.ClientSession, base: str, stop: asyncio.Event) -> None:
        tasks = [asyncio.create_task(self._poll_loop(session, base, stop)),
                 asyncio.create_task(self._status_loop(session, base, stop))]
        try:
            await stop.wait()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _jittered(self, seconds: float) -> float:
        return seconds * (1 + random.uniform(-self.cadence.jitter, self.cadence.jitter))

    def _retry_delay(self, response=None) -> float:
        """After a failed call: the server's Retry-After when it sent one (503), as the agent
        honours it, else the configured delay."""
        if response is not None:
            try:
                return max(0.0, float(response.headers.get("Retry-After", "")))
            except ValueError:
                pass
        return self._jittered(self.cadence.retry_delay)

    async def _poll_loop(self, session, base: str, stop: asyncio.Event) -> None:
        url = f"{base}/api/v1/devices/{self.name}/rendered"
        while not stop.is_set():
            started = time.monotonic()
            failed = None
            try:
                async with session.get(url, params={"knownRenderedVersion": str(self.version)},
                                       headers=HEADERS, ssl=self.ssl,
                                       timeout=POLL_TIMEOUT) as response:
                    body = await response.read()
                    elapsed = time.monotonic() - started
                    if response.status == 200:
                        rendered = protocol.parse_rendered(await response.json())
                        # A device's first spec is there already: answered without a wait,
                        # so its latency is the call's own. Later 200s end a wait for a render
                        # (the benchmark times those from the render, rendered_delivery).
                        self.stats.record("rendered.first" if self.version == 0
                                          else "rendered.200", elapsed)
                        if rendered.version != self.version:
                            self.version = rendered.version
                            self.stats.received_render(rendered.version, self.name)
                            self.status_changed.set()  # report the new version right away
                        continue
                    if response.status == 204:
                        self.stats.record("rendered.204", elapsed)
                        continue
                    if response.status == 409:  # nothing rendered for this device yet
                        self.stats.record("rendered.409", elapsed)
                    else:
                        failed = response
                        self.stats.error("rendered", f"{response.status} {body[:200]!r}",
                                         response.status)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                if stop.is_set():
                    return
                self.stats.error("rendered", f"{type(exc).__name__}: {exc}", "connection")
            await asyncio.sleep(self._retry_delay(failed))

    async def _status_loop(self, session, base: str, stop: asyncio.Event) -> None:
        url = f"{base}/api/v1/devices/{self.name}/status"
        # Start-up jitter over a whole interval, as the reference simulator does, so the fleet's
        # reports are spread evenly rather than arriving in one burst a minute.
        next_at = time.monotonic() + random.uniform(0, self.cadence.status_interval)
        while not stop.is_set():
            try:
                await asyncio.wait_for(self.status_changed.wait(),
                                       max(0.0, next_at - time.monotonic()))
            except TimeoutError:
                pass
            self.status_changed.clear()
            started = time.monotonic()
            self.sequence += 1
            interval = self._jittered(self.cadence.status_interval)
            try:
                async with session.put(url, json=protocol.status_document(self.name,
                                                                          self.status()),
                                       headers=HEADERS, ssl=self.ssl,
                                       timeout=CALL_TIMEOUT) as response:
                    body = await response.read()
                    if response.status == 200:
                        self.stats.record("status.put", time.monotonic() - started)
                        self.stats.acked[self.name] = [self.sequence, time.time()]
                    else:
                        self.stats.error("status.put", f"{response.status} {body[:200]!r}",
                                         response.status)
                        if response.status == 503:  # come back when the server says
                            interval = min(interval, self._retry_delay(response))
            except (aiohttp.ClientError, TimeoutError) as exc:
                if stop.is_set():
                    return
                self.stats.error("status.put", f"{type(exc).__name__}: {exc}", "connection")
            next_at = time.monotonic() + interval
