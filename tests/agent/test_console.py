"""Remote console end to end: `flightctl console` → user API WebSocket → the device's agent
(its gRPC stream back to the agent API) → a shell on the device, and back.

Real processes throughout: ``flightctl-server serve`` (uvicorn user API, agent API workers,
PostgreSQL), ``flightctl-agent`` processes, and the ``flightctl`` CLI in a subprocess or in a
real pseudo-terminal (pexpect).
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import yaml

from tests.net import wait_for

FLIGHTCTL = Path(sys.executable).parent / "flightctl"
CONSOLE_USER = "flightctl-console"


@pytest.fixture(scope="module")
def console_user() -> str:
    """The unprivileged user sessions run as: created when the tests run as root (as on a
    device), else the current user (an agent that is not root runs sessions as itself)."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    try:
        pwd.getpwnam(CONSOLE_USER)
    except KeyError:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", CONSOLE_USER],
                       check=True)
    return CONSOLE_USER


@pytest.fixture
def device(make_agent, console_user):
    agent = make_agent("console", extra_config={"console-user": console_user})
    agent.enroll()
    return agent


def _client_config(server, directory: Path, token: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "client.yaml").write_text(yaml.safe_dump({
        "service": {"server": server.url, "certificate-authority-data":
                    base64.b64encode(server.ca.read_bytes()).decode()},
        "authentication": {"token": token}}))
    return directory


@pytest.fixture
def cli_env(server, tmp_path):
    config = _client_config(server, tmp_path / "cli", server.token)
    return {**os.environ, "FLIGHTCTL_CONFIG_DIR": str(config), "TERM": "xterm"}


def console(env, *args, timeout=90) -> subprocess.CompletedProcess:
    return subprocess.run([FLIGHTCTL, "console", *args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL, timeout=timeout)


def _events(server, name: str) -> list[dict]:
    r = server.get(f"/api/v1/events?fieldSelector=involvedObject.name%3D{name}")
    return r.json()["items"]


def test_a_command_runs_as_the_console_user_and_its_exit_status_is_the_cli_s(
        server, device, cli_env, console_user):
    result = console(cli_env, f"device/{device.name}", "--", "sh", "-c",
                     "echo hi; id -un; echo oops >&2; exit 3")
    assert result.returncode == 3, result.stderr
    assert result.stdout.splitlines() == ["hi", console_user]
    assert "oops" in result.stderr  # no terminal: stderr is its own channel

    # Audited: opened and closed, each naming the user, on the device.
    def audited():
        reasons = {e["reason"]: e for e in _events(server, device.name)}
        return reasons if {"ConsoleSessionOpened", "ConsoleSessionClosed"} <= set(reasons) \
            else None
    events = wait_for(audited, 30, what="console events")
    assert "user:agent-e2e" in events["ConsoleSessionOpened"]["message"]
    assert "sh -c" in events["ConsoleSessionOpened"]["message"]
    assert "user:agent-e2e" in events["ConsoleSessionClosed"]["message"]
    # The session is gone from the device once it ended.
    annotations = server.device(device.name)["metadata"].get("annotations") or {}
    assert "device-controller/console" not in annotations
    assert console(cli_env, f"device/{device.name}", "--", "true").returncode == 0


def test_an_interactive_session_in_a_terminal_survives_a_resize_and_a_spec_update(
        server, device, cli_env, render):
    child = pexpect.spawn(str(FLIGHTCTL), ["console", f"device/{device.name}"], env=cli_env,
                          dimensions=(24, 80), timeout=60, encoding="utf-8")
    try:
        child.expect(r"\$ ")  # the login shell's prompt: it has taken over the terminal
        child.sendline("echo ready-$((6*7))")
        child.expect("ready-42")
        child.sendline("stty size; tty")
        child.expect(r"24 80\s+/dev/pts/\d+")
        child.setwinsize(40, 120)  # SIGWINCH: the CLI sends the new size on channel 4
        wait_for(lambda: _size(child) == "40 120", 30, what="remote terminal resized")

        version = render(device.name, {"config": [{"inline": [
            {"path": "/etc/console-test", "content": "updated"}]}]})
        device.wait_rendered_version(version)
        assert device.path("/etc/console-test").read_text() == "updated"
        child.sendline("echo after-$((40+2))-update")
        child.expect("after-42-update")

        child.send("\r~.")  # the escape: disconnect
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 130


def _size(child) -> str:
    child.sendline("stty size")
    child.expect(r"\r\n(\d+ \d+)\r\n")
    return child.match.group(1)


def test_two_sessions_at_once_are_independent(server, device, cli_env):
    marker = f"/tmp/fctl-console-{os.urandom(4).hex()}"  # the two sessions share /tmp
    first = subprocess.Popen(
        [FLIGHTCTL, "console", f"device/{device.name}", "--", "sh", "-c",
         f"while [ ! -e {marker} ]; do sleep 0.2; done; echo first-done"],
        env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        stdin=subprocess.DEVNULL)
    try:
        _wait_listed(server, device.name, first, lambda: first.communicate()[1])
        second = console(cli_env, f"device/{device.name}", "--", "sh", "-c",
                         f"echo second-$$; touch {marker}")
        assert second.returncode == 0, second.stderr
        assert second.stdout.startswith("second-")
        out, err = first.communicate(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert out.strip() == "first-done"


def test_a_session_ends_when_the_user_and_the_device_die_at_once(server, device, cli_env,
                                                                 tmp_path):
    """Both clients killed mid-session (no close from either): the server notices, the
    session leaves the device and is recorded closed. (Server processes dying with both ends:
    tests/test_console_sessions.py.)"""
    import signal

    errors = tmp_path / "cli.err"
    with errors.open("w") as stderr:  # the CLI holds its own copy of the descriptor
        user = subprocess.Popen([FLIGHTCTL, "console", f"device/{device.name}", "--", "sleep",
                                 "90"], env=cli_env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        _wait_listed(server, device.name, user, errors.read_text)
        wait_for(lambda: "sleep 90" in _events_text(server, device.name), 30, what="opened")
        device.crash()
        user.send_signal(signal.SIGKILL)
        user.wait(30)
        wait_for(lambda: _listed(server, device.name) == [], 60, what="the session unlisted")
    finally:
        if user.poll() is None:
            user.kill()
    reasons = [e["reason"] for e in _events(server, device.name)]
    assert reasons.count("ConsoleSessionClosed") == 1, reasons


def _events_text(server, name: str) -> str:
    return " ".join(e["message"] for e in _events(server, name))


def _wait_listed(server, name: str, cli: subprocess.Popen, cli_errors) -> None:
    """Wait for the session ``cli`` opens to be listed on the device; a CLI that ends first
    fails with what it printed, a timeout with what the server logged of consoles."""
    try:
        wait_for(lambda: len(_listed(server, name)) == 1 or cli.poll() is not None, 60,
                 what="the session")
    except AssertionError as exc:
        log = (server.data_dir.parent / "server.log").read_text()
        lines = [line for line in log.splitlines() if "console" in line]
        raise AssertionError(f"{exc}; the server's console lines: {lines[-20:]}") from None
    assert cli.poll() is None, f"the CLI ended ({cli.returncode}): {cli_errors()}"


def _listed(server, name: str) -> list:
    annotations = (server.device(name) or {}).get("metadata", {}).get("annotations") or {}
    return json.loads(annotations.get("device-controller/console") or "[]")


def test_the_websocket_and_the_device_stream_are_held_by_different_processes(
        server, device, cli_env):
    result = console(cli_env, f"device/{device.name}", "--", "echo", "across")
    assert result.returncode == 0 and result.stdout == "across\n", result.stderr
    log = (server.data_dir.parent / "server.log").read_text()
    held = {}
    for session, side, pid in re.findall(
            r"console session (\S+) of device \S+: (WebSocket|agent stream) held by process "
            r"(\d+)", log):
        held.setdefault(session, {})[side] = int(pid)
    joined = [sides for sides in held.values() if len(sides) == 2]
    assert joined, log[-3000:]
    sides = joined[-1]
    assert sides["WebSocket"] != sides["agent stream"]
    serve = server.process.pid
    for pid in sides.values():  # both are worker processes of this one `serve`
        assert serve in _ancestors(pid)


def _ancestors(pid: int) -> list[int]:
    found = []
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rsplit(")", 1)[1].split()[1])
        found.append(pid)
    return found


def test_refusals_are_one_line_and_a_status(server, cli_env, tmp_path):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from flightctl.models import ApiToken

    r = server.put("/api/v1/devices/console-frozen", {
        "apiVersion": "v1beta1", "kind": "Device", "metadata": {"name": "console-frozen"},
        "spec": {}})
    assert r.status_code in (200, 201), r.text

    viewer, _ = get_user_model().objects.get_or_create(username="console-viewer")
    viewer.groups.add(Group.objects.get_or_create(name="flightctl-viewer")[0])
    viewer_env = {**cli_env, "FLIGHTCTL_CONFIG_DIR": str(_client_config(
        server, tmp_path / "viewer", ApiToken.issue(viewer)))}
    refused = console(viewer_env, "device/console-frozen", "--", "true")
    assert refused.returncode == 255
    assert refused.stderr.strip() == 'Error: user "console-viewer" may not get devices/console'

    missing = console(cli_env, "device/no-such-device", "--", "true")
    assert missing.returncode == 255
    assert missing.stderr.strip() == 'Error: Device of name "no-such-device" not found'

    # No agent ever connects for this device: the user is told after console_session_timeout.
    timed_out = console(cli_env, "device/console-frozen", "--", "true")
    assert timed_out.returncode == 255
    assert "timed out waiting for protocol for device: console-frozen" in timed_out.stderr
    assert _listed(server, "console-frozen") == []

    r = server.put("/api/v1/devices/console-frozen/decommission", {"target": "Unenroll"})
    assert r.status_code == 200, r.text
    decommissioned = console(cli_env, "device/console-frozen", "--", "true")
    assert decommissioned.returncode == 255
    assert decommissioned.stderr.strip() == "Error: Device is decommissioned"


def test_clients_cannot_list_sessions_themselves(server):
    r = server.put("/api/v1/devices/console-spec", {
        "apiVersion": "v1beta1", "kind": "Device", "metadata": {"name": "console-spec"},
        "spec": {"consoles": [{"sessionID": "x", "sessionMetadata": "{}"}]}})
    assert r.status_code == 400
    assert r.json()["message"] == "consoles are not supported through this api"


def _websocket_status(server, name: str, token: str, headers: dict | None = None,
                      bearer: bool = True) -> int:
    """The HTTP code a WebSocket upgrade to the device's console is answered with."""
    import ssl

    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect

    context = ssl.create_default_context(cafile=str(server.ca))
    url = server.url.replace("https://", "wss://") + f"/ws/v1/devices/{name}/console"
    try:
        connect(f"{url}?metadata=%7B%7D", ssl=context, subprotocols=["v5.channel.k8s.io"],
                additional_headers={**({"Authorization": f"Bearer {token}"} if bearer else {}),
                                    **(headers or {})},
                open_timeout=60).close()
    except InvalidStatus as exc:
        return exc.response.status_code
    return 101


def test_the_websocket_checks_credentials_and_version_like_the_rest_api(server):
    assert _websocket_status(server, "nope", "not-a-token") == 401
    assert _websocket_status(server, "nope", server.token,
                             {"Flightctl-API-Version": "v9"}) == 406
    assert _websocket_status(server, "nope", server.token) == 404


def test_the_web_ui_s_session_cookie_works_from_its_own_pages_only(server):
    """The console UI opens the same route with the browser's Django session."""
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.backends.db import SessionStore

    user = get_user_model().objects.get(username="agent-e2e")
    session = SessionStore()
    session[SESSION_KEY], session[HASH_SESSION_KEY] = str(user.pk), user.get_session_auth_hash()
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session.create()
    cookie = {"Cookie": f"sessionid={session.session_key}"}
    own = {**cookie, "Origin": server.url}
    # Past the gate (the device does not exist) from the UI's own origin, told as a browser
    # can read it: accepted, then closed with 4000 + the status and the message.
    assert _websocket_status(server, "nope", "", own, bearer=False) == 101
    assert _browser_refusal(server, "nope", own) == (4404, 'Device of name "nope" not found')
    # Refused elsewhere, before the upgrade: a hijacking page learns nothing.
    assert _websocket_status(server, "nope", "", {**cookie, "Origin": "https://evil.example"},
                             bearer=False) == 403
    assert _websocket_status(server, "nope", "", {**cookie}, bearer=False) == 403
    assert _websocket_status(server, "nope", "", {}, bearer=False) == 401


def _browser_refusal(server, name: str, headers: dict) -> tuple[int, str]:
    """The close code and reason of a console WebSocket refused after its upgrade."""
    import ssl

    from websockets.exceptions import ConnectionClosed
    from websockets.sync.client import connect

    context = ssl.create_default_context(cafile=str(server.ca))
    url = server.url.replace("https://", "wss://") + f"/ws/v1/devices/{name}/console"
    with connect(f"{url}?metadata=%7B%7D", ssl=context, subprotocols=["v5.channel.k8s.io"],
                 additional_headers=headers, open_timeout=60) as socket:
        try:
            socket.recv(timeout=30)
        except ConnectionClosed as exc:
            return exc.rcvd.code, exc.rcvd.reason
    raise AssertionError("the WebSocket was not closed")


def test_the_escape_works_only_at_the_start_of_a_line():
    from flightctl.cli.client.commands.console import Escape, exit_code

    escape = Escape()
    assert escape.feed(b"~~x") == (b"~x", False)  # ~~ sends one ~
    assert escape.feed(b"a~.") == (b"a~.", False)  # not after a newline: plain text
    assert escape.feed(b"\r~") == (b"\r", False)  # held back until the next key
    assert escape.feed(b".") == (b"", True)
    assert exit_code(b'{"metadata":{},"status":"Success"}') == 0
    assert exit_code(json.dumps({"status": "Failure", "reason": "NonZeroExitCode", "details": {
        "causes": [{"reason": "ExitCode", "message": "42"}]}}).encode()) == 42
