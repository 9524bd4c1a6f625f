"""Management-certificate renewal before expiry (agent.md §8.6).

The certificate is renewed from the same key once its remaining validity drops to
``renewBefore`` (75 % of its lifetime by default): a CSR to the renewal signer, which the service
auto-approves, then the new certificate replaces the old one and new connections use it. The old
certificate stays in use until the new one is stored, so renewal causes no downtime.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime

from flightctl_agent import metrics, protocol
from flightctl_agent.client import APIError

log = logging.getLogger(__name__)

SYNC_ENV = "FLIGHTCTL_TEST_CERT_MANAGER_SYNC_INTERVAL"
RENEW_SECONDS_ENV = "FLIGHTCTL_TEST_MGMT_CERT_RENEW_BEFORE_SECONDS"
RENEW_PERCENT_ENV = "FLIGHTCTL_TEST_MGMT_CERT_RENEW_BEFORE_PERCENT"


class CertManager:
    """Checks the management certificate periodically and renews it when due."""

    def __init__(self, agent):
        self.agent = agent
        self.interval = float(os.environ.get(SYNC_ENV, "3600").rstrip("s") or 3600)
        self.next_check = 0.0
        self.pending: str | None = None
        self.renewals = 0

    def due(self, cert, now: datetime) -> bool:
        lifetime = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds()
        if os.environ.get(RENEW_SECONDS_ENV):
            before = float(os.environ[RENEW_SECONDS_ENV])
        else:
            before = lifetime * float(os.environ.get(RENEW_PERCENT_ENV, "75")) / 100
        remaining = (cert.not_valid_after_utc - now).total_seconds()
        return 0 < remaining <= before

    def maybe_renew(self) -> None:
        if time.monotonic() < self.next_check:
            return
        self.next_check = time.monotonic() + self.interval
        agent = self.agent
        cert = agent.identity.certificate()
        if cert is None or agent.management_client is None:
            return
        if self.pending is None and not self.due(cert, datetime.now(UTC)):
            return
        started = time.monotonic()
        try:
            result = "success" if self._renew() else "pending"
        except (APIError, ValueError, OSError) as e:
            result = "failure"
            log.warning("certificate renewal failed, keeping the current certificate: %s", e)
        metrics.renewal(result, time.monotonic() - started)

    def _renew(self) -> bool:
        """True once the new certificate is in use; False while the CSR is still pending."""
        agent = self.agent
        client = agent.management_client
        if self.pending is None:
            body = protocol.renewal_csr_body(agent.name, agent.identity.renewal_csr())
            client.create_csr(body)
            self.pending = body["metadata"]["name"]
            log.info("Requested management certificate renewal %s", self.pending)
        for _ in range(10):
            state, pem = protocol.parse_csr_certificate(client.get_csr(self.pending))
            if state == "approved":
                agent.identity.store_certificate(pem)
                self.pending = None
                self.renewals += 1
                agent.build_management_client()
                agent.collect_system_info()
                agent.status.push(force=True)
                log.info("Management certificate renewed")
                return True
            if state in ("denied", "failed"):
                self.pending = None
                raise ValueError(f"renewal CSR {state}")
            time.sleep(1)
        return False
