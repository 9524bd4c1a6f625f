"""The adoption pass: devices created or relabelled are adopted by their fleet in pages.

A mass enrollment queues one ``device-owner`` task per organization at a time
(tests/test_adoption_queue.py); its pass adopts every flagged device (set-based: the
statement count does not grow with the number of devices), each device gets exactly one first
render, and a task delivered again ends at once.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db

ORG = "00000000-0000-0000-0000-000000000000"
TEMPLATE = {"config": [{"name": "site", "inline": [
    {"path": "/etc/site", "content": "{{ .metadata.labels.site }}"}]}]}


def put_device(api, name: str, labels: dict) -> None:
    response = api.put(f"/api/v1/devices/{name}", {"metadata": {"name": name, "labels": labels}},
                       format="json")
    assert response.status_code in (200, 201), response.json()


@pytest.fixture
def fleet(api):
    from fleets.tasks import validate_fleet

    response = api.post("/api/v1/fleets", {"metadata": {"name": "edge"}, "spec": {
        "selector": {"matchLabels": {"fleet": "edge"}}, "template": {"spec": TEMPLATE}}},
        format="json")
    assert response.status_code == 201, response.json()
    validate_fleet({"org_id": ORG, "name": "edge"})
    return "edge"


def adopt(name: str) -> int:
    """Run one queued ``device-owner`` task; the number of SQL statements it ran."""
    from devices.tasks import match_device

    with CaptureQueriesContext(connection) as queries:
        match_device({"org_id": ORG, "name": name, "kind": "Device"})
    return len(queries)


def site_file(device) -> str:
    return device.rendered_spec["config"][0]["inline"][0]["content"]


def test_one_task_adopts_every_new_device_with_a_statement_count_independent_of_their_number(
        api, fleet):
    from devices.models import Device

    def enroll(start: int, count: int) -> None:
        for i in range(start, start + count):
            labels = {"fleet": "edge", "site": f"s{i}"} if i % 3 else {"site": f"s{i}"}
            put_device(api, f"dev-{i:03d}", labels)

    enroll(0, 6)
    assert Device.objects.filter(owner_pending=True).count() == 6
    small = adopt("dev-000")
    enroll(6, 60)
    large = adopt("dev-006")
    assert large == small  # 60 devices cost what 6 did: no statement per device

    assert not Device.objects.filter(owner_pending=True).exists()
    devices = {d.name: d for d in Device.objects.all()}
    for i in range(66):
        device = devices[f"dev-{i:03d}"]
        assert device.rendered_version == 1  # exactly one first render, none wasted
        if i % 3:
            assert device.owner == "Fleet/edge"
            assert site_file(device) == f"s{i}"
        else:
            assert device.owner is None
            assert device.rendered_spec == {}

    # A task delivered again (or a pass right behind another) finds nothing left: one
    # indexed read.
    assert adopt("dev-065") <= 3


def test_a_relabelled_device_moves_or_gets_its_template_again(api, fleet):
    from devices.models import Device

    put_device(api, "mover", {"fleet": "edge", "site": "a"})
    put_device(api, "stayer", {"fleet": "edge", "site": "a"})
    adopt("mover")
    put_device(api, "mover", {"site": "a"})            # leaves the fleet
    put_device(api, "stayer", {"fleet": "edge", "site": "b"})  # its template input changed
    assert Device.objects.filter(owner_pending=True).count() == 2
    adopt("mover")

    mover, stayer = Device.objects.get(name="mover"), Device.objects.get(name="stayer")
    assert mover.owner is None
    assert stayer.owner == "Fleet/edge"
    assert stayer.rendered_version == 2 and site_file(stayer) == "b"
    assert not Device.objects.filter(owner_pending=True).exists()


def test_a_spec_written_to_an_unowned_device_is_still_rendered_by_its_own_task(api):
    from devices.models import Device
    from devices.tasks import render_device

    put_device(api, "solo", {"site": "x"})
    adopt("solo")
    assert Device.objects.get(name="solo").rendered_version == 1
    response = api.put("/api/v1/devices/solo", {"metadata": {"name": "solo", "labels": {
        "site": "x"}}, "spec": {"os": {"image": "quay.io/x/os:2"}}}, format="json")
    assert response.status_code == 200, response.json()
    assert not Device.objects.get(name="solo").owner_pending  # labels unchanged
    render_device({"org_id": ORG, "name": "solo"})
    solo = Device.objects.get(name="solo")
    assert solo.rendered_version == 2 and solo.rendered_spec["os"]["image"] == "quay.io/x/os:2"


@pytest.mark.django_db(transaction=True)
def test_the_last_seen_flush_skips_rows_others_hold_instead_of_waiting(api):
    import psycopg

    from agent_api.listener import _conninfo
    from devices.models import Device
    from devices.services import LastSeenBuffer

    for name in ("busy", "free"):
        put_device(api, name, {})
    buffer = LastSeenBuffer()
    buffer.add(ORG, "busy")
    buffer.add(ORG, "free")
    with psycopg.connect(_conninfo()) as other:  # e.g. a status report or an adoption page
        other.execute("SELECT 1 FROM devices_device WHERE name = 'busy' FOR UPDATE")
        assert buffer.flush() == 2  # returns at once rather than waiting for the lock
    seen = dict(Device.objects.values_list("name", "last_seen"))
    assert seen["free"] is not None and seen["busy"] is None
