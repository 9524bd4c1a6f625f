"""The agent's Prometheus metrics (``metrics-enabled``; agent.md §8.6, §10.13).

Served on ``127.0.0.1:15690/metrics`` only when enabled, and only on loopback: whoever reads
them is on the device. ``FLIGHTCTL_METRICS_ADDRESS`` (``host:port``) moves the endpoint, so that
several agents can run side by side in tests; it cannot leave loopback.

* ``<operation>_duration_seconds``: a histogram per call to the service, for the seven
  operations of the reference (the long-poll's buckets reach its four-minute timeout);
* ``flightctl_device_mgmt_cert_loaded``, ``..._not_after_timestamp_seconds``: the management
  certificate in use;
* ``flightctl_device_mgmt_cert_renewal_attempts_total{result}`` and
  ``..._renewal_duration_seconds{result}``: renewals, ``success``, ``failure`` or ``pending``.

With the endpoint on, the instruments count from the start (the cost is a lock and an
addition). With it off (the default) nothing can read them, so they do not exist:
prometheus_client and its HTTP server modules are not even imported, ~8 MB of the agent's
resident memory at idle (bench/agent_footprint.py).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import time
from contextlib import contextmanager

log = logging.getLogger(__name__)

ADDRESS = "127.0.0.1:15690"
ADDRESS_ENV = "FLIGHTCTL_METRICS_ADDRESS"
OPERATIONS = ("create_enrollmentrequest", "get_enrollmentrequest", "get_rendered_device_spec",
              "update_device_status", "patch_device_status",
              "create_certificate_signing_request", "get_certificate_signing_request")
LONG_POLL_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 120, 180, 240)


class _Instruments:
    def __init__(self):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = CollectorRegistry()
        self.rpc = {op: Histogram(
            f"{op}_duration_seconds",
            f"Duration of the agent's {op} call to the service, in seconds.", registry=registry,
            **({"buckets": LONG_POLL_BUCKETS} if op == "get_rendered_device_spec" else {}))
            for op in OPERATIONS}
        self.cert_loaded = Gauge("flightctl_device_mgmt_cert_loaded",
                                 "1 when a management certificate is loaded, else 0.",
                                 registry=registry)
        self.cert_not_after = Gauge("flightctl_device_mgmt_cert_not_after_timestamp_seconds",
                                    "Expiry of the management certificate in use (Unix time).",
                                    registry=registry)
        self.renewals = Counter("flightctl_device_mgmt_cert_renewal_attempts",
                                "Management certificate renewal attempts by result.",
                                ["result"], registry=registry)
        self.renewal_duration = Histogram(
            "flightctl_device_mgmt_cert_renewal_duration_seconds",
            "Duration of management certificate renewal attempts.", ["result"],
            registry=registry)


_on: _Instruments | None = None
_certificate = None  # the one in use, for instruments made after it was loaded


def enable() -> None:
    """Make the instruments (idempotent): ``metrics-enabled``, before the agent starts."""
    global _on
    if _on is None:
        _on = _Instruments()
        certificate_loaded(_certificate)


@contextmanager
def timed(operation: str):
    """Time one call to the service, whatever its outcome."""
    if _on is None:
        yield
        return
    started = time.monotonic()
    try:
        yield
    finally:
        _on.rpc[operation].observe(time.monotonic() - started)


def certificate_loaded(cert) -> None:
    """The management certificate now in use (None: there is none)."""
    global _certificate
    _certificate = cert
    if _on is None:
        return
    if cert is None:
        _on.cert_loaded.set(0)
        return
    _on.cert_loaded.set(1)
    _on.cert_not_after.set(cert.not_valid_after_utc.timestamp())


def renewal(result: str, seconds: float) -> None:
    if _on is not None:
        _on.renewals.labels(result=result).inc()
        _on.renewal_duration.labels(result=result).observe(seconds)


def serve(address: str | None = None) -> tuple[str, int]:
    """Start the endpoint on loopback (a daemon thread); returns where it listens."""
    host, _, port = (address or os.environ.get(ADDRESS_ENV) or ADDRESS).rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"metrics address {host} is not a loopback address")
    from prometheus_client import start_http_server

    enable()
    start_http_server(int(port), addr=host, registry=_on.registry)
    log.info("Metrics on http://%s:%s/metrics", host, port)
    return host, int(port)
