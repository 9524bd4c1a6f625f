"""Crash safety, decommissioning and certificate renewal of a running device."""

from __future__ import annotations

import re
import signal

import requests
import yaml
from flightctl_agent.podman import AGENT_LABEL, instance_label

from tests.agent.harness import podman_containers
from tests.net import free_port, wait_for


def test_an_agent_killed_in_the_middle_of_an_update_converges_after_restart(
        make_agent, registry, render, tmp_path):
    v1, v2 = registry.build("svc", "v1"), registry.build("svc", "v2")
    agent = make_agent(env=registry.env())
    name = agent.enroll()
    old_files = [{"path": f"/etc/svc/old-{i}.conf", "content": f"old {i}"} for i in range(20)]
    version = render(name, {"config": [{"name": "rendered", "inline": old_files}],
                            "applications": [{"name": "svc", "appType": "container",
                                              "image": v1}]})
    agent.wait_rendered_version(version, timeout=120)

    marker = tmp_path / "hook-started"
    # Sleeps the first time only: the agent is killed while it waits, after files and apps
    # were applied but before the update was committed.
    slow = [{"run": f"/bin/sh -c 'test -f {marker} || {{ touch {marker}; sleep 60; }}'",
             "timeout": "90s"}]
    new_files = [{"path": f"/etc/svc/new-{i}.conf", "content": f"new {i}"} for i in range(20)]
    new_files.append({"path": "/etc/flightctl/hooks.d/afterupdating/slow.yaml",
                      "content": yaml.safe_dump(slow)})
    starts = agent.starts
    target = render(name, {"config": [{"name": "rendered", "inline": new_files}],
                           "applications": [{"name": "svc", "appType": "container",
                                             "image": v2}]})
    wait_for(marker.exists, 120, what="the update to reach its after-updating hook")
    assert agent.path("/etc/svc/new-0.conf").exists()  # the device is mid-update
    agent.kill(signal.SIGKILL)

    status = agent.wait_rendered_version(target, timeout=120)
    assert agent.starts > starts
    present = sorted(p.name for p in agent.path("/etc/svc").iterdir())
    assert present == sorted(f"new-{i}.conf" for i in range(20))
    running = [c["Image"] for c in podman_containers(
        f"{AGENT_LABEL}={instance_label(agent.root)}") if c["State"] == "running"]
    assert running == [v2]
    assert status["conditions"][0]["reason"] == "Updated" or agent.condition()["reason"] == \
        "Updated"


def test_decommissioning_wipes_the_identity_and_the_device_enrolls_anew(
        make_agent, server, render):
    agent = make_agent()
    name = agent.enroll()
    version = render(name, {"config": [{"name": "rendered", "inline": [
        {"path": "/etc/motd", "content": "managed"}]}]})
    agent.wait_rendered_version(version)
    r = server.put(f"/api/v1/devices/{name}/decommission", {"target": "Unenroll"})
    assert r.status_code == 200, r.text
    render(name, {"decommissioning": {"target": "Unenroll"}})

    cond = wait_for(lambda: (c := agent.condition("DeviceDecommissioning")).get("reason")
                    == "Completed" and c, 60, what="DeviceDecommissioning=Completed")
    assert cond["status"] == "True"
    # A new identity after the 'reboot': another key, another name, a new enrollment request.
    new_name = wait_for(lambda: [n for n in agent_names(agent) if n != name], 60,
                        what="a new enrollment URL")[-1]
    assert not (agent.path("/var/lib/flightctl/current.json").exists()
                and name in agent.path("/var/lib/flightctl/current.json").read_text())
    wait_for(lambda: server.get(f"/api/v1/enrollmentrequests/{new_name}").status_code == 200,
             60, what="the new enrollment request")
    assert agent.path("/var/lib/flightctl/certs/agent.key").exists()
    assert not agent.path("/var/lib/flightctl/certs/agent.crt").exists()


def agent_names(agent) -> list[str]:
    from tests.agent.harness import ENROLL_URL
    return ENROLL_URL.findall(agent.log())


def test_certificate_renewal_swaps_the_certificate_without_downtime(make_agent, render):
    port = free_port()
    env = {"FLIGHTCTL_TEST_CERT_MANAGER_SYNC_INTERVAL": "3",
           # Always inside the renewal window: every check renews.
           "FLIGHTCTL_TEST_MGMT_CERT_RENEW_BEFORE_SECONDS": str(400 * 86400),
           "FLIGHTCTL_METRICS_ADDRESS": f"127.0.0.1:{port}"}
    agent = make_agent(env=env, extra_config={
        "metrics-enabled": True,
        "system-info": ["hostname", "managementCertSerial", "managementCertNotAfter"]})
    name = agent.enroll()
    first = wait_for(lambda: agent.status()["systemInfo"].get("managementCertSerial"), 30,
                     what="managementCertSerial")
    seen = {first}

    def rotated_twice():
        seen.add(agent.status()["systemInfo"].get("managementCertSerial"))
        return len(seen) >= 3
    wait_for(rotated_twice, 60, what="two certificate renewals")
    assert agent.log().count("Management certificate renewed") >= 2
    assert not agent.maps_library("cryptography")  # the renewal CSRs were signed in a child
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    renewed = re.search(r'^flightctl_device_mgmt_cert_renewal_attempts_total\{result="success"\} '
                        r"(\S+)$", text, re.MULTILINE)
    assert renewed and float(renewed.group(1)) >= 2, text
    # The renewed certificate is the one in use: the device still receives and applies specs.
    version = render(name, {"config": [{"name": "rendered", "inline": [
        {"path": "/etc/renewed", "content": "yes"}]}]})
    agent.wait_rendered_version(version)
    assert agent.path("/etc/renewed").read_text() == "yes"
    assert "fetching the rendered spec failed" not in agent.log()
    assert "status update failed" not in agent.log()
    assert agent.starts == 1
