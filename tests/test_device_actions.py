"""What users ask of devices beyond their spec: decommissioning, and stopping, starting and
restarting applications on one device or across a fleet (api.md §2.1)."""

from __future__ import annotations

import json

import pytest

from devices.lifecycle import overlay_applications
from tests.test_fleet_api import fleet

pytestmark = pytest.mark.django_db

DEV = "/api/v1/devices"
FLEETS = "/api/v1/fleets"
APP = {"name": "web", "appType": "container", "image": "quay.io/org/web:1"}


@pytest.fixture
def renders(monkeypatch):
    """Render requests made by actions (the renderer itself is the fleets issue's)."""
    from devices import lifecycle

    calls = []
    monkeypatch.setattr(lifecycle, "request_render", lambda device: calls.append(device.name))
    monkeypatch.setattr(lifecycle, "request_fleet_render",
                        lambda fleet: calls.append(f"Fleet/{fleet.name}"))
    return calls


def create(api, name="dev1", labels=None, spec=None):
    body = {"metadata": {"name": name, "labels": labels or {}}}
    if spec is not None:
        body["spec"] = spec
    r = api.put(f"{DEV}/{name}", body, format="json")
    assert r.status_code == 201, r.json()
    return r.json()


def events(api, reason: str) -> list[dict]:
    return api.get("/api/v1/events", {"fieldSelector": f"reason={reason}"}).json()["items"]


def report(name: str, conditions: list) -> dict:
    from devices.models import Device
    from devices.services import record_agent_status
    from devices.status import initial_status

    status = initial_status()
    status["conditions"] = conditions
    return record_agent_status(Device.objects.get(name=name), status).status


# -- decommissioning ------------------------------------------------------------------------


def test_decommissioning_detaches_the_device_and_can_be_requested_once(api, renders):
    from devices.models import Device

    create(api, labels={"fleet": "f1", "site": "berlin"}, spec={"applications": [APP]})
    Device.objects.filter(name="dev1").update(owner="Fleet/f1")
    r = api.put(f"{DEV}/dev1/decommission", {"target": "Unenroll"}, format="json")
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["spec"]["decommissioning"] == {"target": "Unenroll"}
    assert body["spec"]["applications"] == [APP]
    assert body["status"]["lifecycle"]["status"] == "Decommissioning"
    assert "owner" not in body["metadata"] and body["metadata"]["labels"] == {}
    assert body["metadata"]["generation"] == 1
    assert body["metadata"]["resourceVersion"] == "2"
    assert [e["actor"] for e in events(api, "DeviceDecommissioned")] == ["user:admin"]
    assert renders == ["dev1"]
    again = api.put(f"{DEV}/dev1/decommission", {"target": "FactoryReset"}, format="json")
    assert again.status_code == 409
    assert "already has decommissioning requested" in again.json()["message"]
    # ... and the device is frozen for ordinary edits.
    assert api.put(f"{DEV}/dev1", {"metadata": {"name": "dev1"}}, format="json").status_code == 409


@pytest.mark.parametrize("body", [{"target": "Explode"}, {}, ["Unenroll"], {"target": None}])
def test_a_decommission_request_needs_a_known_target(api, body):
    create(api)
    r = api.put(f"{DEV}/dev1/decommission", body, format="json")
    assert r.status_code == 400
    assert r.json()["message"].startswith("failed to decode request body")
    assert api.put(f"{DEV}/nope/decommission", {"target": "Unenroll"},
                   format="json").status_code == 404


def test_the_agent_walks_the_lifecycle_from_decommissioning_to_decommissioned(api, renders):
    create(api)
    api.put(f"{DEV}/dev1/decommission", {"target": "Unenroll"}, format="json")
    started = {"type": "DeviceDecommissioning", "status": "True", "reason": "Started",
               "message": "Device started decommissioning",
               "lastTransitionTime": "2026-01-01T00:00:00Z"}
    status = report("dev1", [started])
    assert status["lifecycle"] == {"status": "Decommissioning",
                                   "info": "Device has acknowledged decommissioning request"}
    status = report("dev1", [{**started, "reason": "Completed"}])
    assert status["lifecycle"]["status"] == "Decommissioned"
    assert [e["actor"] for e in events(api, "DeviceDecommissioned")] == [
        "service:flightctl-agent-api", "user:admin"]


def test_a_failed_decommissioning_is_decommissioned_with_a_warning(api, renders):
    create(api)
    api.put(f"{DEV}/dev1/decommission", {"target": "Unenroll"}, format="json")
    status = report("dev1", [{"type": "DeviceDecommissioning", "status": "True",
                              "reason": "Error", "message": "wipe failed",
                              "lastTransitionTime": "2026-01-01T00:00:00Z"}])
    assert status["lifecycle"]["status"] == "Decommissioned"
    assert "wipe failed" in status["lifecycle"]["info"]
    assert [e["type"] for e in events(api, "DeviceDecommissionFailed")] == ["Warning"]


# -- device application actions -------------------------------------------------------------


def lifecycle_annotation(body: dict, key="device-controller/applicationLifecycle") -> dict:
    return json.loads(body["metadata"]["annotations"][key])


def test_stopping_starting_and_restarting_an_application_records_overrides(api, renders):
    create(api, spec={"applications": [APP]})
    url = f"{DEV}/dev1/applications/web/actions"
    r = api.post(f"{url}/stop")
    assert r.status_code == 200, r.json()
    assert lifecycle_annotation(r.json())["web"]["desiredState"] == "stopped"
    assert "applications" in r.json()["spec"]
    api.post(f"{url}/start")
    api.post(f"{url}/restart")
    body = api.post(f"{url}/restart").json()
    entry = lifecycle_annotation(body)["web"]
    assert (entry["desiredState"], entry["restartGeneration"]) == ("running", 2)
    assert body["metadata"]["generation"] == 1  # overrides are not spec changes
    changed = events(api, "ApplicationLifecycleChanged")
    assert [e["details"] for e in changed][-1] == {
        "detailType": "ApplicationLifecycleChanged", "appName": "web", "action": "stop"}
    assert [e["details"]["action"] for e in changed] == ["restart", "restart", "start", "stop"]
    assert renders == ["dev1"] * 4


def test_application_actions_refuse_unknown_apps_devices_and_decommissioned_devices(
        api, renders):
    from devices.models import Device

    create(api, spec={"applications": [APP]})
    r = api.post(f"{DEV}/dev1/applications/nope/actions/stop")
    assert r.status_code == 404
    assert r.json()["message"] == 'Application of name "nope" not found'
    assert api.post(f"{DEV}/ghost/applications/web/actions/stop").status_code == 404
    assert api.post(f"{DEV}/dev1/applications/web/actions/explode").status_code == 404
    Device.objects.filter(name="dev1").update(
        annotations={"device-controller/conflictPaused": "true"})
    assert api.post(f"{DEV}/dev1/applications/web/actions/stop").status_code == 400
    Device.objects.filter(name="dev1").update(annotations={})
    api.put(f"{DEV}/dev1/decommission", {"target": "Unenroll"}, format="json")
    assert api.post(f"{DEV}/dev1/applications/web/actions/start").status_code == 400
    assert renders == ["dev1"]  # only the decommissioning rendered


def test_a_fleet_members_application_is_found_in_its_rendered_spec(api, renders):
    from devices.models import Device

    create(api)
    Device.objects.filter(name="dev1").update(owner="Fleet/f1",
                                              rendered_spec={"applications": [APP]})
    assert api.post(f"{DEV}/dev1/applications/web/actions/stop").status_code == 200


# -- fleet application actions ----------------------------------------------------------------


def test_stopping_an_application_fleet_wide_sets_the_fleet_default(api, renders):
    r = api.post(FLEETS, fleet(template_spec={"applications": [APP]}), format="json")
    assert r.status_code == 201, r.json()
    r = api.post(f"{FLEETS}/f1/applications/web/actions/stop")
    assert r.status_code == 200, r.json()
    assert r.json()["kind"] == "Fleet"
    entry = lifecycle_annotation(r.json(), "fleet-controller/applicationLifecycle")["web"]
    assert entry["desiredState"] == "stopped"
    assert renders == ["Fleet/f1"]
    event = events(api, "ApplicationLifecycleChanged")[0]
    assert event["involvedObject"] == {"kind": "Fleet", "name": "f1"}
    assert api.post(f"{FLEETS}/f1/applications/nope/actions/stop").status_code == 404
    assert api.post(f"{FLEETS}/ghost/applications/web/actions/stop").status_code == 404
    assert api.post(f"{FLEETS}/f1/applications/web/actions/restart").status_code == 404


# -- the overlay the renderer applies -----------------------------------------------------------


def annotations(key: str, **entries) -> dict:
    return {key: json.dumps(entries)}


DEVICE_KEY = "device-controller/applicationLifecycle"
FLEET_KEY = "fleet-controller/applicationLifecycle"
EARLY, LATE = "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"


@pytest.mark.parametrize("device,fleet_level,expected", [
    ({}, {}, {}),
    (annotations(DEVICE_KEY, web={"desiredState": "stopped", "updatedAt": EARLY}), {},
     {"desiredState": "stopped"}),
    ({}, annotations(FLEET_KEY, web={"desiredState": "stopped", "updatedAt": EARLY}),
     {"desiredState": "stopped"}),
    # The action issued last wins.
    (annotations(DEVICE_KEY, web={"desiredState": "running", "updatedAt": LATE}),
     annotations(FLEET_KEY, web={"desiredState": "stopped", "updatedAt": EARLY}),
     {"desiredState": "running"}),
    (annotations(DEVICE_KEY, web={"desiredState": "running", "updatedAt": EARLY}),
     annotations(FLEET_KEY, web={"desiredState": "stopped", "updatedAt": LATE}),
     {"desiredState": "stopped"}),
    (annotations(DEVICE_KEY, web={"restartGeneration": 3}),
     annotations(FLEET_KEY, web={"desiredState": "stopped", "updatedAt": LATE}),
     {"desiredState": "stopped", "restartGeneration": 3}),
    ({DEVICE_KEY: "not json"}, {}, {}),
])
def test_lifecycle_overrides_are_overlaid_on_rendered_applications(device, fleet_level,
                                                                   expected):
    other = {"name": "db", "appType": "container", "image": "quay.io/org/db:1"}
    result = overlay_applications([dict(APP), other], device, fleet_level)
    assert result[0] == {**APP, **expected}
    assert result[1] is other


def test_the_openapi_document_lists_the_new_operations(anon):
    doc = anon.get("/api/v1/openapi.json").json()
    assert doc["paths"]["/api/v1/devices/{name}/decommission"]["put"]["operationId"] == (
        "decommissionDevice")
    assert doc["paths"]["/api/v1/fleets/{name}/applications/{appname}/actions/stop"]["post"][
        "operationId"] == "stopFleetApplication"
    assert "/api/v1/devices/{name}/applications/{appname}/actions/restart" in doc["paths"]


def test_an_application_action_reaches_the_rendered_spec_through_the_render_task(api):
    """End to end without stand-ins: the action enqueues a render, the render bakes the
    desired state into what the agent receives."""
    from devices.models import Device
    from devices.tasks import render_device

    spec = {"applications": [{"name": "web", "appType": "container",
                              "image": "quay.io/org/web:1"}]}
    create(api, spec=spec)
    r = api.post("/api/v1/devices/dev1/applications/web/actions/stop")
    assert r.status_code == 200, r.json()
    from django_q.models import OrmQ

    assert OrmQ.objects.count() >= 1  # the render was queued with the change
    render_device({"org_id": "00000000-0000-0000-0000-000000000000", "name": "dev1"})
    rendered = Device.objects.get(name="dev1").rendered_spec
    assert rendered["applications"][0]["desiredState"] == "stopped"
