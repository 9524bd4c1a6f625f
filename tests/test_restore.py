"""After a database restore, devices reconnect before anything reaches them: the real agent
API (TLS, client certificates) on the test database, the handlers run in-process."""

from __future__ import annotations

import pytest

from tests.test_agent_api import agent_server, enroll, enrollment_request, render  # noqa: F401
from tests.tpm_support import AgentClient, csr_pem, enrollment_client, key_pem, new_key

pytestmark = pytest.mark.django_db(transaction=True)

ORG = "00000000-0000-0000-0000-000000000000"
AWAITING = "device-controller/awaitingReconnect"
PAUSED = "device-controller/conflictPaused"


def device(name: str):
    from devices.models import Device

    return Device.objects.get(name=name)


def summary(name: str) -> str:
    return device(name).status["summary"]["status"]


def reasons(api, name: str) -> list[str]:
    body = api.get("/api/v1/events", {"fieldSelector": f"involvedObject.name={name}",
                                      "order": "asc"}).json()
    return [e["reason"] for e in body["items"]]


def poll(agent, name: str, known: int):
    """One ``/rendered`` call naming the version the device runs."""
    return agent.get(f"/api/v1/devices/{name}/rendered",
                     params={"knownRenderedVersion": known})


def report_version(agent, name: str, document: dict, version: int) -> None:
    """The agent's status report naming the version it runs (it re-pushes it on a pause);
    ``document`` is the Device its ``/rendered`` call returned."""
    document["status"]["config"] = {"renderedVersion": str(version)}
    assert agent.put(f"/api/v1/devices/{name}/status", document).status_code == 200


def queued_renders() -> list[dict]:
    from django_q.models import OrmQ

    return [q.task["args"][1] for q in OrmQ.objects.all()
            if q.task["args"][0].startswith("device-render")]


def test_after_a_restore_devices_reconnect_before_anything_reaches_them(
        agent_server, api, tmp_path):  # noqa: F811 - the imported fixture
    from devices.models import Device
    from devices.restore import awaiting_reconnect, mark_restored
    from devices.tasks import render_device, render_device_batch

    behind, name_behind, _ = enroll(api, agent_server, tmp_path / "a")
    ahead, name_ahead, _ = enroll(api, agent_server, tmp_path / "b")
    for name in (name_behind, name_ahead):
        render(name, {"os": {"image": "os:1"}}, 3)  # what the backup knows

    assert mark_restored() == 2
    assert awaiting_reconnect() == 2
    assert summary(name_behind) == "AwaitingReconnect"
    events = api.get("/api/v1/events", {"fieldSelector": "involvedObject.kind=System"}).json()
    assert [e["reason"] for e in events["items"]] == ["SystemRestored"]

    # Nothing is rendered for a flagged device, whatever changes meanwhile.
    Device.objects.filter(name=name_ahead).update(spec={"os": {"image": "os:2"}})
    render_device({"org_id": ORG, "name": name_ahead})
    assert device(name_ahead).rendered_version == 3

    # A device that knows no more than the database is back at once, and rendered again.
    # 200 at once: without the reconnection the call would wait out its 3 s and answer 204.
    response = poll(behind, name_behind, 3)
    assert response.status_code == 200
    annotations = response.json()["metadata"]["annotations"]
    assert AWAITING not in annotations and PAUSED not in annotations
    assert summary(name_behind) not in ("AwaitingReconnect", "ConflictPaused")
    assert {"org_id": ORG, "name": name_behind, "kind": "Device"} in queued_renders()

    # A device that runs a version the database never made is paused, and told so.
    response = poll(ahead, name_ahead, 5)
    assert response.status_code == 200
    assert response.json()["metadata"]["annotations"][PAUSED] == "true"
    assert summary(name_ahead) == "ConflictPaused"
    assert "DeviceConflictPaused" in reasons(api, name_ahead)
    assert awaiting_reconnect() == 0
    report_version(ahead, name_ahead, response.json(), 5)
    render_device({"org_id": ORG, "name": name_ahead})
    assert device(name_ahead).rendered_version == 3  # still held back
    later = poll(ahead, name_ahead, 5)  # an ordinary call now: still paused
    assert later.json()["metadata"]["annotations"][PAUSED] == "true"

    # Resuming renders it above anything it has seen.
    resumed = api.post("/api/v1/deviceactions/resume",
                       {"fieldSelector": f"metadata.name={name_ahead}"}, format="json")
    assert resumed.json() == {"resumedDevices": 1}
    batch = [task for task in queued_renders() if "ids" in task]
    assert len(batch) == 1
    render_device_batch(batch[0])
    assert device(name_ahead).rendered_version == 6
    response = poll(ahead, name_ahead, 5)
    assert response.json()["spec"] == {"os": {"image": "os:2"}}
    assert PAUSED not in response.json()["metadata"]["annotations"]
    assert "DeviceConflictResolved" in reasons(api, name_ahead)


def test_a_device_re_enrolling_after_a_restore_is_paused_if_it_knows_more(
        agent_server, api, tmp_path):  # noqa: F811 - the imported fixture
    enrollment = enrollment_client(api, agent_server, tmp_path / "enrollment")
    key = new_key()
    from flightctl_agent.tpm import device_name

    name = device_name(key.public_key())
    created = enrollment.post("/api/v1/enrollmentrequests", enrollment_request(
        name, csr_pem(key, name), knownRenderedVersion="4"))
    assert created.status_code == 201, created.text
    assert api.put(f"/api/v1/enrollmentrequests/{name}/approval", {"approved": True},
                   format="json").status_code == 200
    assert summary(name) == "AwaitingReconnect"
    certificate = enrollment.get(f"/api/v1/enrollmentrequests/{name}").json()["status"][
        "certificate"]
    agent = AgentClient(agent_server, certificate, key_pem(key), tmp_path / name)
    response = poll(agent, name, 4)
    assert response.status_code == 200
    assert response.json()["metadata"]["annotations"][PAUSED] == "true"
    assert summary(name) == "ConflictPaused"


def test_post_restore_command_flags_the_devices(tmp_path):
    """``flightctl-server post-restore`` against a database: the operator's step after
    restoring a backup."""
    import subprocess

    from devices.models import Device
    from tests.test_server_command import BIN, server_env
    from tests.workers import database_url

    Device.objects.create(name="restored", labels={})
    result = subprocess.run([BIN / "flightctl-server", "post-restore"],
                            env=server_env(tmp_path, FLIGHTCTL_DATABASE_URL=database_url()),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "1 device(s)" in result.stdout
    assert device("restored").annotations[AWAITING] == "true"
