"""Lists: label and field selectors with every operator, keyset paging, constant query count."""

from __future__ import annotations

import base64
import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db

DEV = "/api/v1/devices"


def make_devices(rows):
    """rows: (name, labels, summary status, owner)."""
    from devices.models import Device

    Device.objects.bulk_create([
        Device(name=name, labels=labels, owner=owner,
               status={"summary": {"status": summary}, "updated": {"status": "UpToDate"},
                       "applicationsSummary": {"status": "Healthy"},
                       "capabilities": {"osMode": "image"}})
        for name, labels, summary, owner in rows
    ])


@pytest.fixture
def three(db):
    make_devices([
        ("alpha", {"site": "berlin", "tier": "edge", "alias": "a-one"}, "Online", "Fleet/f1"),
        ("bravo", {"site": "paris", "tier": "core"}, "Unknown", None),
        ("charlie", {"site": "rome"}, "Degraded", "Fleet/f2"),
    ])


def names(response):
    assert response.status_code == 200, response.json()
    return [item["metadata"]["name"] for item in response.json()["items"]]


@pytest.mark.parametrize("selector,expected", [
    ("site=berlin", ["alpha"]),
    ("site==paris", ["bravo"]),
    ("site!=berlin", ["bravo", "charlie"]),
    ("site in (berlin,rome)", ["alpha", "charlie"]),
    ("site notin (berlin, rome)", ["bravo"]),
    ("tier", ["alpha", "bravo"]),
    ("!tier", ["charlie"]),
    ("tier!=edge", ["bravo", "charlie"]),  # != matches objects without the key
    ("site=berlin,tier=edge", ["alpha"]),
    ("site in (berlin,paris),!alias", ["bravo"]),
])
def test_label_selectors_with_every_operator(api, three, selector, expected):
    assert names(api.get(DEV, {"labelSelector": selector})) == expected


@pytest.mark.parametrize("selector,expected", [
    ("metadata.name=bravo", ["bravo"]),
    ("metadata.name!=bravo", ["alpha", "charlie"]),
    ("metadata.name in (alpha,charlie)", ["alpha", "charlie"]),
    ("metadata.name notin (alpha)", ["bravo", "charlie"]),
    ("metadata.name contains rav", ["bravo"]),
    ("metadata.name notcontains a", []),
    ("metadata.owner", ["alpha", "charlie"]),
    ("!metadata.owner", ["bravo"]),
    ("metadata.owner=Fleet/f1", ["alpha"]),
    ("metadata.owner notcontains Fleet/", ["bravo"]),
    ("status.summary.status in (Online,Degraded)", ["alpha", "charlie"]),
    ("status.summary.status!=Online", ["bravo", "charlie"]),
    ("metadata.alias=a-one", ["alpha"]),
    ("metadata.nameOrAlias=a-one", ["alpha"]),
    ("metadata.nameOrAlias in (a-one,bravo)", ["alpha", "bravo"]),
    ("metadata.creationTimestamp>2000-01-01T00:00:00Z", ["alpha", "bravo", "charlie"]),
    ("metadata.creationTimestamp>=2000-01-01T00:00:00Z", ["alpha", "bravo", "charlie"]),
    ("metadata.creationTimestamp<2000-01-01T00:00:00Z", []),
    ("metadata.creationTimestamp<=2999-01-01T00:00:00Z", ["alpha", "bravo", "charlie"]),
    ("status.updated.status=UpToDate,status.applicationsSummary.status=Healthy",
     ["alpha", "bravo", "charlie"]),
    ("status.capabilities.osMode=image,status.lifecycle.status", []),
])
def test_field_selectors_with_every_operator(api, three, selector, expected):
    assert names(api.get(DEV, {"fieldSelector": selector})) == expected


def test_label_and_field_selectors_combine(api, three):
    r = api.get(DEV, {"labelSelector": "tier", "fieldSelector": "metadata.owner"})
    assert names(r) == ["alpha"]


@pytest.mark.parametrize("params,fragment", [
    ({"fieldSelector": "text=1"}, 'unable to resolve selector name "text"'),
    ({"fieldSelector": "metadata.name>3"}, "metadata.name"),
    ({"fieldSelector": "metadata.creationTimestamp>yesterday"}, "metadata.creationTimestamp"),
    ({"labelSelector": "site in (a"}, ""),
    ({"labelSelector": "bad key!=x"}, ""),
    ({"limit": "1001"}, "limit cannot exceed 1000"),
    ({"limit": "-1"}, ""),
    ({"continue": "garbage"}, "failed to parse continue parameter"),
])
def test_bad_list_parameters_are_bad_requests(api, three, params, fragment):
    r = api.get(DEV, params)
    assert r.status_code == 400, r.json()
    assert fragment in r.json()["message"]


def test_unknown_field_selector_lists_the_supported_ones(api, three):
    message = api.get(DEV, {"fieldSelector": "text=1"}).json()["message"]
    assert message.startswith("unknown or unsupported selector: unable to resolve selector name "
                              '"text". Supported selectors are: [')
    assert "metadata.nameOrAlias" in message


def test_paging_across_2500_devices_with_continue_and_remaining_count(api):
    make_devices([(f"dev-{i:05d}", {"even": str(i % 2 == 0).lower()}, "Online", None)
                  for i in range(2500)])
    seen, token, pages = [], None, 0
    while True:
        params = {"limit": 1000}
        if token:
            params["continue"] = token
        body = api.get(DEV, params).json()
        pages += 1
        seen.extend(item["metadata"]["name"] for item in body["items"])
        token = body["metadata"].get("continue")
        if not token:
            assert "remainingItemCount" not in body["metadata"]
            break
        decoded = json.loads(base64.b64decode(token))
        assert decoded == {"Version": 1, "Names": [f"dev-{len(seen):05d}"],
                           "Count": 2500 - len(seen)}
        assert body["metadata"]["remainingItemCount"] == 2500 - len(seen)
    assert pages == 3
    assert seen == sorted(seen) and len(set(seen)) == 2500


def test_paging_keeps_the_selectors(api):
    make_devices([(f"dev-{i:03d}", {"even": str(i % 2 == 0).lower()}, "Online", None)
                  for i in range(30)])
    first = api.get(DEV, {"limit": 10, "labelSelector": "even=true"}).json()
    assert first["metadata"]["remainingItemCount"] == 5
    second = api.get(DEV, {"limit": 10, "labelSelector": "even=true",
                           "continue": first["metadata"]["continue"]}).json()
    assert [i["metadata"]["name"] for i in second["items"]] == [
        f"dev-{i:03d}" for i in range(20, 30, 2)]


def test_listing_1000_devices_with_a_label_selector_costs_a_constant_number_of_queries(api):
    make_devices([(f"d{i:04d}", {"site": "berlin" if i % 2 else "paris", "rack": str(i % 7)},
                   "Online", None) for i in range(2100)])
    counts = []
    for limit in (10, 1000):
        with CaptureQueriesContext(connection) as ctx:
            r = api.get(DEV, {"labelSelector": "site=berlin", "limit": limit})
        assert r.status_code == 200 and len(r.json()["items"]) == limit
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    assert counts[1] <= 4  # token lookup, page, remaining count


def test_label_selectors_use_the_gin_index(three):
    from devices.models import Device
    from flightctl.api.selectors import label_selector_q

    with connection.cursor() as cursor:
        cursor.execute("SET enable_seqscan = off")
    plan = Device.objects.filter(label_selector_q("site=berlin")).explain()
    assert "device_labels_gin" in plan


def test_summary_only_counts_every_matching_device(api, three):
    r = api.get(DEV, {"summaryOnly": "true", "labelSelector": "site"})
    body = r.json()
    assert body["items"] == []
    assert body["summary"]["total"] == 3
    assert body["summary"]["summaryStatus"] == {"Online": 1, "Unknown": 1, "Degraded": 1}
    assert body["summary"]["capabilities"] == {"osMode": {"image": 3}}
    r = api.get(DEV, {"summaryOnly": "true", "limit": 5})
    assert r.status_code == 400


def test_device_pages_carry_a_summary_of_the_page(api, three):
    body = api.get(DEV, {"limit": 2}).json()
    assert body["summary"]["total"] == 2


def test_events_are_listed_newest_first_or_oldest_first(api):
    for name in ("e1", "e2", "e3"):
        api.put(f"{DEV}/{name}", {"metadata": {"name": name}}, format="json")
    newest = api.get("/api/v1/events").json()["items"]
    assert [e["involvedObject"]["name"] for e in newest] == ["e3", "e2", "e1"]
    oldest = api.get("/api/v1/events", {"order": "asc", "limit": 2}).json()
    assert [e["involvedObject"]["name"] for e in oldest["items"]] == ["e1", "e2"]
    rest = api.get("/api/v1/events", {"order": "asc", "limit": 2,
                                      "continue": oldest["metadata"]["continue"]}).json()
    assert [e["involvedObject"]["name"] for e in rest["items"]] == ["e3"]
    assert api.get("/api/v1/events", {"labelSelector": "a=b"}).status_code == 400
    r = api.get("/api/v1/events", {"fieldSelector": "type=Normal,actor=user:admin"})
    assert len(r.json()["items"]) == 3
