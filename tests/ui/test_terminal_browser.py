"""The device console's terminal in real Chromium: an operator logs in, opens a device's
console, types into xterm.js and reads the device's shell; the browser's window resizes the
remote terminal; a viewer and a decommissioned device are refused on the page.

Real parts throughout, those of the console's end-to-end tests (tests/agent/): one
``flightctl-server serve`` on the test database, a real ``flightctl-agent`` process per test,
its login shell in a real PTY; the browser authenticates the WebSocket with its own session
cookie (no token anywhere in the page).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from tests.agent import conftest as agent_fixtures
from tests.agent.test_console import console_user  # noqa: F401 - a fixture
from tests.ui.harness import Browser, chromium, wait

# The agent tests' real server and agents (tests/agent/conftest.py), for this module too.
agent_tmp = agent_fixtures.agent_tmp
tpm_manufacturer = agent_fixtures.tpm_manufacturer
session_server = agent_fixtures.session_server
server = agent_fixtures.server
make_agent = agent_fixtures.make_agent

VENDOR = Path(__file__).resolve().parents[2] / "ui" / "static" / "ui" / "vendor" / "xterm"
OPERATOR, VIEWER = ("console-ops", "console-ops-password-1"), ("console-watch", "watch-pw-1")


class _Site:
    """What tests.ui.harness.Browser reads of a server: its URLs."""

    def __init__(self, base: str):
        self.base = base

    def url(self, path: str) -> str:
        return self.base + path


@pytest.fixture(scope="module")
def browser(session_server):
    driver = chromium()
    try:
        yield Browser(driver, _Site(session_server.url))
    finally:
        driver.quit()


def _user(username: str, password: str, role: str) -> None:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(username, password=password)
    user.groups.add(Group.objects.get_or_create(name=f"flightctl-{role}")[0])


def _screen(browser) -> str:
    """What the terminal shows, row by row (xterm.js's DOM renderer)."""
    rows = browser.css(".xterm-rows")
    return rows[0].text.replace("\xa0", " ") if rows else ""


def _status(browser) -> str:
    return browser.text("#console-status")


def _until_status(browser, expected: str, timeout: float = 30) -> None:
    seen = []
    try:
        wait(repr(expected), lambda: seen.append(_status(browser)) or seen[-1] == expected,
             timeout, 0.3)
    except AssertionError:
        raise AssertionError(f"the page says {seen[-1:]!r}, not {expected!r}; the terminal "
                             f"shows {_screen(browser)[-500:]!r}") from None


def _type(browser, text: str) -> None:
    from selenium.webdriver.common.keys import Keys

    browser.one(".xterm-helper-textarea").send_keys(text + Keys.ENTER)


def _remote_size(browser, marker: str) -> str:
    """``rows cols`` as the device's ``stty size`` reports them."""
    _type(browser, f"echo {marker}-$(stty size | tr ' ' x)")
    found = wait(f"{marker} in the terminal", lambda: re.search(
        rf"{marker}-(\d+)x(\d+)", _screen(browser)), 30, 0.3)
    return f"{found.group(1)} {found.group(2)}"


def test_an_operator_runs_a_command_in_the_device_s_terminal_and_resizes_it(
        server, make_agent, console_user, browser):  # noqa: F811 - fixtures
    device = make_agent("web-console", extra_config={"console-user": console_user})
    device.enroll()
    _user(*OPERATOR, "operator")
    browser.driver.set_window_size(1400, 1000)
    browser.login(*OPERATOR)
    browser.open(f"/admin/devices/device/{device.name}/")
    browser.click("#open-console")
    wait("the console page", lambda: "/console/" in browser.driver.current_url, 20, 0.2)
    _until_status(browser, f"Connected to {device.name}", 60)
    wait("the shell's prompt", lambda: "$" in _screen(browser), 30, 0.3)

    _type(browser, "echo hi-$((1+2))")
    wait("hi-3", lambda: "hi-3" in _screen(browser), 30, 0.3)
    browser.screenshot("device-console")

    # The remote terminal has the size the page shows, and follows the window.
    terminal = browser.one("#terminal")
    before = terminal.get_attribute("data-size")
    assert _remote_size(browser, "first") == before
    browser.driver.set_window_size(900, 700)
    after = wait("the terminal refitted", lambda: (
        size := terminal.get_attribute("data-size")) != before and size, 20, 0.2)
    rows, cols = map(int, after.split())
    assert (rows, cols) < tuple(map(int, before.split()))
    wait("the remote size", lambda: _remote_size(browser, "again") == after, 30, 1)

    # The session's end and its exit status are shown; the terminal takes no more input.
    _type(browser, "exit 3")
    _until_status(browser, "Session ended: exit status 3")
    assert browser.one("#console-status").get_attribute("data-state") == "closed"

    # Another session, ended from the page: the server closes it on the device too.
    browser.driver.refresh()
    _until_status(browser, f"Connected to {device.name}", 60)
    browser.click("#console-disconnect")
    _until_status(browser, "Disconnected")
    wait("the sessions unlisted", lambda: "device-controller/console" not in (
        server.device(device.name)["metadata"].get("annotations") or {}), 30, 0.5)

    # Audited as the browser's user, like any console session.
    events = server.get(f"/api/v1/events?fieldSelector=involvedObject.name%3D{device.name}")
    opened = [e["message"] for e in events.json()["items"]
              if e["reason"] == "ConsoleSessionOpened"]
    assert len(opened) == 2 and all(f"user:{OPERATOR[0]}" in m for m in opened), opened


def test_a_viewer_and_a_decommissioned_device_are_refused_on_the_page(server, browser):
    r = server.put("/api/v1/devices/web-console-frozen", {
        "apiVersion": "v1beta1", "kind": "Device",
        "metadata": {"name": "web-console-frozen"}, "spec": {}})
    assert r.status_code in (200, 201), r.text
    _user(*VIEWER, "viewer")
    _user(*OPERATOR, "operator")
    browser.driver.set_window_size(1400, 800)

    browser.login(*VIEWER)
    browser.open("/admin/devices/device/web-console-frozen/")
    browser.one("#why")
    assert not browser.css("#open-console")  # no button for a role that may not
    browser.open("/admin/devices/device/web-console-frozen/console/")
    _until_status(browser, f'Refused (403): user "{VIEWER[0]}" may not get devices/console')
    assert browser.one("#console-status").get_attribute("data-state") == "refused"

    r = server.put("/api/v1/devices/web-console-frozen/decommission", {"target": "Unenroll"})
    assert r.status_code == 200, r.text
    browser.login(*OPERATOR)
    browser.open("/admin/devices/device/web-console-frozen/console/")
    _until_status(browser, "Refused (409): Device is decommissioned")
    assert not browser.one("#console-disconnect").is_enabled()
    browser.screenshot("device-console-refused")


def test_the_vendored_terminal_is_the_one_recorded():
    """ui/static/ui/vendor/xterm/ holds the npm packages' files unchanged (VERSIONS, written
    by scripts/vendor-xterm.sh), and their licences."""
    lines = [line.split() for line in (VENDOR / "VERSIONS").read_text().splitlines()
             if line and not line.startswith("#")]
    packages = {fields[0]: fields[1] for fields in lines if len(fields) == 3}
    assert packages == {"@xterm/xterm": "6.0.0", "@xterm/addon-fit": "0.11.0"}
    sums = {fields[1]: fields[0] for fields in lines if len(fields) == 2}
    assert set(sums) == {"xterm.js", "xterm.css", "addon-fit.js", "LICENSE", "LICENSE.addon-fit"}
    for name, digest in sums.items():
        assert hashlib.sha256((VENDOR / name).read_bytes()).hexdigest() == digest, name
    assert "MIT" in (VENDOR / "LICENSE").read_text() or "Permission is hereby granted" in (
        VENDOR / "LICENSE").read_text()
