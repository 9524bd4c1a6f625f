"""OS image updates through the bootc stand-in: reboot, commit, and rollback after a bad boot."""

from __future__ import annotations

import json

from tests.net import wait_for


def bootc_state(agent) -> dict:
    return json.loads(agent.path("/var/lib/bootc-standin/state.json").read_text())


def test_an_os_image_update_reboots_commits_and_a_failing_image_rolls_back(
        make_agent, registry, render):
    base = registry.build("os", "base")
    v2 = registry.build("os", "v2")
    broken = registry.build("os", "broken", labels={"io.flightctl.test.health": "fail"})
    agent = make_agent(env=registry.env(), bootc=True)
    state = agent.path("/var/lib/bootc-standin/state.json")
    state.parent.mkdir(parents=True)
    state.write_text(json.dumps({"booted": {"image": base, "digest": ""}, "staged": None,
                                 "rollback": None}))
    name = agent.enroll()
    wait_for(lambda: agent.status().get("os", {}).get("image") == base, 30, what="base image")
    assert agent.status()["capabilities"]["osMode"] == "image"
    starts = agent.starts

    hook = "- run: /bin/sh -c 'echo rebooting >> {0}'\n"
    version = render(name, {"os": {"image": v2}, "config": [{"name": "rendered", "inline": [
        {"path": "/etc/flightctl/hooks.d/beforerebooting/log.yaml",
         "content": hook.format(agent.root / "hooks.log")},
        {"path": "/etc/flightctl/hooks.d/afterrebooting/log.yaml",
         "content": hook.replace("rebooting", "rebooted").format(agent.root / "hooks.log")}]}]})
    status = agent.wait_rendered_version(version, timeout=180)
    assert status["os"]["image"] == v2
    assert bootc_state(agent)["booted"]["image"] == v2
    assert bootc_state(agent)["rollback"]["image"] == base
    assert agent.starts > starts, "the agent did not restart for the reboot"
    assert "reason=Rebooting" in agent.log()
    assert (agent.root / "hooks.log").read_text().split() == ["rebooting", "rebooted"]
    updating = agent.condition()
    assert updating["message"] == f"Updated to desired renderedVersion: {version}"
    wait_for(lambda: agent.status().get("updated", {}).get("status") == "UpToDate", 30,
             what="UpToDate")

    # An image that fails its boot health check: back on v2, version failed, OutOfDate.
    failed = render(name, {"os": {"image": broken}})
    condition = wait_for(lambda: (c := agent.condition()).get("reason") == "Error" and c, 180,
                         what="Updating=False/Error after the rollback")
    assert "While Rebooting: os failed for" in condition["message"]
    assert bootc_state(agent)["booted"]["image"] == v2
    status = agent.status()
    assert status["os"]["image"] == v2
    assert status["config"]["renderedVersion"] == str(version)
    failed_versions = json.loads(agent.path("/var/lib/flightctl/failed-versions.json")
                                 .read_text())["versions"]
    assert failed in failed_versions
    wait_for(lambda: agent.status().get("updated", {}).get("status") == "OutOfDate", 30,
             what="OutOfDate")


def test_a_package_mode_device_rejects_an_os_image(make_agent, registry, render):
    agent = make_agent(env=registry.env())
    name = agent.enroll()
    assert agent.status()["capabilities"]["osMode"] == "package"
    failed = render(name, {"os": {"image": f"{registry.host}/os:v2"}})
    condition = wait_for(lambda: (c := agent.condition()).get("reason") == "Error" and c, 60,
                         what="Updating=False/Error")
    assert "While Preparing: os failed for" in condition["message"]
    assert agent.status()["config"]["renderedVersion"] != str(failed)
