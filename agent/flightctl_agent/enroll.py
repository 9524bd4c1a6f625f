"""Enrollment: asking the service to accept this device and waiting for approval (§2.2).

The agent posts an EnrollmentRequest named after its key (with its CSR, status and requested
labels) using the bootstrap enrollment certificate, shows the enrollment URL and its QR code,
and polls the request until an operator approves it and the service has issued the management
certificate. A TPM identity also answers the service's credential challenge while it waits.

A device may sit in the waiting room for days, so the wait has no end (the reference exits
after six polls and relies on systemd to start it again): polls back off from
``enrollment-verify-interval`` to ``enrollment-verify-cap``, and a reminder is logged after 1, 2,
4 ... minutes, at most once an hour.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import time

from flightctl_agent import fsutil, protocol
from flightctl_agent.client import AgentClient, APIError

log = logging.getLogger(__name__)

BANNER_FILE = "/etc/issue.d/flightctl-banner.issue"
DISABLE_BANNER_ENV = "FLIGHTCTL_DISABLE_CONSOLE_BANNER"
FIRST_REMINDER = 60.0
MAX_REMINDER_SPACING = 3600.0


class EnrollmentRefused(Exception):
    """The request was denied or failed; the agent exits."""


def enroll_url(ui: str, name: str) -> str:
    return f"{ui.rstrip('/')}/enroll/{name}"


def manage_url(ui: str, name: str) -> str:
    return f"{ui.rstrip('/')}/manage/{name}"


def qr_code(url: str) -> str:
    """``url`` as a QR code drawn with block characters (two modules per character cell),
    light on dark as terminals show it; a phone's camera reads it off the screen."""
    import segno

    out = io.StringIO()
    segno.make(url).terminal(out=out, compact=True, border=2)
    return out.getvalue()


def banner(ui: str, name: str) -> str:
    url = enroll_url(ui, name)
    return (qr_code(url) + "\nEnroll your device to flightctl by scanning\nthe above QR code or "
            f"following this URL:\n{url}\n\n")


def management_banner(ui: str, name: str) -> str:
    url = manage_url(ui, name)
    return (qr_code(url) + "\nYour device is enrolled to flightctl,\nyou can manage your "
            f"device scanning the above QR. or following this URL:\n{url}\n")


def show(text: str) -> None:
    """Print a banner on the console unless FLIGHTCTL_DISABLE_CONSOLE_BANNER is true or 1."""
    if os.environ.get(DISABLE_BANNER_ENV, "").strip().lower() in ("1", "true"):
        return
    sys.stdout.write(text)
    sys.stdout.flush()


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
        show(text)
        _wait_for_approval(agent, client, stop)
    finally:
        client.close()


def _wait_for_approval(agent, client: AgentClient, stop) -> None:
    cfg = agent.config
    delay = cfg.enrollment_verify_interval
    started = time.monotonic()
    reminder = FIRST_REMINDER
    while True:
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
        waited = time.monotonic() - started
        if waited >= reminder:
            log.info("Still waiting for approval of enrollment request %s (%s so far): %s",
                     agent.name, _minutes(waited),
                     enroll_url(cfg.enrollment.ui_endpoint, agent.name))
            reminder = waited + min(max(waited, FIRST_REMINDER), MAX_REMINDER_SPACING)
        _sleep(delay, stop)
        delay = min(delay * 1.5, cfg.enrollment_verify_cap)


def _sleep(seconds: float, stop) -> None:
    """Sleep, waking each second to see whether the agent is stopping."""
    deadline = time.monotonic() + seconds
    while not stop() and time.monotonic() < deadline:
        time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))


def _minutes(seconds: float) -> str:
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"
