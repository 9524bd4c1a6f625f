"""A device without podman (a plain RHEL or Debian box): everything but applications applies.

The agent runs with a PATH that has every command of this machine except podman. Files,
systemd units, hooks and an OS image apply and the device is up to date; a spec that declares
an application reports that application's error instead of rolling the whole spec back.
"""

from __future__ import annotations

import json

from tests.agent.test_os_updates import bootc_state
from tests.net import wait_for

UNIT = "[Unit]\nDescription=hello\n[Service]\nExecStart=/bin/true\n"
# Runs when the update changed a unit: the way a device owner reloads systemd.
HOOK = """- if:
  - path: /etc/systemd/system/
    op: [created, updated]
  run: /bin/sh -c 'systemctl daemon-reload && echo reloaded >> {marker}'
"""


def updating(status: dict) -> dict:
    return next(c for c in status["conditions"] if c["type"] == "Updating")


def test_files_units_and_hooks_apply_and_a_declared_app_reports_podman_missing(
        make_agent, server, render):
    agent = make_agent(without=("podman",))
    assert "podman" not in agent.env["PATH"].split(":")[0]
    name = agent.enroll()
    marker = agent.root / "reloads.log"

    files = [{"path": "/etc/motd", "content": "a plain box"},
             {"path": "/etc/systemd/system/hello.service", "content": UNIT},
             {"path": "/etc/flightctl/hooks.d/afterupdating/units.yaml",
              "content": HOOK.format(marker=marker)}]
    version = render(name, {"config": [{"name": "plain", "inline": files}],
                            "systemd": {"matchPatterns": ["hello.service"]}})
    status = agent.wait_rendered_version(version)
    assert agent.path("/etc/motd").read_text() == "a plain box"
    assert agent.path("/etc/systemd/system/hello.service").read_text() == UNIT
    assert marker.read_text().split() == ["reloaded"]
    assert (updating(status)["reason"], updating(status)["message"]) == (
        "Updated", f"Updated to desired renderedVersion: {version}")
    assert status["applicationsSummary"]["status"] == "NoApplications"
    wait_for(lambda: agent.status().get("updated", {}).get("status") == "UpToDate", 30,
             what="UpToDate")
    assert "required resource not found" not in agent.log()

    # An application needs podman: it reports why it is not running; the files still apply.
    files[0]["content"] = "a plain box with an app"
    version = render(name, {"config": [{"name": "plain", "inline": files}],
                            "applications": [{"name": "web", "appType": "container",
                                              "image": "quay.io/example/web:1"}]})
    status = agent.wait_rendered_version(version)
    assert agent.path("/etc/motd").read_text() == "a plain box with an app"
    assert updating(status)["reason"] == "Updated"
    assert [(a["name"], a["status"], a["ready"]) for a in status["applications"]] == [
        ("web", "Error", "0/0")]
    summary = status["applicationsSummary"]
    assert summary["status"] == "Error"
    assert summary["info"] == "web is in status Error (podman is not installed on this device)"
    wait_for(lambda: agent.status().get("updated", {}).get("status") == "UpToDate", 30,
             what="UpToDate with an application in error")
    # The server records it as it records any application error (and alerts on it).
    events = server.get("/api/v1/events?fieldSelector=involvedObject.name%3D" + name).json()
    errors = [e for e in events["items"] if e["reason"] == "DeviceApplicationError"]
    assert errors and "podman is not installed" in errors[0]["message"]
    assert not agent.path("/var/lib/flightctl/failed-versions.json").exists() or version not in \
        json.loads(agent.path("/var/lib/flightctl/failed-versions.json").read_text())["versions"]


def test_an_os_image_update_without_podman_is_pulled_by_bootc_from_its_registry(
        make_agent, registry, render):
    base = registry.build("plain-os", "base")
    v2 = registry.build("plain-os", "v2")
    agent = make_agent(env=registry.env(), bootc=True, without=("podman",))
    state = agent.path("/var/lib/bootc-standin/state.json")
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"booted": {"image": base, "digest": ""}, "staged": None,
                                 "rollback": None}))
    name = agent.enroll()
    version = render(name, {"os": {"image": v2},
                            "config": [{"name": "c", "inline": [{"path": "/etc/motd",
                                                                 "content": "v2"}]}]})
    status = agent.wait_rendered_version(version, timeout=180)
    assert status["os"]["image"] == v2
    assert bootc_state(agent)["booted"] == {
        "image": v2, "digest": bootc_state(agent)["booted"]["digest"], "transport": "registry"}
    assert bootc_state(agent)["booted"]["digest"].startswith("sha256:")
    assert agent.path("/etc/motd").read_text() == "v2"
    assert updating(status)["message"] == f"Updated to desired renderedVersion: {version}"
