"""Image pruning on a real podman: images two versions old go, the last two versions stay."""

from __future__ import annotations

import json
import subprocess

from tests.net import wait_for

REFERENCES = "/var/lib/flightctl/image-artifact-references.json"


def image_exists(ref: str) -> bool:
    return subprocess.run(["podman", "image", "exists", ref]).returncode == 0


def test_images_two_versions_old_are_pruned_when_enabled(make_agent, registry, render):
    web = [registry.build("prune-web", f"v{i}") for i in (1, 2, 3)]
    side = registry.build("prune-side", "v1")  # every version runs it
    agent = make_agent(env=registry.env(), extra_config={"image-pruning": {"enabled": True}})
    name = agent.enroll()

    def deploy(image: str) -> None:
        version = render(name, {"applications": [
            {"name": "web", "appType": "container", "image": image},
            {"name": "side", "appType": "container", "image": side}]})
        agent.wait_rendered_version(version, timeout=120)

    deploy(web[0])
    deploy(web[1])
    assert all(image_exists(ref) for ref in (web[0], web[1], side))  # the previous one stays
    deploy(web[2])
    wait_for(lambda: not image_exists(web[0]), 30, what="the v1 image to be pruned")
    assert image_exists(web[1]) and image_exists(web[2]) and image_exists(side)
    references = json.loads(agent.path(REFERENCES).read_text())["references"]
    assert sorted(references) == sorted([web[1], web[2], side])
    assert "Pruned image" in agent.log()


def test_nothing_is_pruned_by_default(make_agent, registry, render):
    web = [registry.build("keep-web", f"v{i}") for i in (1, 2, 3)]
    agent = make_agent(env=registry.env())
    name = agent.enroll()
    for image in web:
        version = render(name, {"applications": [
            {"name": "web", "appType": "container", "image": image}]})
        agent.wait_rendered_version(version, timeout=120)
    assert all(image_exists(ref) for ref in web)
    assert not agent.path(REFERENCES).exists()
