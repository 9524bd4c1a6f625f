"""``addDevicesSummary``: fleets report how their member devices are doing (api.md §4.4)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.test_fleet_api import fleet
from tests.test_openapi_conformance import assert_valid

pytestmark = pytest.mark.django_db

FLEETS = "/api/v1/fleets"


def members(owner: str | None, *rows, prefix: str = ""):
    """rows: (summary, updated, applications, osMode) of each device."""
    from devices.models import Device

    Device.objects.bulk_create([
        Device(name=f"{prefix}{(owner or 'none').replace('/', '-').lower()}-{i}", owner=owner,
               status={"summary": {"status": s}, "updated": {"status": u},
                       "applicationsSummary": {"status": a},
                       **({"capabilities": {"osMode": mode}} if mode else {})})
        for i, (s, u, a, mode) in enumerate(rows)
    ])


@pytest.fixture
def fleets(api):
    for name in ("f1", "f2", "empty"):
        assert api.post(FLEETS, fleet(name), format="json").status_code == 201
    members("Fleet/f1", ("Online", "UpToDate", "Healthy", "image"),
            ("Online", "OutOfDate", "Healthy", "image"),
            ("Unknown", "Unknown", "Unknown", None))
    members("Fleet/f2", ("Error", "Updating", "Error", "package"))
    members(None, ("Online", "UpToDate", "Healthy", "image"))  # belongs to no fleet
    return api


def test_a_fleet_list_with_summaries_counts_each_fleets_own_devices(fleets):
    body = fleets.get(FLEETS, {"addDevicesSummary": "true"}).json()
    summaries = {item["metadata"]["name"]: item["status"]["devicesSummary"]
                 for item in body["items"]}
    assert summaries["f1"] == {
        "total": 3,
        "summaryStatus": {"Online": 2, "Unknown": 1},
        "updateStatus": {"UpToDate": 1, "OutOfDate": 1, "Unknown": 1},
        "applicationStatus": {"Healthy": 2, "Unknown": 1},
        "capabilities": {"osMode": {"image": 2, "unknown": 1}},
    }
    assert summaries["f2"]["total"] == 1 and summaries["f2"]["summaryStatus"] == {"Error": 1}
    assert summaries["empty"] == {"total": 0, "summaryStatus": {}, "updateStatus": {},
                                  "applicationStatus": {}, "capabilities": {"osMode": {}}}
    assert_valid(body, "FleetList")


def test_one_fleet_with_its_summary(fleets):
    body = fleets.get(f"{FLEETS}/f2", {"addDevicesSummary": "true"}).json()
    assert body["status"]["devicesSummary"]["updateStatus"] == {"Updating": 1}
    assert body["status"]["conditions"] == []
    assert_valid(body, "Fleet")


def test_summaries_are_only_added_on_request(fleets):
    assert "devicesSummary" not in fleets.get(f"{FLEETS}/f1").json()["status"]
    listing = fleets.get(FLEETS, {"addDevicesSummary": "false"}).json()
    assert all("devicesSummary" not in item["status"] for item in listing["items"])
    r = fleets.get(f"{FLEETS}/nope", {"addDevicesSummary": "true"})
    assert r.status_code == 404 and r.json()["kind"] == "Status"


def test_the_summaries_of_a_page_take_the_same_queries_for_3_or_20_fleets(fleets):
    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            r = fleets.get(FLEETS, {"addDevicesSummary": "true"})
            assert r.status_code == 200
        return len(queries)

    few = list_queries()
    for i in range(17):
        fleets.post(FLEETS, fleet(f"more{i:02d}"), format="json")
        members(f"Fleet/more{i:02d}", ("Online", "UpToDate", "Healthy", "image"),
                ("Degraded", "UpToDate", "Degraded", "image"), prefix="x")
    assert len(fleets.get(FLEETS).json()["items"]) == 20
    assert list_queries() == few
