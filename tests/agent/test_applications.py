"""Container applications pulled from a registry on loopback and run on podman."""

from __future__ import annotations

import re
import subprocess

import yaml
from flightctl_agent.podman import AGENT_LABEL, instance_label

from tests.agent.harness import podman_containers
from tests.net import free_port, wait_for


def app_status(agent, name: str) -> dict:
    for app in agent.status().get("applications") or []:
        if app["name"] == name:
            return app
    return {}


def containers_of(agent) -> list[dict]:
    return podman_containers(f"{AGENT_LABEL}={instance_label(agent.root)}")


def test_a_container_app_runs_updates_and_a_missing_image_changes_nothing(
        make_agent, registry, render):
    web_v1 = registry.build("web", "v1")
    web_v2 = registry.build("web", "v2")
    worker = registry.build("worker", "v1")
    agent = make_agent(env=registry.env())
    name = agent.enroll()
    port = free_port()

    files = [{"path": "/etc/web/site.conf", "content": "v1"},
             {"path": "/etc/web/old.conf", "content": "obsolete soon"}]
    version = render(name, {
        "config": [{"name": "rendered", "inline": files}],
        "applications": [
            {"name": "web", "appType": "container", "image": web_v1, "ports": [f"{port}:8080"],
             "envVars": {"GREETING": "hello"},
             "resources": {"limits": {"cpu": "0.5", "memory": "64m"}},
             "volumes": [{"name": "data", "mount": {"path": "/data"}}]},
            {"name": "worker", "appType": "container", "image": worker}]})
    status = agent.wait_rendered_version(version, timeout=120)
    assert agent.path("/etc/web/site.conf").read_text() == "v1"
    status = wait_for(lambda: (s := agent.status())["applicationsSummary"]["status"] == "Healthy"
                      and s, 60, what="healthy applications")
    web = app_status(agent, "web")
    assert (web["status"], web["ready"], web["appType"]) == ("Running", "1/1", "container")
    assert status["applicationsSummary"]["info"] == "Device's application workloads are healthy."
    wait_for(lambda: agent.status().get("updated", {}).get("status") == "UpToDate", 30,
             what="UpToDate")
    running = {c["Image"]: c for c in containers_of(agent) if c["State"] == "running"}
    assert set(running) == {web_v1, worker}
    inspect = subprocess.run(["podman", "inspect", "--format",
                              "{{.HostConfig.Memory}} {{range .Config.Env}}{{.}} {{end}}",
                              running[web_v1]["Id"]], capture_output=True, text=True).stdout
    assert inspect.startswith(str(64 * 1024 * 1024)) and "GREETING=hello" in inspect
    assert any(p.get("host_port") == port for p in running[web_v1].get("Ports") or [])

    # Update: web moves to v2, worker is removed, an obsolete file goes away.
    version = render(name, {
        "config": [{"name": "rendered", "inline": [{"path": "/etc/web/site.conf",
                                                    "content": "v2"}]}],
        "applications": [{"name": "web", "appType": "container", "image": web_v2,
                          "envVars": {"GREETING": "bonjour"}}]})
    agent.wait_rendered_version(version, timeout=120)
    wait_for(lambda: [c["Image"] for c in containers_of(agent) if c["State"] == "running"]
             == [web_v2], 60, what="only web v2 running")
    assert not agent.path("/etc/web/old.conf").exists()
    assert agent.path("/etc/web/site.conf").read_text() == "v2"
    wait_for(lambda: app_status(agent, "web").get("status") == "Running", 30, what="web running")

    # An image that does not exist fails while Preparing; nothing on the device changes.
    before = {c["Id"] for c in containers_of(agent)}
    missing = f"{registry.host}/does-not-exist:v9"
    failed = render(name, {
        "config": [{"name": "rendered", "inline": [{"path": "/etc/web/site.conf",
                                                    "content": "v3"}]}],
        "applications": [{"name": "web", "appType": "container", "image": missing}]})
    condition = wait_for(lambda: (c := agent.condition()).get("reason") == "Error" and c, 120,
                         what="Updating=False/Error")
    assert condition["status"] == "False"
    assert re.match(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] While Preparing: prefetch failed for "
                    rf"{re.escape(missing)}: (required resource not found|authentication failed|"
                    r"permission denied|service unavailable \(network issue\)|"
                    r"internal error occurred)$", condition["message"]), condition["message"]
    assert len(condition["message"]) <= 250
    assert agent.status()["config"]["renderedVersion"] == str(version)
    assert agent.path("/etc/web/site.conf").read_text() == "v2"
    assert {c["Id"] for c in containers_of(agent)} == before
    wait_for(lambda: agent.status().get("updated", {}).get("status") == "OutOfDate", 30,
             what="OutOfDate")
    assert failed > version


def test_an_inline_compose_app_runs_its_services_and_a_quadlet_app_is_refused_without_systemd(
        make_agent, registry, render):
    image = registry.build("compose-svc", "v1")
    agent = make_agent(env=registry.env())
    name = agent.enroll()
    compose = yaml.safe_dump({"services": {
        "api": {"image": image, "environment": ["ROLE=api"]},
        "cache": {"image": image}}})
    version = render(name, {"applications": [
        {"name": "stack", "appType": "compose", "envVars": {"SIMPLE": "SIMPLE"},
         "inline": [{"path": "podman-compose.yaml", "content": compose}]}]})
    agent.wait_rendered_version(version, timeout=120)
    manifest = agent.path("/etc/compose/manifests/stack")
    assert (manifest / "podman-compose.yaml").exists()
    assert (manifest / ".env").read_text() == "SIMPLE=SIMPLE\n"
    stack = wait_for(lambda: (a := app_status(agent, "stack")).get("status") == "Running" and a,
                     60, what="compose app running")
    assert (stack["ready"], stack["appType"]) == ("2/2", "compose")

    # Removing the app stops its containers and deletes its directory.
    version = render(name, {"applications": []})
    agent.wait_rendered_version(version, timeout=60)
    assert not manifest.exists()
    wait_for(lambda: not containers_of(agent), 30, what="compose containers removed")

    quadlet = {"name": "q", "appType": "quadlet", "inline": [
        {"path": "app.container", "content": f"[Container]\nImage={image}\n"}]}
    render(name, {"applications": [quadlet]})
    condition = wait_for(lambda: (c := agent.condition()).get("reason") == "Error" and c, 60,
                         what="quadlet refused")
    assert "quadlet applications need systemd" in agent.log()
    assert "applications failed for q" in condition["message"]
    assert not agent.path("/etc/containers/systemd/q").exists()
