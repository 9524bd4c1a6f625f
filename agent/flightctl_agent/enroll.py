"""Enrollment: asking the service to accept this device and waiting for approval (§2.2).

The agent posts an EnrollmentRequest named after its key (with its CSR, status and requested
labels) using the bootstrap enrollment certificate, prints the enrollment URL, and polls the
request with backoff until an operator approves it and the service has issued the management
certificate. A TPM identity also answers the service's credential challenge while it waits.
"""

from __future__ import annotations

import logging
import sys
import time

from flightctl_agent import fsutil, protocol
from flightctl_agent.client import AgentClient, APIError

log = logging.getLogger(__name__)

BANNER_FILE = "/etc/issue.d/flightctl-banner.issue"


class EnrollmentRefused(Exception):
    """The request was denied or failed; the agent exits."""


class EnrollmentTimeout(Exception):
    """Approval did not come within the verify steps; the agent exits and is restarted."""


def banner(ui: str, name: str) -> str:
    return ("\nEnroll your device to flightctl by scanning\nthe above QR code or following "
            f"this URL:\n{ui.rstrip('/')}/enroll/{name}\n\n")


def enroll(agent, status: dict, labels: dict, os_mode: str, known_version: str,
           stop=lambda: False) -> None:
    cfg = agent.config
    client = AgentClient(cfg.enrollment, workdir=None)
    try:
        body = protocol.enrollment_request_body(
            agent.name, agent.identity.enrollment_csr(), status, labels, os_mode, known_version)
        delay = cfg.enrollment_verify_interval
        while True:  # creating the request is retried until the service answers
            try:
                client.create_enrollment_request(body)
                break
            except APIError as e:
                if 400 <= e.status < 500:
                    raise EnrollmentRefused(f"enrollment request rejected: {e}") from e
                log.warning("enrollment request failed, retrying in %.0fs: %s", delay, e)
                if stop():
                    return
                time.sleep(delay)
                delay = min(delay * 1.5, cfg.enrollment_verify_cap)
        text = banner(cfg.enrollment.ui_endpoint, agent.name)
        fsutil.atomic_write(cfg.paths(BANNER_FILE), text)
        sys.stdout.write(text)
        sys.stdout.flush()
        _wait_for_approval(agent, client, stop)
    finally:
        client.close()


def _wait_for_approval(agent, client: AgentClient, stop) -> None:
    cfg = agent.config
    delay = cfg.enrollment_verify_interval
    for _ in range(cfg.enrollment_verify_steps):
        try:
            state = protocol.parse_enrollment_request(client.get_enrollment_request(agent.name))
        except APIError as e:
            log.warning("enrollment request poll failed: %s", e)
        else:
            if state.denied:
                raise EnrollmentRefused(f"enrollment request denied: {state.message}")
            if state.failed:
                raise EnrollmentRefused(f"enrollment request failed: {state.message}")
            if state.approved and state.certificate:
                agent.identity.store_certificate(state.certificate.encode())
                log.info("Enrollment approved; management certificate stored")
                return
            if state.tpm_challenge_pending and hasattr(agent.identity, "prove"):
                try:
                    agent.identity.prove(client, agent.name)
                except Exception as e:  # retried on the next poll
                    log.warning("TPM credential challenge failed: %s", e)
        if stop():
            return
        time.sleep(delay)
        delay = min(delay * 1.5, cfg.enrollment_verify_cap)
    raise EnrollmentTimeout("enrollment request not approved yet")
