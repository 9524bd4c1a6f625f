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
