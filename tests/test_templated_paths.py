"""What a fleet template renders for a device is held to the rules a literal spec is: a
placeholder cannot build a path the server would refuse if it were written out
(``{{ "." }}``, ``{{ "/" }}``, ``..``), and such a device gets the invalid-rendering handling
(``SpecValid=False``, ``lastRolloutError``, no new spec) while the other members roll out."""

from __future__ import annotations

import base64

import pytest

from tests.test_rollouts import _validate, make_devices

pytestmark = pytest.mark.django_db(transaction=True)

CONTENT = base64.b64encode(b"owned\n").decode()


def fleet(path: str) -> dict:
    return {"metadata": {"name": "f1"}, "spec": {
        "selector": {"matchLabels": {"fleet": "f1"}},
        "template": {"spec": {"config": [{"name": "files", "inline": [
            {"path": path, "content": CONTENT, "contentEncoding": "base64"}]}]}}}}


@pytest.mark.parametrize("template,rendered", [
    ('/etc/flightctl/{{ "." }}/config.yaml', "/etc/flightctl/./config.yaml"),
    ('/var/lib/{{ "/" }}flightctl/certs/agent.key', "/var/lib//flightctl/certs/agent.key"),
    ('/etc/{{ ".." }}/var/lib/flightctl/certs/agent.key', "/etc/../var/lib/flightctl/..."),
    ('/etc/flightctl/{{ .metadata.labels.file }}', "/etc/flightctl/config.yaml"),
    ('{{ "/var/lib/flightctl/certs" }}/agent.key', "/var/lib/flightctl/certs/agent.key"),
])
def test_a_path_built_by_placeholders_is_validated_like_a_literal_one(api, template, rendered):
    # Written literally, each of these is refused at once.
    literal = api.post("/api/v1/fleets", fleet(rendered), format="json")
    assert literal.status_code == 400, literal.json()
    make_devices(api, 1, lambda i: {"fleet": "f1", "file": "config.yaml"})
    created = api.post("/api/v1/fleets", fleet(template), format="json")
    assert created.status_code == 201, created.json()
    _validate()
    bad = api.get("/api/v1/devices/dev-000").json()
    error = bad["metadata"]["annotations"]["fleet-controller/lastRolloutError"]
    assert "rendered spec is invalid" in error and "spec.config[0].inline[0].path" in error
    spec_valid = next(c for c in bad["status"]["conditions"] if c["type"] == "SpecValid")
    assert spec_valid["status"] == "False" and spec_valid["reason"] == "Invalid"
    assert not (bad.get("spec") or {}).get("config")
    rendered_bad = api.get("/api/v1/devices/dev-000/rendered")
    assert "flightctl" not in str(rendered_bad.json().get("spec", {}).get("config", ""))


def test_members_whose_rendered_paths_are_fine_still_roll_out(api):
    make_devices(api, 2, lambda i: {"fleet": "f1", "file": "app.conf" if i else "config.yaml"})
    assert api.post("/api/v1/fleets", fleet("/etc/flightctl/{{ .metadata.labels.file }}"),
                    format="json").status_code == 201
    _validate()
    good = api.get("/api/v1/devices/dev-001").json()
    assert good["spec"]["config"][0]["inline"][0]["path"] == "/etc/flightctl/app.conf"
    assert "fleet-controller/lastRolloutError" not in good["metadata"]["annotations"]
    bad = api.get("/api/v1/devices/dev-000").json()
    assert "writing agent config file is not allowed" in bad["metadata"]["annotations"][
        "fleet-controller/lastRolloutError"]
