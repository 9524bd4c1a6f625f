"""What a device owner sees: the agent's QR codes, the pages they lead to, and a patient wait.

The agent prints a QR code and the URL of its enrollment request while it waits, then those of
its device once approved. A scanner reads the URL back from the drawing; each URL answers,
after an admin login, with the page of that request or device. The wait for approval has no
end and logs no line per poll.
"""

from __future__ import annotations

import time

import requests

from tests.console import admin_session, decode_qr, qr_blocks
from tests.net import wait_for

# A poll every 2 s (the shortest interval allowed), and "give up after one poll" as the
# reference would: this agent must still be waiting, in the same process, polls later.
IMPATIENT = {"enrollment-verify-interval": "2s", "enrollment-verify-cap": "2s",
             "enrollment-verify-steps": 1, "log-level": "info"}


def owner(password: str = "s3cret-pw") -> tuple[str, str]:
    from django.contrib.auth import get_user_model

    get_user_model().objects.create_superuser("owner", "owner@example.com", password)
    return "owner", password


def test_qr_codes_lead_to_the_enrollment_request_and_then_the_device(
        make_agent, server, tmp_path):
    agent = make_agent(extra_config=IMPATIENT)
    name = agent.name
    enroll_url = f"{server.url}/enroll/{name}"
    codes = wait_for(lambda: qr_blocks(agent.log()), 30, what="a QR code in the agent's output")
    assert decode_qr(codes[0], tmp_path) == enroll_url
    assert enroll_url in agent.log()
    assert decode_qr(qr_blocks(agent.path("/etc/issue.d/flightctl-banner.issue").read_text())[0],
                     tmp_path) == enroll_url

    # Without a login the page asks for one; with it, it is the enrollment request's page.
    anonymous = requests.get(enroll_url, verify=str(server.ca), timeout=30)
    assert anonymous.status_code == 200 and "/admin/login/" in anonymous.url
    browser = admin_session(server.url, server.ca, *owner())
    page = browser.get(enroll_url, verify=str(server.ca), timeout=30)
    assert page.status_code == 200 and "/admin/enrollment/enrollmentrequest/" in page.url
    assert name in page.text
    missing = browser.get(f"{server.url}/enroll/nosuchdevice", verify=str(server.ca), timeout=30)
    assert missing.status_code == 404

    # Polls later the same process still waits, and said nothing per poll.
    waiting_lines = len(agent.log().splitlines())
    time.sleep(12)
    assert agent.starts == 1 and agent.process.poll() is None
    assert len(agent.log().splitlines()) - waiting_lines <= 2, agent.log()[-2000:]

    agent.enroll()
    manage_url = f"{server.url}/manage/{name}"
    codes = wait_for(lambda: len(blocks := qr_blocks(agent.log())) >= 2 and blocks, 30,
                     what="the management QR code")
    assert decode_qr(codes[1], tmp_path) == manage_url
    page = browser.get(manage_url, verify=str(server.ca), timeout=30)
    assert page.status_code == 200 and "/admin/devices/device/" in page.url
    assert name in page.text


def test_the_console_banner_can_be_turned_off(make_agent):
    agent = make_agent(env={"FLIGHTCTL_DISABLE_CONSOLE_BANNER": "true"})
    name = agent.name  # from the banner file: the console shows nothing
    banner = agent.path("/etc/issue.d/flightctl-banner.issue").read_text()
    assert f"/enroll/{name}" in banner and qr_blocks(banner)
    agent.enroll()
    log = agent.log()
    assert not qr_blocks(log)
    assert "/enroll/" not in log and "/manage/" not in log
