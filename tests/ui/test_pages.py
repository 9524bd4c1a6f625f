"""The console's pages against a real PostgreSQL (Django's test client): each page answers, and
costs the same number of queries with 10 devices as with 1,000."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from bench.ui_data import populate
from ui import counts

PAGES = {
    "overview": "/admin/",
    "device list": "/admin/devices/device/",
    "device list, label selector": "/admin/devices/device/?labelSelector=site%3Ds3",
    "device list, field selector": "/admin/devices/device/?fieldSelector="
                                   "status.summary.status%3DError",
    "device page": "/admin/devices/device/dev-000007/",
    "device console": "/admin/devices/device/dev-000007/console/",
    "enrollment": "/admin/enrollment/enrollmentrequest/",
    "enrollment request": "/admin/enrollment/enrollmentrequest/pending-0001/",
    "fleet list": "/admin/fleets/fleet/",
    "fleet page": "/admin/fleets/fleet/edge/",
    "fleet page, diff": "/admin/fleets/fleet/edge/?from=v1&to=v3",
    "fleet editor": "/admin/fleets/fleet/edge/edit/",
    "repositories": "/admin/repos/repository/",
    "repository": "/admin/repos/repository/config/",
    "resource syncs": "/admin/repos/resourcesync/",
    "resource sync": "/admin/repos/resourcesync/fleets/",
    "events": "/admin/flightctl/event/",
}


@pytest.fixture
def console(client, admin_user):
    client.force_login(admin_user)
    return client


def _query_counts(client) -> dict[str, int]:
    result = {}
    for page, url in PAGES.items():
        counts.forget()  # the overview's summary is cached per process; count it every time
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url)
        assert response.status_code == 200, (page, response.status_code)
        result[page] = len(queries)
    return result


def test_every_page_costs_the_same_queries_with_10_and_with_1000_devices(console):
    populate(10)
    with_10 = _query_counts(console)
    populate(990, start=10)
    with_1000 = _query_counts(console)
    assert with_10 == with_1000
    assert max(with_1000.values()) <= 20, with_1000


def test_the_device_list_pages_by_keyset_and_shows_the_selector_error(console):
    populate(120)
    first = console.get("/admin/devices/device/?labelSelector=fleet%3Dedge")
    assert len(first.context["devices"]) == 50 and first.context["next_token"]
    second = console.get("/admin/devices/device/", {"labelSelector": "fleet=edge",
                                                    "continue": first.context["next_token"]})
    assert second.context["devices"][0].name == "dev-000050"
    bad = console.get("/admin/devices/device/?labelSelector=site%3D%3D%3D")
    assert bad.status_code == 200
    assert bad.context["error"].startswith('invalid selector "site==="')
    assert escape(bad.context["error"]) in bad.content.decode()  # shown above the list


def test_bulk_labels_are_written_through_the_api_with_the_operator_as_actor(console, admin_user):
    from devices.models import Device
    from flightctl.models import Event

    populate(3)
    response = console.post("/admin/devices/device/", {
        "action": "labels", "names": ["dev-000000", "dev-000001"], "labels": "rack=r7"})
    assert response.status_code == 302
    labelled = Device.objects.filter(labels__contains={"rack": "r7"})
    assert sorted(labelled.values_list("name", flat=True)) == ["dev-000000", "dev-000001"]
    events = Event.objects.filter(reason="ResourceUpdated", involved_kind="Device")
    assert {e.actor for e in events} == {f"user:{admin_user.username}"}
    assert events.count() == 2
    # A bad label refuses the whole action; nothing is written.
    console.post("/admin/devices/device/", {
        "action": "labels", "names": ["dev-000000", "dev-000002"], "labels": "rack=r8,bad key=x"})
    assert not Device.objects.filter(labels__contains={"rack": "r8"}).exists()


def test_a_fleet_created_from_yaml_is_validated_by_the_api(console):
    bad = console.post("/admin/fleets/fleet/add/", {"document": "kind: Fleet\nmetadata: {}\n"})
    assert bad.status_code == 400
    assert "metadata.name" in bad.context["error"]
    good = console.post("/admin/fleets/fleet/add/", {"document": (
        "apiVersion: flightctl.io/v1beta1\nkind: Fleet\nmetadata: {name: f1}\n"
        "spec:\n  selector: {matchLabels: {a: b}}\n  template: {spec: {}}\n")})
    assert good.status_code == 302 and good.url == "/admin/fleets/fleet/f1/"


def test_a_viewer_reads_every_page_and_may_write_nothing(client, db):
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    populate(10)
    viewer = get_user_model().objects.create_user("viewer")
    viewer.groups.add(Group.objects.get_or_create(name="flightctl-viewer")[0])
    client.force_login(viewer)
    for url in PAGES.values():
        if not url.endswith("/edit/"):
            assert client.get(url).status_code == 200, url
    assert client.get("/admin/fleets/fleet/edge/edit/").status_code == 403
    for url, form in (("/admin/devices/device/", {"action": "resume", "names": ["dev-000000"]}),
                      ("/admin/fleets/fleet/edge/rollout/pause", {}),
                      ("/admin/enrollment/enrollmentrequest/pending-0001/",
                       {"decision": "approve"})):
        assert client.post(url, form).status_code == 403, url
    # No role at all: not even the overview.
    client.force_login(get_user_model().objects.create_user("nobody"))
    assert client.get("/admin/").status_code == 302


def test_decommissioning_from_the_device_page_is_the_apis_decommission(console, admin_user):
    from devices.models import Device
    from flightctl.models import Event

    populate(3)
    response = console.post("/admin/devices/device/dev-000002/decommission")
    assert response.status_code == 302
    device = Device.objects.get(name="dev-000002")
    assert device.spec["decommissioning"] == {"target": "Unenroll"}
    assert device.owner is None and device.labels == {}
    event = Event.objects.get(reason="DeviceDecommissioned", involved_name="dev-000002")
    assert event.actor == f"user:{admin_user.username}"
    again = console.post("/admin/devices/device/dev-000002/decommission", follow=True)
    assert "already has decommissioning requested" in again.content.decode()


def test_denying_several_requests_at_once_records_each_decision(console, admin_user):
    from enrollment.models import EnrollmentRequest

    populate(1)
    names = ["pending-0001", "pending-0002"]
    response = console.post("/admin/enrollment/enrollmentrequest/",
                            {"decision": "deny", "names": names})
    assert response.status_code == 302
    for er in EnrollmentRequest.objects.filter(name__in=names):
        assert er.status["approval"]["approved"] is False
        assert er.status["approval"]["approvedBy"] == admin_user.username
    waiting = console.get("/admin/enrollment/enrollmentrequest/")
    assert not {er.name for er in waiting.context["requests"]} & set(names)


def test_a_browser_gets_a_console_page_for_a_missing_page_and_the_api_keeps_status(console):
    page = console.get("/admin/devices/device/no-such-device/console/",
                       HTTP_ACCEPT="text/html,application/xhtml+xml")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")
    assert b"Not found" in page.content and b"/admin/" in page.content
    api = console.get("/api/v1/devices/x/y/z", HTTP_ACCEPT="text/html")
    assert api.status_code == 404 and api.json()["kind"] == "Status"
    plain = console.get("/nothing-here")
    assert plain.status_code == 404 and plain.json()["kind"] == "Status"
