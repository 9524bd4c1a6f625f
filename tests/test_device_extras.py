"""``GET /labels``, ``GET /devices/{name}/rendered`` and ``POST /deviceactions/resume`` of the
user API (the CLI's ``get device/X --rendered`` and ``resume`` call the last two)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.test_openapi_conformance import assert_valid

pytestmark = pytest.mark.django_db

DEV = "/api/v1/devices"
ORG = "00000000-0000-0000-0000-000000000000"
PAUSED = "device-controller/conflictPaused"


def put_device(api, name: str, labels: dict, spec: dict | None = None) -> None:
    body = {"apiVersion": "flightctl.io/v1beta1", "kind": "Device",
            "metadata": {"name": name, "labels": labels}}
    if spec is not None:
        body["spec"] = spec
    response = api.put(f"{DEV}/{name}", body, format="json")
    assert response.status_code in (200, 201), response.json()


@pytest.fixture
def labelled(api):
    put_device(api, "d1", {"site": "berlin", "tier": "edge"})
    put_device(api, "d2", {"site": "paris", "tier": "edge"})
    put_device(api, "d3", {"site": "berlin", "alias": "kiosk"})
    put_device(api, "d4", {})
    return api


# -- GET /labels ------------------------------------------------------------------------------


def labels(api, **params):
    response = api.get("/api/v1/labels", {"kind": "Device", **params})
    assert response.status_code == 200, response.json()
    return response.json()


def test_labels_are_the_distinct_pairs_of_the_selected_devices(labelled):
    assert labels(labelled) == ["alias=kiosk", "site=berlin", "site=paris", "tier=edge"]
    assert labels(labelled, labelSelector="tier=edge") == ["site=berlin", "site=paris",
                                                           "tier=edge"]
    assert labels(labelled, fieldSelector="metadata.name in (d2,d3)") == [
        "alias=kiosk", "site=berlin", "site=paris", "tier=edge"]
    assert labels(labelled, fieldSelector="metadata.name=d2") == ["site=paris", "tier=edge"]
    assert labels(labelled, fieldSelector="metadata.labels.key=site") == ["site=berlin",
                                                                          "site=paris"]
    assert labels(labelled, fieldSelector="metadata.labels.value!=edge,"
                                          "metadata.labels.key!=alias") == [
        "site=berlin", "site=paris"]
    assert labels(labelled, fieldSelector="metadata.labels.keyOrValue contains i") == [
        "alias=kiosk", "site=berlin", "site=paris", "tier=edge"]
    assert labels(labelled, fieldSelector="metadata.labels.keyOrValue contains ber") == [
        "site=berlin"]
    assert labels(labelled, limit="2") == ["alias=kiosk", "site=berlin"]


@pytest.mark.parametrize(("params", "message"), [
    ({}, "kind: Required value"),
    ({"kind": "Fleet"}, 'kind: Unsupported value: "Fleet": supported values: "Device"'),
    ({"kind": "Device", "limit": "1001"}, "limit cannot exceed 1000"),
    ({"kind": "Device", "fieldSelector": "spec.os.image=x"},
     'unable to resolve selector name "spec.os.image"'),
    ({"kind": "Device", "labelSelector": "bad key!=x"}, "invalid selector"),
])
def test_a_bad_labels_request_is_a_400_status(labelled, params, message):
    response = labelled.get("/api/v1/labels", params)
    assert response.status_code == 400
    assert response.json()["kind"] == "Status"
    assert message in response.json()["message"]


def test_labels_take_one_query_whatever_the_number_of_devices(api):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            labels(api, labelSelector="tier=edge")
        return len(captured)

    from devices.models import Device

    Device.objects.bulk_create([Device(name=f"a{i}", labels={"tier": "edge", "n": str(i)})
                                for i in range(10)])
    few = queries()
    Device.objects.bulk_create([Device(name=f"b{i}", labels={"tier": "edge", "n": str(i)})
                                for i in range(10, 500)])
    assert queries() == few
    assert len(labels(api, labelSelector="tier=edge", limit="1000")) == 501


# -- GET /devices/{name}/rendered --------------------------------------------------------------


def test_rendered_shows_what_the_agent_receives(api):
    from devices.models import Device
    from devices.tasks import render_device

    spec = {"config": [{"name": "motd", "inline": [{"path": "/etc/motd", "content": "hi"}]}]}
    put_device(api, "dev", {}, spec)
    assert api.get(f"{DEV}/dev/rendered").status_code == 409  # not rendered yet
    render_device({"org_id": ORG, "name": "dev"})
    version = Device.objects.get(name="dev").rendered_version
    response = api.get(f"{DEV}/dev/rendered")
    assert response.status_code == 200
    body = response.json()
    # The rendered config is one unnamed inline provider (api.md §3.2), which the core
    # schema's named providers do not describe; the rest is a Device.
    assert_valid({**body, "spec": {k: v for k, v in body["spec"].items() if k != "config"}},
                 "Device")
    assert body["spec"]["config"][0]["inline"][0]["path"] == "/etc/motd"
    assert body["metadata"]["annotations"]["device-controller/renderedVersion"] == str(version)
    assert api.get(f"{DEV}/dev/rendered",
                   {"knownRenderedVersion": str(version)}).status_code == 204
    assert api.get(f"{DEV}/dev/rendered",
                   {"knownRenderedVersion": str(version - 1)}).status_code == 200
    bad = api.get(f"{DEV}/dev/rendered", {"knownRenderedVersion": "x"})
    assert bad.status_code == 400 and "knownRenderedVersion" in bad.json()["message"]
    missing = api.get(f"{DEV}/nope/rendered")
    assert missing.status_code == 404
    assert missing.json()["message"] == 'Device of name "nope" not found'


# -- POST /deviceactions/resume ------------------------------------------------------------------


def pause(*names: str) -> None:
    from devices.health import refresh_devices
    from devices.models import Device

    for device in Device.objects.filter(name__in=names):
        device.annotations = {**(device.annotations or {}), PAUSED: "true", "keep": "me"}
        device.save(update_fields=["annotations"])
    refresh_devices(Device.objects.filter(name__in=names))


def summary(api, name: str) -> str:
    return api.get(f"{DEV}/{name}").json()["status"]["summary"]["status"]


def resume(api, body) -> dict:
    response = api.post("/api/v1/deviceactions/resume", body, format="json")
    assert response.status_code == 200, response.json()
    return response.json()


def test_resume_lifts_the_pause_of_the_selected_paused_devices(labelled):
    pause("d1", "d2", "d3")
    assert summary(labelled, "d1") == "ConflictPaused"
    assert resume(labelled, {"labelSelector": "site=berlin", "fieldSelector":
                             "metadata.name=d1"}) == {"resumedDevices": 1}
    assert summary(labelled, "d1") != "ConflictPaused"
    assert summary(labelled, "d3") == "ConflictPaused"
    annotations = labelled.get(f"{DEV}/d1").json()["metadata"]["annotations"]
    assert PAUSED not in annotations and annotations["keep"] == "me"
    events = labelled.get("/api/v1/events", {"fieldSelector": "involvedObject.name=d1"}).json()
    assert "DeviceConflictResolved" in [e["reason"] for e in events["items"]]
    # Devices that are not paused are not counted; an empty selector picks every device.
    assert resume(labelled, {"labelSelector": ""}) == {"resumedDevices": 2}
    assert resume(labelled, {"labelSelector": ""}) == {"resumedDevices": 0}
    assert_valid({"resumedDevices": 0}, "DeviceResumeResponse")


@pytest.mark.parametrize(("body", "message"), [
    ({}, "labelSelector: Required value: at least one of labelSelector and fieldSelector"),
    ({"labelSelector": 3}, "labelSelector: Invalid value: 3: must be a string"),
    ({"labels": "a=b"}, 'labels: Invalid value: "labels": unknown field'),
    ({"fieldSelector": "nope=1"}, 'unable to resolve selector name "nope"'),
    ([], "must be an object"),
])
def test_a_bad_resume_request_is_a_400_status(api, body, message):
    response = api.post("/api/v1/deviceactions/resume", body, format="json")
    assert response.status_code == 400
    assert message in response.json()["message"]
